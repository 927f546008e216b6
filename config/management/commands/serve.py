"""`manage.py serve`: migrate, prepare, then run the ASGI web server and a django-q2 worker cluster.

Both run as child processes in their own process groups, so Ctrl-C (which the terminal sends to
this process only) and SIGTERM are forwarded to each child as SIGTERM, giving uvicorn and the
cluster their own graceful shutdown; whatever is left after the grace period is killed with its
whole process group, so no process outlives `serve`."""

import contextlib
import ctypes
import hashlib
import importlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from accounts.models import Organization, User
from accounts.services import organization_create

DEMO_ORG_NAME = "Demo organisation"
DEMO_OWNER_EMAIL = "owner@example.com"
SHUTDOWN_GRACE_SECONDS = 25
WEB_WORKERS_MAX_AUTO = 4
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class DemoCredentials:
    organization: Organization
    email: str
    password: str


def load_builtin_templates() -> int:
    """Hook: make the built-in workflow templates in the database match the ones shipped as data
    (`workflows.templates_loader.templates_sync_builtin`, idempotent); returns how many changed.
    Returns 0 while the workflows app ships no loader."""
    try:
        loader = importlib.import_module("workflows.templates_loader")
    except ModuleNotFoundError as exc:
        if exc.name != "workflows.templates_loader":
            raise
        return 0
    result = loader.templates_sync_builtin()
    return len(result.created) + len(result.updated) + len(result.removed)


def collect_static_if_needed() -> bool:
    """Run collectstatic (WhiteNoise serves STATIC_ROOT) unless the source files are unchanged since
    the last run; returns whether it ran. The fingerprint covers every found file's path, size and mtime."""
    from django.contrib.staticfiles.finders import get_finders

    digest = hashlib.sha256()
    for finder in get_finders():
        for path, storage in sorted(finder.list([]), key=lambda item: item[0]):
            stat = os.stat(storage.path(path))
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    stamp = Path(settings.STATIC_ROOT) / ".baton-collected"
    fingerprint = digest.hexdigest()
    if stamp.exists() and stamp.read_text().strip() == fingerprint:
        return False
    call_command("collectstatic", interactive=False, verbosity=0)
    stamp.write_text(fingerprint + "\n")
    return True


def create_demo_organization() -> DemoCredentials | None:
    """On an empty database (no organisations) create a demo organisation and its owner, with two workflows
    from the built-in templates and runs the engine executed (runs/demo.py).

    Returns the owner's credentials (the random password exists nowhere else), or None when
    organisations already exist or settings.BATON_DEMO_ORG is off."""
    demo = _create_demo_owner_and_organization()
    if demo is not None:
        from runs.demo import demo_content_create

        owner = User.objects.get(email=demo.email)
        demo_content_create(organization=demo.organization, owner=owner)
    return demo


@transaction.atomic
def _create_demo_owner_and_organization() -> DemoCredentials | None:
    if not settings.BATON_DEMO_ORG or Organization.objects.exists():
        return None
    password = secrets.token_urlsafe(18)
    user = User.objects.filter(email=DEMO_OWNER_EMAIL).first()
    if user is None:
        user = User.objects.create_user(DEMO_OWNER_EMAIL, password, name="Demo owner")
    else:
        user.set_password(password)
        user.save(update_fields=["password"])
    org = organization_create(name=DEMO_ORG_NAME, owner=user)
    return DemoCredentials(organization=org, email=user.email, password=password)


def metrics_directory() -> Path:
    """Where the web processes write their request latency samples for GET /metrics (prometheus_client's
    multiprocess mode), emptied at each start: the files of processes that are gone would count forever."""
    directory = Path(settings.DATA_DIR) / "metrics"
    directory.mkdir(exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink()
    return directory


def web_workers_default() -> int:
    """`BATON_WEB_WORKERS`, else by the database (docs/operations.md "The web server"): on SQLite one process,
    since each write empties every other connection's page cache and the writes queue for one lock anyway;
    on PostgreSQL one per core the process may use, up to WEB_WORKERS_MAX_AUTO."""
    from django.db import connection

    if settings.BATON_WEB_WORKERS:
        return settings.BATON_WEB_WORKERS
    if connection.vendor == "sqlite":
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, WEB_WORKERS_MAX_AUTO))


def web_command(host: str, port: int, web_workers: int) -> list[str]:
    """The web server `serve` runs (docs/operations.md "The web server"; measured in docs/performance.md):
    config.asgi's application, synchronous requests on its thread pool, the event stream on the loop."""
    return [
        sys.executable, "-m", "uvicorn", "config.asgi:application",
        "--host", host, "--port", str(port), "--workers", str(web_workers),
        "--lifespan", "off", "--no-proxy-headers", "--timeout-graceful-shutdown", "10",
        "--no-access-log",
    ]  # fmt: skip


