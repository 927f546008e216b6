"""The crash soak's short version (`make soak` runs 200 runs on each backend): 16 runs of the mixed workflow
while worker processes are SIGKILLed every 1–3 s and the web process twice (bench/soak.py). Its figures are in
docs/reliability.md."""

import json

import pytest

from tests.reliability.support import run_program

pytestmark = [pytest.mark.soak, pytest.mark.timeout(300)]


def test_crash_soak_loses_nothing_and_runs_no_step_twice():
    args = ("--runs", "16", "--rate", "4", "--chaos-seconds", "60", "--timeout", "150")
    report = run_program("bench/soak.py", *args, timeout=280)
    shown = json.dumps(report, default=str)  # whole, so a failure in CI names its runs and steps
    assert report["runs_accepted"] == report["runs_in_database"] == 16, shown
    assert report["not_terminal"] == [], shown
    assert report["no_retry_steps_with_two_attempts"] == [], shown
    assert report["no_retry_side_effects_twice"] == [] and report["retry_side_effects_beyond_attempts"] == []
    assert report["event_log_gaps"] == [], shown
    assert report["audit"]["valid"] is True, shown
    assert report["kills"]["web"] == 2 and report["kills"].get("cluster_process", 0) > 0, shown
    assert report["targets_met"] and report["exit_status"] == 0, shown
