"""Real django-q2 clusters for crash tests: start several `manage.py qcluster` processes on the test
database, SIGKILL one (or one of its workers) at a chosen moment, and watch what the database holds.

    env = cluster_env(tmp_path)                          # the test database, a queue of its own
    a, b = Cluster(env, "a"), Cluster(env, "b")          # PostgreSQL: application_name baton_a / baton_b
    with slow_inserts("workflows_schedulefire", 0.2):    # hold each such transaction open 0.2 s
        a.start(); b.start()
        wait_for(lambda: in_flight("baton_a"))           # a backend of `a` is inside that transaction
        a.kill()                                         # SIGKILL the whole cluster: nothing cleans up
    ...

Used by tests/runs/test_schedule_cluster.py; written for any crash test (the soak of the Reliability
issue): nothing in it knows about schedules.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import quote

from django.conf import settings
from django.db import connection

BASE_DIR = Path(settings.BASE_DIR)


def cluster_env(tmp_path, **overrides: str) -> dict:
    """Environment for cluster subprocesses on this test run's database (PostgreSQL: the test database
    itself; SQLite: a migrated file under `tmp_path`) with a queue name of their own."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.runs.support.cluster_settings", "BATON_ENV": "test",
           "BATON_DATA_DIR": str(tmp_path), "BATON_LOG_LEVEL": "WARNING",
           "BATON_TEST_QUEUE": f"baton-test-{uuid.uuid4().hex[:10]}",
           "BATON_ENGINE_DISPATCH": "queue", "BATON_WORKERS": "2",
           "BATON_RECONCILE_INTERVAL_MS": "300", "BATON_REDISPATCH_AFTER_SECONDS": "2",
           "BATON_STEP_LEASE_SECONDS": "5", **overrides}  # fmt: skip
    env.pop("BATON_TEST_DB_NAME", None)
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["BATON_SQLITE_PATH"] = str(Path(tmp_path) / "cluster.sqlite3")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=BASE_DIR, check=True)
    else:
        auth = quote(db["USER"]) + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{db['NAME']}"
    return env


class Cluster:
    """One `manage.py qcluster` in a session of its own (so a kill reaches every process of it)."""

    def __init__(self, env: dict, name: str = "a", log: Path | None = None):
        self.name = name
        self.log = log  # where its output goes (appended across restarts); nowhere without
        self.env = dict(env)
        if "DATABASE_URL" in self.env:  # its connections are recognisable in pg_stat_activity
            self.env["DATABASE_URL"] += f"?application_name={self.application_name}"
        self.process: subprocess.Popen | None = None

    @property
    def application_name(self) -> str:
        return f"baton_{self.name}"

    def start(self) -> Cluster:
        out = open(self.log, "ab") if self.log else subprocess.DEVNULL  # noqa: SIM115 - the child holds it
        try:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "qcluster"], env=self.env, cwd=BASE_DIR, start_new_session=True,
                stdout=out, stderr=subprocess.STDOUT if self.log else subprocess.DEVNULL,
            )  # fmt: skip
        finally:
            if self.log:
                out.close()
        return self

    def pids(self) -> list[int]:
        """Every live process of the cluster (sentinel, workers, pusher, monitor)."""
        if self.process is None:
            return []
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[3]) == self.process.pid and fields[0] != "Z":  # session id, state
                    found.append(int(entry.name))
        return found

    def children(self) -> list[int]:
        """The processes the cluster's sentinel started (workers, pusher, monitor)."""
        stats = {}
        for pid in self.pids():
            with suppress(OSError, IndexError, ValueError):
                stats[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # parent
        sentinels = {pid for pid, parent in stats.items() if self.process and parent == self.process.pid}
        return sorted(pid for pid, parent in stats.items() if parent in sentinels)

    def kill(self) -> None:
        """SIGKILL the whole cluster: nothing gets to clean up or commit."""
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def kill_process(self, pid: int) -> None:
        """SIGKILL one process of the cluster (a worker: its sentinel may start another)."""
        with suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def wait_for(predicate, timeout: float = 30, interval: float = 0.01):
    """Poll `predicate` until it returns something truthy (returned) or `timeout` passes (AssertionError)."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {predicate}")
        time.sleep(interval)


def in_flight(application_name: str) -> list[int]:
    """PostgreSQL: backend pids of that application inside a transaction slowed by slow_inserts()."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND wait_event = 'PgSleep'",
            [application_name],
        )
        return [row[0] for row in cursor.fetchall()]


@contextmanager
def slow_inserts(table: str, seconds: float):
    """PostgreSQL: every INSERT into `table` sleeps `seconds` inside its transaction, so a kill lands in
    the middle of one. The trigger is dropped on exit."""
    name = f"baton_slow_{uuid.uuid4().hex[:8]}"
    with connection.cursor() as cursor:
        cursor.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN PERFORM pg_sleep({float(seconds)}); RETURN NEW; END $$"
        )
        cursor.execute(
            f"CREATE TRIGGER {name} BEFORE INSERT ON {table} FOR EACH ROW EXECUTE FUNCTION {name}()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
            cursor.execute(f"DROP FUNCTION IF EXISTS {name}()")
