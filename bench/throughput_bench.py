"""Throughput: 500 runs of a 5-step DAG (root, fan-out of two, join, one more) through a real cluster
with 2 worker processes, in steps per second, next to raw django-q2 no-op tasks per second on the same
broker and the same cluster configuration.

Both are measured draining a full queue: the runs are created with `manual` dispatch (not timed) and their
500 root steps enqueued while no cluster runs; then a cluster starts, and the rate is taken from the rows'
timestamps, from the first step started to the last run completed (the workers enqueue every later step
themselves, as in production). The raw figure: as many no-op tasks as there are steps, enqueued the same
way, each appending the time it ran to a file; rate = tasks / (last − first).

Each is measured `--throughput-rounds` times (3), the two taking turns in an alternating order (engine, raw;
raw, engine; …): one drain takes about 2 s, and this machine's speed moves by a third within a minute,
so a single pair compared whichever moments each happened to fall on. The rates are the totals (steps over
seconds, summed over the rounds); the notes give each round's ratio.
"""

import os
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.db.models import Max, Min

from bench.cluster import Cluster, bench_organization, dag_definition, wait_drained
from bench.common import Row

RATIO_TARGET = 1.0


def add_arguments(parser):
    group = parser.add_argument_group("throughput")
    group.add_argument("--dag-runs", type=int, default=500, help="runs of the 5-step DAG (default 500)")
    group.add_argument("--throughput-rounds", type=int, default=3,
                       help="rounds of each measurement, taking turns (default 3)")  # fmt: skip


def _create_runs(workflow, actor, count) -> tuple[list[str], list[str]]:
    from runs.engine import dispatch
    from runs.services import run_create

    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "manual"
    dispatch.MANUAL_QUEUE.clear()
    try:
        ids = [run_create(workflow=workflow, actor=actor, input_data={"n": n}).pk for n in range(count)]
        roots = list(dispatch.MANUAL_QUEUE)
    finally:
        dispatch.MANUAL_QUEUE.clear()
        settings.BATON_ENGINE_DISPATCH = previous
    return ids, roots


def _engine_round(org, workflow, actor, count) -> tuple[float, float]:
    """(seconds, cluster CPU seconds) of one drain of `count` runs of the DAG."""
    from runs.engine import dispatch
    from runs.models import Run, StepRun

    ids, roots = _create_runs(workflow, actor, count)
    assert len(roots) == count, len(roots)
    dispatch.enqueue(roots)  # no cluster yet: the queue fills up
    with Cluster(workers=2) as cluster:
        if not wait_drained(org, timeout=900):
            raise RuntimeError("the runs did not complete within 900 s")
        cpu = _cluster_cpu(cluster)
    first = StepRun.objects.filter(run_id__in=ids).aggregate(Min("started_at"))["started_at__min"]
    last = Run.objects.filter(pk__in=ids).aggregate(Max("completed_at"))["completed_at__max"]
    statuses = set(Run.objects.filter(pk__in=ids).values_list("status", flat=True))
    assert statuses == {"completed"}, statuses
    completed_steps = StepRun.objects.filter(run_id__in=ids, status="completed").count()
    assert completed_steps == count * 5, completed_steps
    return (last - first).total_seconds(), cpu


def _raw_round(tasks: int) -> tuple[float, float, float]:
    """(seconds, cluster CPU seconds, seconds to enqueue) of one drain of `tasks` no-op tasks."""
    from django_q.tasks import async_task

    marker_dir = Path(tempfile.mkdtemp(prefix="baton-noop-"))
    marker = marker_dir / "noop"
    started = time.perf_counter()
    for _ in range(tasks):
        async_task("bench.tasks.noop", str(marker), save=False)
    enqueued = time.perf_counter() - started
    with Cluster(workers=2) as cluster:
        deadline = time.monotonic() + 600
        while not marker.exists() or marker.read_text().count("\n") < tasks:
            if time.monotonic() > deadline:
                raise RuntimeError("the no-op tasks did not all run within 600 s")
            time.sleep(0.25)  # as wait_drained: the poll must not take the CPU it measures
        cpu = _cluster_cpu(cluster)
    stamps = [float(line) for line in marker.read_text().split()]
    os.unlink(marker)
    marker_dir.rmdir()
    return max(stamps) - min(stamps), cpu, enqueued


def run(options) -> list[Row]:
    from workflows.services import workflow_create

    count, rounds = options.dag_runs, max(1, options.throughput_rounds)
    org, _owner, actor = bench_organization("Throughput bench")
    workflow = workflow_create(organization=org, actor=actor, definition=dag_definition())
    steps = count * 5
    engine, raw = [], []
    for index in range(rounds):
        for kind in ("engine", "raw") if index % 2 == 0 else ("raw", "engine"):
            if kind == "engine":
                engine.append(_engine_round(org, workflow, actor, count))
            else:
                raw.append(_raw_round(steps))

    engine_seconds, engine_cpu = sum(r[0] for r in engine), sum(r[1] for r in engine)
    raw_seconds, raw_cpu, raw_enqueued = (sum(r[i] for r in raw) for i in range(3))
    engine_rate, raw_rate = steps * rounds / engine_seconds, steps * rounds / raw_seconds
    ratio = engine_rate / raw_rate
    per_round = [r[0] / e[0] for e, r in zip(engine, raw, strict=True)]  # (steps/e) / (tasks/r), same counts
    spread = f"rounds {min(per_round):.2f}–{max(per_round):.2f}×" if rounds > 1 else "one round"
    backend = "SQLite + ORM broker" if _vendor() == "sqlite" else "PostgreSQL + Redis"
    return [
        Row("throughput", f"{count} runs × 5-step DAG, 2 workers ({backend})", f"{engine_rate:,.0f} steps/s",
            f"ratio ≥ {RATIO_TARGET}", f"{rounds} × {steps:,} steps in {engine_seconds:.1f} s "
            f"({count * rounds / engine_seconds:,.1f} runs/s); {ratio:.2f}× raw django-q2 tasks/s "
            f"({spread}); "
            f"cluster CPU {engine_cpu / steps / rounds * 1000:.2f} ms/step (its start included)",
            ratio >= RATIO_TARGET),
        Row("throughput", "raw django-q2 no-op tasks, same broker/cluster", f"{raw_rate:,.0f} tasks/s", "",
            f"{rounds} × {steps:,} tasks in {raw_seconds:.1f} s (enqueueing them took {raw_enqueued:.1f} s); "
            f"cluster CPU {raw_cpu / steps / rounds * 1000:.2f} ms/task (its start included)"),
    ]  # fmt: skip


def _vendor() -> str:
    from django.db import connection

    return connection.vendor


def _cluster_cpu(cluster) -> float:
    from bench.cluster import cpu_seconds

    return cpu_seconds(cluster.pids())
