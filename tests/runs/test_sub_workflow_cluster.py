"""Sub-workflows on a real django-q2 cluster (`manage.py qcluster` subprocesses): the SQLite file with the
ORM broker, or the PostgreSQL test database with Redis when DATABASE_URL/REDIS_URL are set. A child's
steps run on any worker; its end wakes the parent's step (after commit, or through the reconciler when the
child finished before the parent's step was recorded as waiting)."""

import json
import subprocess
import sys

import pytest

from tests.runs.test_cluster import BASE_DIR, Cluster, _cluster_env

# a real qcluster in a subprocess: runs that never finish would hang the test
pytestmark = pytest.mark.timeout(240)


def _driver(env, *args, timeout=120) -> dict:
    module = "tests.runs.support.sub_workflow_cluster_driver"
    result = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                            env=env, cwd=BASE_DIR, check=True, capture_output=True, text=True,
                            timeout=timeout)  # fmt: skip
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def _sub_cluster_env(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        return _cluster_env(tmp_path_factory.mktemp("subwf-cluster"))


@pytest.fixture
def cluster(_sub_cluster_env, transactional_db):
    cluster = Cluster(_sub_cluster_env)
    yield cluster
    cluster.kill()


@pytest.mark.slow
def test_cluster_runs_parents_and_their_children_to_completion(cluster):
    cluster.start()
    started = _driver(cluster.env, "start", 4)
    report = _driver(cluster.env, "wait", 60, *started["runs"])
    assert set(report) == set(started["runs"])
    for run_id, run in report.items():
        assert run["status"] == "completed", (run_id, run)
        assert run["result"] == {"final": run["n"] * 2 + 1}
        assert len(run["children"]) == 1, run  # exactly one child per parent step
        child = run["children"][0]
        assert child["status"] == "completed" and child["result"] == {"doubled": run["n"] * 2}
        assert child["parent_step_run_id"] == child["step_run_id"]
        assert run["step_child_run_id"] == child["id"]
