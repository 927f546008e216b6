"""A real django-q2 cluster for the tests (`manage.py qcluster` subprocesses) and the driver processes that
act on its database: the SQLite file with the ORM broker, or the PostgreSQL test database with Redis when
DATABASE_URL/REDIS_URL are set."""

import json
import os
import signal
import subprocess
import sys
import uuid
from contextlib import suppress

from django.conf import settings
from django.db import connection

from tests.support.processes import child_database_url

BASE_DIR = settings.BASE_DIR


def cluster_env(tmp_path) -> dict:
    """The environment of a cluster or driver process: a queue of its own, short intervals, and this
    test's database (a migrated SQLite file in `tmp_path`, or the PostgreSQL test database)."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.runs.support.cluster_settings", "BATON_ENV": "test",
           "BATON_DATA_DIR": str(tmp_path), "BATON_LOG_LEVEL": "WARNING",
           "BATON_TEST_QUEUE": f"baton-test-{uuid.uuid4().hex[:10]}",
           "BATON_ENGINE_DISPATCH": "queue", "BATON_WORKERS": "2",
           "BATON_RECONCILE_INTERVAL_MS": "300", "BATON_REDISPATCH_AFTER_SECONDS": "2",
           "BATON_STEP_LEASE_SECONDS": "5"}  # fmt: skip
    env.pop("BATON_TEST_DB_NAME", None)
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["BATON_SQLITE_PATH"] = str(tmp_path / "cluster.sqlite3")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=BASE_DIR, check=True)
    else:
        env["DATABASE_URL"] = child_database_url()
    return env


def driver_process(env, module: str, *args, **options) -> subprocess.Popen:
    """Start `python -m <module> ARGS…` (a driver in tests/runs/support/) with its output piped."""
    return subprocess.Popen(
        [sys.executable, "-m", module, *map(str, args)],
        env=env, cwd=BASE_DIR, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **options,
    )  # fmt: skip


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
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def driver(self, *args, module="tests.runs.support.cluster_driver", timeout=120) -> dict:
        """Run a driver command in this cluster's environment; returns what it printed (JSON)."""
        result = subprocess.run([sys.executable, "-m", module, *map(str, args)],
                                env=self.env, cwd=BASE_DIR, check=True, capture_output=True, text=True,
                                timeout=timeout)  # fmt: skip
        return json.loads(result.stdout)
