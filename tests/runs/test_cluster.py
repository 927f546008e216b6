"""The engine on a real django-q2 cluster (`manage.py qcluster` subprocesses): the SQLite file with the
ORM broker, or the PostgreSQL test database with Redis when DATABASE_URL/REDIS_URL are set."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from urllib.parse import quote

import pytest
from django.conf import settings
from django.db import connection

from tests.runs.cluster_driver import expected_result

BASE_DIR = settings.BASE_DIR


def _cluster_env(tmp_path) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.runs.cluster_settings", "BATON_ENV": "test",
           "BATON_DATA_DIR": str(tmp_path), "BATON_LOG_LEVEL": "WARNING",
           "BATON_TEST_QUEUE": f"baton-test-{uuid.uuid4().hex[:10]}",
           "BATON_ENGINE_DISPATCH": "queue", "BATON_WORKERS": "2",
           "BATON_RECONCILE_INTERVAL_MS": "300", "BATON_REDISPATCH_AFTER_SECONDS": "2",
           "BATON_STEP_LEASE_SECONDS": "5"}  # fmt: skip
    env.pop("BATON_TEST_DB_NAME", None)
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["BATON_SQLITE_PATH"] = str(tmp_path / "cluster.sqlite3")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=BASE_DIR, check=True)
    else:
        auth = quote(db["USER"]) + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{db['NAME']}"
    return env


class Cluster:
    def __init__(self, env):
        self.env = env
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], env=self.env, cwd=BASE_DIR, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def kill(self):
        """SIGKILL the whole cluster (sentinel, workers, pusher, monitor): nothing gets to clean up."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait()

    def driver(self, *args, timeout=120) -> dict:
        result = subprocess.run([sys.executable, "-m", "tests.runs.cluster_driver", *map(str, args)],
                                env=self.env, cwd=BASE_DIR, check=True, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def _cluster_env_module(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        return _cluster_env(tmp_path_factory.mktemp("cluster"))


@pytest.fixture
def cluster(_cluster_env_module, transactional_db):
    """A cluster on its own queue; on PostgreSQL it shares the test database, flushed after the test."""
    cluster = Cluster(_cluster_env_module)
    yield cluster
    cluster.kill()


def _check_finished_once(report: dict, steps: int):
    for run_id, run in report.items():
        assert run["status"] == "completed", (run_id, run)
        assert run["result"] == {"last": expected_result(run["n"], steps)}
        assert run["seqs"] == list(range(1, len(run["seqs"]) + 1))  # gapless event log
        # No step completed twice: one completion event and one completed attempt per step.
        assert Counter(run["completed_events"]) == {f"s{i}": 1 for i in range(steps)}
        for step_id, step in run["steps"].items():
            assert step["status"] == "completed", (run_id, step_id, step)
            assert step["attempts"].count("completed") == 1 and step["attempts"][-1] == "completed"


@pytest.mark.slow
def test_cluster_runs_a_five_step_dag_to_completion(cluster):
    cluster.start()
    started = cluster.driver("start", 3, 5)
    report = cluster.driver("wait", 60, *started["runs"])
    assert set(report) == set(started["runs"])
    _check_finished_once(report, 5)
    for run in report.values():
        assert all(step["attempts"] == ["completed"] for step in run["steps"].values())


@pytest.mark.slow
def test_cluster_killed_mid_run_still_finishes_every_run(cluster):
    steps = 12
    started = cluster.driver("start", 6, steps)  # queued in the broker before any worker exists
    cluster.start()
    time.sleep(2.5)  # let the workers get into the runs
    cluster.kill()
    cluster.start()  # a fresh cluster: its reconciler re-dispatches lost messages and reclaims leases
    report = cluster.driver("wait", 90, *started["runs"], timeout=150)
    _check_finished_once(report, steps)