def _die_with_parent():
    """Runs in the child before exec: if `serve` itself is killed (SIGKILL), the child gets SIGTERM."""
    # Not Linux (no prctl): the signal forwarding in Command._stop still applies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def _require_free_port(host: str, port: int) -> None:
    """Fail fast, before migrating, when something already listens on the address."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            message = f"Cannot listen on {host}:{port} ({exc.strerror}); choose another --port."
            raise CommandError(message) from None


class Command(BaseCommand):
    help = "Migrate, then run the web server (uvicorn, ASGI) and a worker cluster (django-q2) together."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
        parser.add_argument("--port", type=int, default=8000, help="port to listen on (default 8000)")
        parser.add_argument(
            "--workers",
            type=int,
            default=settings.BATON_WORKERS,
            help="worker processes in the django-q2 cluster that executes runs (default BATON_WORKERS)",
        )
        parser.add_argument(
            "--web-workers",
            type=int,
            default=None,
            help="web server processes (default BATON_WEB_WORKERS, else 1 on SQLite and one per core, up to "
            f"{WEB_WORKERS_MAX_AUTO}, on PostgreSQL)",
        )
        parser.add_argument("--no-worker", action="store_true", help="serve the web app only")

    def handle(self, *args, host, port, workers, web_workers, no_worker, **options):
        if web_workers is None:
            web_workers = web_workers_default()
        if workers < 1 or web_workers < 1:
            raise CommandError("--workers and --web-workers must be at least 1.")
        _require_free_port(host, port)
        self._say("Applying database migrations…")
        call_command("migrate", interactive=False, verbosity=0)
        loaded = load_builtin_templates()
        if loaded:
            self._say(f"Synchronised {loaded} built-in workflow template(s).")
        if collect_static_if_needed():
            self._say("Collected static files.")

        base_url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
        demo = create_demo_organization()
        if demo is not None:
            self._say(
                "\n"
                f"Created the demo organisation {demo.organization.name!r} ({demo.organization.id}).\n"
                f"Sign in at {base_url}/login/ with\n"
                f"    email:    {demo.email}\n"
                f"    password: {demo.password}\n"
                "The password is shown only this once. Set BATON_DEMO_ORG=false to skip the demo "
                "organisation, or create your own with `manage.py create_org`.\n"
            )

        manage = str(settings.BASE_DIR / "manage.py")
        children = {"web server": web_command(host, port, web_workers)}
        if not no_worker:
            children["worker cluster"] = [sys.executable, manage, "qcluster"]
        env = {**os.environ, "BATON_WORKERS": str(workers), "PYTHONUNBUFFERED": "1"}
        env.setdefault("PROMETHEUS_MULTIPROC_DIR", str(metrics_directory()))
        self._say(
            f"Baton is starting at {base_url}/ (API docs {base_url}/api/v1/docs, health {base_url}/healthz)"
            + ("" if no_worker else f" with {workers} task worker(s)")
            + ". Press Ctrl-C to stop."
        )
        code = self._supervise(children, env)
        if code:
            raise CommandError(f"Stopped because a child process failed (exit code {code}).", returncode=code)
        self._say("Baton stopped.")

    def _say(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def _supervise(self, commands: dict[str, list[str]], env: dict) -> int:
        """Start the children, wait for a stop signal or a child's exit, stop them all; return 0 or the
        exit code of the child that failed."""
        received: list[int] = []

        def on_signal(signum, frame):
            received.append(signum)

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        procs: dict[str, subprocess.Popen] = {}
        failed = 0
        try:
            for name, cmd in commands.items():
                procs[name] = subprocess.Popen(
                    cmd, env=env, start_new_session=True, preexec_fn=_die_with_parent
                )
            while not received:
                for name, proc in procs.items():
                    code = proc.poll()
                    if code is not None:
                        self.stderr.write(f"The {name} exited unexpectedly (exit code {code}); stopping.")
                        failed = code or 1
                        break
                if failed:
                    break
                time.sleep(0.2)
            if received:
                name = signal.Signals(received[0]).name
                self._say(f"\nReceived {name}: stopping the web server and workers…")
        finally:
            self._stop(procs)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return failed

    def _stop(self, procs: dict) -> None:
        """SIGTERM each child (its own graceful shutdown), then SIGKILL whatever is left of its group."""
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        for name, proc in procs.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"The {name} did not stop within {SHUTDOWN_GRACE_SECONDS}s; killing it.")
            # Whatever is left of the child's process group (e.g. pool processes) goes too.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
