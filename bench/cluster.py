"""What the engine, throughput, API and idle benchmarks share: the environment of a child process on the
benchmark's own database (and Redis queue), a real `manage.py qcluster`, process-tree CPU accounting,
and the definitions and helpers that create and wait for runs."""

import os
import signal
import subprocess
import sys
import time
from contextlib import suppress
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def child_env(**extra) -> dict:
    """The environment for a child process that must use this benchmark's database: the scratch SQLite
    file, or the `<name>_bench` PostgreSQL database created by bench/run.py (and the same Redis)."""
    from django.db import connection

    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "bench.settings", "BATON_LOG_LEVEL": "WARNING",
           "PYTHONUNBUFFERED": "1"}  # fmt: skip
    db = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = quote(db["USER"]) + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
        host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}@{host}/{db['NAME']}"
    env.update({key: str(value) for key, value in extra.items()})
    return env


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def cpu_seconds(pids) -> float:
    """User + system CPU time of these processes so far (exited ones count 0)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / CLK_TCK


class Cluster:
    """A real `manage.py qcluster` (django-q2: sentinel, 2 workers, pusher, monitor; each worker runs the
    engine's reconciler thread) on the benchmark's database and broker."""

    def __init__(self, workers: int = 2, **env):
        self.env = child_env(BATON_WORKERS=workers, BATON_ENGINE_DISPATCH="queue", **env)
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"], cwd=ROOT, env=self.env, start_new_session=True,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        return self

    def __exit__(self, *exc):
        if self.process is not None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()

    def pids(self) -> set[int]:
        return {self.process.pid} | descendants(self.process.pid)


# Runs ----------------------------------------------------------------------------------------------------


def chain_definition(steps: int) -> dict:
    nodes = [{"id": "s0", "type": "transform", "config": {"value": "{{ inputs.n }}"}}]
    nodes += [
        {"id": f"s{i}", "type": "transform", "config": {"value": f"{{{{ steps.s{i - 1}.output + 1 }}}}"},
         "depends_on": [f"s{i - 1}"]}
        for i in range(1, steps)
    ]  # fmt: skip
    output = {"last": f"{{{{ steps.s{steps - 1}.output }}}}"}
    return {"name": f"Chain of {steps}", "steps": nodes, "output": output}


def dag_definition() -> dict:
    """Five transform steps: a root, a fan-out of two, a join, one more."""

    def step(step_id, value, *deps):
        node = {"id": step_id, "type": "transform", "config": {"value": value}}
        return {**node, "depends_on": list(deps)} if deps else node

    return {
        "name": "DAG of 5",
        "steps": [
            step("s0", "{{ inputs.n }}"),
            step("s1", "{{ steps.s0.output + 1 }}", "s0"),
            step("s2", "{{ steps.s0.output + 2 }}", "s0"),
            step("s3", "{{ steps.s1.output + steps.s2.output }}", "s1", "s2"),
            step("s4", "{{ steps.s3.output + 1 }}", "s3"),
        ],
        "output": {"last": "{{ steps.s4.output }}"},
    }


def bench_organization(name: str = "Bench"):
    """An organisation on the enterprise plan (no rate limits, no run quota) and no cap on concurrent runs
    (admission is not what these benchmarks measure), with its owner as actor."""
    import uuid

    from accounts.models import User
    from accounts.principal import Principal
    from accounts.services import organization_create

    owner = User.objects.create_user(f"bench-{uuid.uuid4().hex[:8]}@baton.test", "bench-password-1")
    org = organization_create(name=name, owner=owner, plan="enterprise")
    org.max_concurrent_runs = None
    org.save(update_fields=["max_concurrent_runs"])
    return org, owner, Principal(organization=org, user=owner, role="owner")


def wait_terminal(run_ids, timeout: float, interval: float = 0.002) -> bool:
    """Poll until every run is terminal (True) or the timeout passes (False)."""
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    deadline = time.monotonic() + timeout
    pending = set(run_ids)
    while pending:
        done = set(Run.objects.filter(pk__in=pending, status__in=RUN_TERMINAL).values_list("id", flat=True))
        pending -= done
        if not pending:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def wait_drained(organization, timeout: float, interval: float = 0.25) -> bool:
    """Poll until none of the organisation's runs is left unfinished (True) or the timeout passes (False).
    One small indexed read per poll, a few times a second: a benchmark that times its runs from the rows'
    own timestamps needs no finer poll, and the poll must not take the CPU it measures (a read of 500 run
    ids ten times a second cost the machine about 0.15 ms per run, the bench's own Python aside)."""
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    deadline = time.monotonic() + timeout
    unfinished = Run.objects.filter(organization=organization).exclude(status__in=RUN_TERMINAL)
    while unfinished.exists():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True
