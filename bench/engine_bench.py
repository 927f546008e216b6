"""Engine: a 40-step chain of `transform` steps from `run_create` to completion.

1. In this process with `inline` dispatch: the engine's own cost, with every SQL statement and commit
   counted (connection.execute_wrapper; commits by wrapping connection.commit).
2. Through a real django-q2 cluster (`manage.py qcluster`, 2 workers; SQLite + ORM broker, or PostgreSQL
   + Redis): what a client sees, split into the broker's pickup latency (trigger → first step started)
   and the execution (first step started → run completed).
"""

import statistics
import time
from collections import Counter

from django.conf import settings
from django.db import connection

from bench.cluster import Cluster, bench_organization, chain_definition, cpu_seconds, wait_terminal
from bench.common import Row

TARGETS = {"sqlite": 0.8, "postgresql": 0.4}  # seconds, trigger to completion (issue #4)
PICKUP_TARGET_MS = 20  # SQLite: the ORM broker woken by the doorbell (issue #20)
LEASED_STEP_TARGET_MS = {"sqlite": 2.0, "postgresql": 3.0}  # orchestration of a leased step (issue #20)


def add_arguments(parser):
    group = parser.add_argument_group("engine")
    group.add_argument("--chain-steps", type=int, default=40, help="steps in the chain (default 40)")
    group.add_argument("--chain-runs", type=int, default=9, help="timed runs through the cluster (default 9)")


class QueryCounter:
    """Counts and times every SQL statement (round trip included) and every commit."""

    def __init__(self):
        self.statements = Counter()
        self.seconds = 0.0
        self.commits = 0
        self.commit_seconds = 0.0

    def __call__(self, execute, sql, params, many, context):
        word = sql.lstrip().split(None, 1)[0].upper()
        self.statements[word] += 1
        started = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.seconds += time.perf_counter() - started


def _inline_run(workflow, actor, n):
    from runs.services import run_create

    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "inline"
    try:
        return run_create(workflow=workflow, actor=actor, input_data={"n": n})
    finally:
        settings.BATON_ENGINE_DISPATCH = previous


def _leased_step_cpu(workflow, actor, steps: int, runs: int) -> tuple[float, float, float]:
    """(CPU ms, wall ms, PostgreSQL server CPU ms) per step of the chain with instant steps off, inline in
    this process: every step claimed with a lease, executed, recorded and advanced in transactions of its
    own, as a worker does. This process's CPU leaves out the trigger's (one per chain, measured apart);
    the wall time and the server's CPU include it."""
    from runs.engine.dispatch import MANUAL_QUEUE
    from runs.models import Run, StepRun
    from runs.services import run_create

    previous, dispatch = settings.BATON_INSTANT_STEPS_MS, settings.BATON_ENGINE_DISPATCH
    settings.BATON_INSTANT_STEPS_MS = 0
    try:
        _inline_run(workflow, actor, -1)  # warm-up
        server = _server_pid()
        server_cpu = cpu_seconds([server]) if server else 0.0
        cpu, wall = time.process_time(), time.perf_counter()
        for n in range(runs):
            _inline_run(workflow, actor, n)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        server_cpu = (cpu_seconds([server]) - server_cpu) if server else 0.0
        settings.BATON_ENGINE_DISPATCH = "manual"  # the trigger alone: run_create, nothing executed
        trigger_cpu, ids = time.process_time(), []
        for n in range(runs):
            ids.append(run_create(workflow=workflow, actor=actor, input_data={"n": n}).id)
        trigger_cpu = time.process_time() - trigger_cpu
    finally:
        settings.BATON_INSTANT_STEPS_MS, settings.BATON_ENGINE_DISPATCH = previous, dispatch
        MANUAL_QUEUE.clear()
    # Never to be executed (the cluster's reconciler would re-dispatch their queued first steps).
    StepRun.objects.filter(run_id__in=ids).update(status="cancelled")
    Run.objects.filter(pk__in=ids).update(status="cancelled")
    per_step = (cpu - trigger_cpu) * 1000 / runs / steps
    return per_step, wall * 1000 / runs / steps, server_cpu * 1000 / runs / steps


