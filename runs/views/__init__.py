"""Dashboard pages of the runs app: overview, workflows list and run form, runs, approvals inbox."""
