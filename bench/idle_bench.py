"""Idle worker CPU: a real cluster (`manage.py qcluster`, 2 workers, each with the engine's reconciler
thread at its default interval) with no work, its whole process tree's CPU time (/proc/<pid>/stat,
utime + stime) over a window, as a share of one core."""

import time

from bench.cluster import Cluster, cpu_seconds
from bench.common import Row

TARGET_PERCENT = 2.0


def add_arguments(parser):
    group = parser.add_argument_group("idle")
    group.add_argument("--idle-seconds", type=float, default=30, help="measured window (default 30 s)")
    group.add_argument("--idle-settle", type=float, default=8, help="start-up wait (default 8 s)")


def run(options) -> list[Row]:
    from django.conf import settings
    from django.db import connection

    backend = "SQLite + ORM broker" if connection.vendor == "sqlite" else "PostgreSQL + Redis"
    cleared = _clear_leftovers()
    with Cluster(workers=2) as cluster:
        time.sleep(options.idle_settle)
        pids = cluster.pids()
        before, started = cpu_seconds(pids), time.perf_counter()
        time.sleep(options.idle_seconds)
        pids |= cluster.pids()
        used, elapsed = cpu_seconds(pids) - before, time.perf_counter() - started
    percent = used / elapsed * 100
    return [
        Row("idle", f"idle cluster CPU, 2 workers + reconcilers ({backend})", f"{percent:.2f}% of a core",
            f"≤ {TARGET_PERCENT}%", f"{used * 1000:,.0f} ms CPU in {elapsed:.0f} s, {len(pids)} processes; "
            f"reconciler every {settings.BATON_RECONCILE_INTERVAL_MS} ms per worker"
            + ("; ORM broker: doorbell, polled every 1 s" if connection.vendor == "sqlite" else "")
            + (f"; {cleared} unfinished runs of earlier benchmarks cancelled first" if cleared else ""),
            percent <= TARGET_PERCENT),
    ]  # fmt: skip


def _clear_leftovers() -> int:
    """No work for the idle cluster: runs earlier benchmarks left unfinished (the API benchmark triggers
    hundreds whose steps no cluster ran) are cancelled and the benchmark's queue is emptied, so the
    cluster measured is really idle. Returns how many runs were cancelled."""
    from django.utils import timezone

    from runs.choices import RUN_ACTIVE, STEP_FINISHED
    from runs.engine import dispatch
    from runs.models import Run, StepRun

    now = timezone.now()
    StepRun.objects.exclude(status__in=STEP_FINISHED).update(
        status="cancelled", completed_at=now, wake_at=None
    )
    cancelled = Run.objects.filter(status__in=RUN_ACTIVE).update(status="cancelled", completed_at=now)
    dispatch.broker().purge_queue()
    return cancelled