def _server_pid() -> int | None:
    """PostgreSQL: the server process of this connection (on this machine), whose CPU a step costs too."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def run(options) -> list[Row]:
    from runs.models import Run, StepRun
    from workflows.services import workflow_create

    steps = options.chain_steps
    vendor = connection.vendor
    backend = "SQLite + ORM broker" if vendor == "sqlite" else "PostgreSQL + Redis"
    org, _owner, actor = bench_organization("Engine bench")
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(steps))

    # 1. Inline, one process: time and statements per step.
    _inline_run(workflow, actor, -1)  # warm-up (definition cache, templates)
    inline_times, counter = [], None
    for n in range(options.chain_runs):
        counter = QueryCounter()
        original_commit = connection.commit

        def commit(counter=counter, original_commit=original_commit):
            counter.commits += 1
            started = time.perf_counter()
            try:
                return original_commit()
            finally:
                counter.commit_seconds += time.perf_counter() - started

        connection.commit = commit
        try:
            with connection.execute_wrapper(counter):
                started = time.perf_counter()
                run = _inline_run(workflow, actor, n)
                inline_times.append(time.perf_counter() - started)
        finally:
            del connection.commit
        assert Run.objects.get(pk=run.pk).status == "completed"
    last_wall = inline_times[-1]
    statements = sum(counter.statements.values())
    breakdown = ", ".join(f"{word} {count / steps:.1f}" for word, count in counter.statements.most_common(6))

    leased_cpu, leased_wall, leased_server = _leased_step_cpu(workflow, actor, steps, options.chain_runs)

    # 2. Through a real cluster.
    walls, db_spans, pickups, executions = [], [], [], []
    with Cluster(workers=2):
        warm = _trigger(workflow, actor, 0)
        if not wait_terminal([warm.pk], timeout=120):
            raise RuntimeError("the cluster did not complete a warm-up run within 120 s")
        for n in range(options.chain_runs):
            time.sleep(0.3)  # let the workers go idle, as a fresh trigger would find them
            started = time.perf_counter()
            run = _trigger(workflow, actor, n)
            if not wait_terminal([run.pk], timeout=60, interval=0.001):
                raise RuntimeError(f"run {run.pk} did not finish within 60 s")
            walls.append(time.perf_counter() - started)
            run = Run.objects.get(pk=run.pk)
            assert run.status == "completed", (run.status, run.error)
            first = StepRun.objects.get(run=run, step_id="s0")
            db_spans.append((run.completed_at - run.created_at).total_seconds())
            pickups.append((first.started_at - run.created_at).total_seconds())
            executions.append((run.completed_at - first.started_at).total_seconds())

    target = TARGETS[vendor]
    median, best = statistics.median(walls), min(walls)
    inline_median = statistics.median(inline_times)
    pickup_met = statistics.median(pickups) * 1000 <= PICKUP_TARGET_MS if vendor == "sqlite" else None
    return [
        Row("engine", f"{steps}-step chain, trigger → completed, qcluster ({backend})",
            f"median {median * 1000:,.0f} ms, best {best * 1000:,.0f} ms", f"≤ {target * 1000:,.0f} ms",
            f"{options.chain_runs} runs, 2 workers; {median * 1000 / steps:.1f} ms/step (median); "
            f"{median / inline_median:.1f}× the inline run", median <= target),
        Row("engine", "  of which broker pickup (trigger → first step started)",
            f"median {statistics.median(pickups) * 1000:,.0f} ms",
            f"≤ {PICKUP_TARGET_MS} ms" if vendor == "sqlite" else "",
            f"best {min(pickups) * 1000:,.0f} ms; from the rows' timestamps (created_at: before the commit)",
            pickup_met),
        Row("engine", "  of which execution (first step started → run completed)",
            f"median {statistics.median(executions) * 1000:,.0f} ms",
            "", f"{statistics.median(executions) * 1000 / steps:.1f} ms/step; the chain continues in one "
            "worker (no queue round trip between steps)"),
        Row("engine", f"{steps}-step chain, inline dispatch (one process)",
            f"median {inline_median * 1000:,.0f} ms, best {min(inline_times) * 1000:,.0f} ms", "",
            f"{inline_median * 1000 / steps:.1f} ms/step"),
        Row("engine", f"leased step (instant steps off): CPU per step, inline ({backend.split(' +')[0]})",
            f"{leased_cpu:.2f} ms", f"≤ {LEASED_STEP_TARGET_MS[vendor]:g} ms",
            f"claim, handler, record, advance, commit; {options.chain_runs} chains of {steps}, this "
            f"process's CPU (time.process_time) less the triggers'; wall {leased_wall:.2f} ms per step "
            "with the trigger" + (f"; the PostgreSQL server's CPU {leased_server:.2f} ms per step (trigger "
            "included)" if vendor == "postgresql" else ""),
            leased_cpu <= LEASED_STEP_TARGET_MS[vendor]),
        Row("engine", "  SQL statements per step (inline run)", f"{statements / steps:.1f}", "",
            f"{statements} for the run incl. run_create; commits per step {counter.commits / steps:.2f}; "
            f"by kind per step: {breakdown}"),
        Row("engine", "  time per step in SQL / commits / Python (inline run)",
            f"{counter.seconds * 1000 / steps:.2f} / {counter.commit_seconds * 1000 / steps:.2f} / "
            f"{(last_wall - counter.seconds - counter.commit_seconds) * 1000 / steps:.2f} ms", "",
            "statement round trips as the driver sees them; the rest is Python (ORM, templates, engine)"),
    ]  # fmt: skip


def _trigger(workflow, actor, n):
    from runs.services import run_create

    return run_create(workflow=workflow, actor=actor, input_data={"n": n})
