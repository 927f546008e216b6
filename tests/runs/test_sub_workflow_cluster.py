"""Sub-workflows on a real django-q2 cluster (`manage.py qcluster` subprocesses): the SQLite file with the
ORM broker, or the PostgreSQL test database with Redis when DATABASE_URL/REDIS_URL are set. A child's
steps run on any worker; its end wakes the parent's step (after commit, or through the reconciler when the
child finished before the parent's step was recorded as waiting)."""

import pytest

DRIVER = "tests.runs.support.sub_workflow_cluster_driver"


@pytest.mark.slow
def test_cluster_runs_parents_and_their_children_to_completion(cluster):
    cluster.start()
    started = cluster.driver("start", 4, module=DRIVER)
    report = cluster.driver("wait", 60, *started["runs"], module=DRIVER)
    assert set(report) == set(started["runs"])
    for run_id, run in report.items():
        assert run["status"] == "completed", (run_id, run)
        assert run["result"] == {"final": run["n"] * 2 + 1}
        assert len(run["children"]) == 1, run  # exactly one child per parent step
        child = run["children"][0]
        assert child["status"] == "completed" and child["result"] == {"doubled": run["n"] * 2}
        assert child["parent_step_run_id"] == child["step_run_id"]
        assert run["step_child_run_id"] == child["id"]
