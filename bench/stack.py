"""A served Baton for the crash soak (bench/soak.py) and the load test (bench/load.py): a scratch database
(a SQLite file in a temporary directory, or, when DATABASE_URL is set, a fresh `<name>_<suffix>` database on
that PostgreSQL server, dropped afterwards, with Redis from REDIS_URL on a queue of this run's own), an
organisation with an API key, and the processes that serve it: `manage.py serve`, or its two halves
(uvicorn and `manage.py qcluster`) started and SIGKILLed one by one.

Call `Stack.prepare()` before anything imports Django models: it sets the environment, then django.setup().
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import suppress
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


class Stack:
    """The database, the organisation and the environment every child process of one soak or load run gets."""

    def __init__(self, suffix: str, **settings: str):
        self.suffix = suffix
        self.settings = {key: str(value) for key, value in settings.items()}
        self.scratch = ""
        self.env: dict[str, str] = {}
        self.cleanups: list = []
        self.backend = "sqlite"

    # --- database and environment -------------------------------------------------------------------

    def prepare(self) -> Stack:
        self.scratch = tempfile.mkdtemp(prefix=f"baton-{self.suffix}-")
        env = {
            "DJANGO_SETTINGS_MODULE": "bench.settings",  # the real URLs plus the bare DRF view
            "BATON_DATA_DIR": self.scratch,
            "BATON_DEMO_ORG": "false",
            "BATON_LOG_LEVEL": "WARNING",
            "BATON_BENCH_QUEUE": f"baton-{self.suffix}-{uuid.uuid4().hex[:8]}",
            "PYTHONUNBUFFERED": "1",
            **self.settings,
        }
        os.environ.update(env)
        if not os.environ.get("DATABASE_URL"):
            os.environ.pop("REDIS_URL", None)
            os.environ["BATON_SQLITE_PATH"] = str(Path(self.scratch) / f"{self.suffix}.sqlite3")
        import django

        django.setup()
        from django.core.management import call_command
        from django.db import connection

        if connection.vendor == "postgresql":
            self.backend = "postgresql"
            name = os.environ.get("BATON_SOAK_DB_NAME") or f"{connection.settings_dict['NAME']}_{self.suffix}"
            connection.settings_dict.setdefault("TEST", {})["NAME"] = name
            old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
            self.cleanups.append(lambda: connection.creation.destroy_test_db(old_name, verbosity=0))
        else:
            call_command("migrate", verbosity=0)
        self.env = {**os.environ}
        if self.backend == "postgresql":
            self.env["DATABASE_URL"] = self.child_database_url()
        return self

    def child_database_url(self) -> str:
        from urllib.parse import quote

        from django.db import connection

        db = connection.settings_dict
        auth = quote(db["USER"]) + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        return f"postgres://{auth}@{host}/{db['NAME']}"

    def organization(self, name: str = "Soak"):
        """An enterprise organisation (no rate limits, no monthly quota) and an API key with every scope."""
        from accounts.choices import ALL_SCOPES
        from accounts.models import User
        from accounts.principal import Principal
        from accounts.services import api_key_create, organization_create

        owner = User.objects.create_user(
            f"{self.suffix}-{uuid.uuid4().hex[:8]}@baton.test", "soak-password-1"
        )
        org = organization_create(name=name, owner=owner, plan="enterprise")
        actor = Principal(organization=org, user=owner, role="owner")
        key = api_key_create(organization=org, actor=actor, name=self.suffix, scopes=ALL_SCOPES).key
        return org, key

    def machine(self) -> dict:
        from bench.run import machine

        return {**machine(), "load_at_start": load_average()}

    def close(self) -> None:
        from django.db import connections

        connections.close_all()
        for cleanup in reversed(self.cleanups):
            with suppress(Exception):
                cleanup()
        if self.scratch:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # --- processes ----------------------------------------------------------------------------------

    def popen(self, argv: list[str], log: str) -> subprocess.Popen:
        """A child in a session of its own (a kill reaches all its processes); output to scratch/<log>."""
        out = open(Path(self.scratch) / log, "ab")  # noqa: SIM115 - the child holds it
        try:
            return subprocess.Popen(argv, cwd=ROOT, env=self.env, start_new_session=True, stdout=out,
                                    stderr=subprocess.STDOUT)  # fmt: skip
        finally:
            out.close()

    def log_tail(self, log: str, lines: int = 30) -> str:
        with suppress(OSError):
            return "\n".join((Path(self.scratch) / log).read_text(errors="replace").splitlines()[-lines:])
        return ""


class Web:
    """uvicorn serving Baton, as `manage.py serve` starts it."""

    def __init__(self, stack: Stack, port: int):
        self.stack, self.port = stack, port
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Web:
        self.process = self.stack.popen(
            [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", "--lifespan", "off", "--no-proxy-headers",
             "--log-level", "warning", "--no-access-log"], "web.log",
        )  # fmt: skip
        return self

    def kill(self) -> None:
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            self.process = None

    def stop(self) -> None:
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
            self.process = None


class Serve:
    """`manage.py serve` itself (whatever web tier and worker cluster it starts), stopped with SIGTERM."""

    def __init__(self, stack: Stack, port: int, *args: str):
        self.stack, self.port, self.args = stack, port, args
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Serve:
        self.process = self.stack.popen(
            [sys.executable, "manage.py", "serve", "--port", str(self.port), *self.args], "serve.log"
        )
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        with suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=40)
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.process = None


def wait_healthy(base_url: str, process: subprocess.Popen | None, timeout: float = 90) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        with suppress(httpx.TransportError):
            if httpx.get(f"{base_url}/healthz", timeout=2).status_code == 200:
                return
        if (process is not None and process.poll() is not None) or time.monotonic() > deadline:
            raise RuntimeError(f"the server at {base_url} did not start")
        time.sleep(0.2)
