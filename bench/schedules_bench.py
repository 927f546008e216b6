"""Schedules and inbound webhooks (docs/schedules.md).

1. `--sched-count` schedules due at the same minute boundary, fired by 2 real qclusters (2 worker processes
   each, so 4 scheduler threads): the time from the fire time to each run's creation (p50, p99, the last
   one) and duplicates (runs beyond one per schedule and fire time). First all of one organisation (the hard
   case: runs of one organisation are created one after another under its row lock), then, at the next
   minute, as many spread over `--sched-orgs` organisations. The schedules are written once the clusters
   are up, so each scheduler reads the first fire time once (woken by the doorbell) and sleeps until it.
2. Requests per second of POST /hooks/{workflow_id}/{token} next to POST /workflows/{ref}/run on the same
   uvicorn server (bench/api_bench.py's load generator, the two taking turns), hook rate limit raised out
   of the way.
"""

import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta

from bench.api_bench import _free_port, build_request, measure
from bench.cluster import ROOT, Cluster, bench_organization, chain_definition, child_env, wait_terminal
from bench.common import Row, percentile

LATENCY_TARGET_MS = 1000
HOOK_TARGET = 0.8


def add_arguments(parser):
    group = parser.add_argument_group("schedules")
    group.add_argument("--sched-count", type=int, default=200, help="schedules due at once (default 200)")
    group.add_argument(
        "--sched-orgs",
        type=int,
        default=10,
        help="then the same number spread over this many organisations (default 10; 1: skip)",
    )
    group.add_argument("--sched-no-hooks", action="store_true", help="measure the schedules only")


def _schedules_due(count: int, organizations: int, fire_time) -> tuple[list, str]:
    """`count` schedules spread evenly over `organizations` new organisations (one workflow each), due once
    a day at `fire_time` only (so the other layout's minute does not fire them again)."""
    from workflows.models import Schedule
    from workflows.services import workflow_create

    workflows = []
    for number in range(organizations):
        org, _owner, actor = bench_organization(f"Schedules bench {number}")
        workflows.append(workflow_create(organization=org, actor=actor, definition=chain_definition(1)))
    cron_expression = f"{fire_time.minute} {fire_time.hour} * * *"
    Schedule.objects.bulk_create(
        Schedule(organization_id=workflow.organization_id, workflow=workflow, cron_expression=cron_expression,
                 input_data={"n": 1}, overlap="allow", next_run_at=fire_time)
        for workflow in (workflows[n % organizations] for n in range(count))
    )  # fmt: skip
    return workflows, fire_time.strftime("%Y-%m-%dT%H:%M:%SZ")


def _collect(workflows, stamp: str, count: int, fire_time) -> tuple[list[float], int, int]:
    """(fire time → run created, seconds, per run; duplicates; fire times without a run), once every
    schedule has its run (or after 60 s)."""
    from django.utils import timezone

    from runs.models import Run

    runs = Run.objects.filter(workflow__in=workflows, metadata__fire_time=stamp)
    time.sleep(max(0.0, (fire_time - timezone.now()).total_seconds()))
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and runs.count() < count:
        time.sleep(0.05)
    time.sleep(1)  # a duplicate, if any, would come now
    rows = list(runs.values_list("metadata", "created_at"))
    per_fire = Counter(metadata["schedule_id"] for metadata, _ in rows)
    latencies = [(created - fire_time).total_seconds() for _, created in rows]
    return latencies, sum(n - 1 for n in per_fire.values()), count - len(per_fire)


def _clusters_ready(clusters, timeout: float = 300) -> None:
    """Wait until both clusters have their worker processes and one run has gone through them: on a loaded
    machine a cluster takes a minute or more to start, and a fire time more than a minute late is missed."""
    from runs.services import run_create
    from workflows.services import workflow_create

    deadline = time.monotonic() + timeout
    while any(len(cluster.pids()) < 5 for cluster in clusters):  # sentinel, 2 workers, pusher, monitor
        if time.monotonic() > deadline:
            raise RuntimeError("the clusters did not start")
        time.sleep(0.5)
    org, _owner, actor = bench_organization("Schedules bench warm-up")
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(1))
    run = run_create(workflow=workflow, actor=actor, input_data={"n": 1})
    if not wait_terminal([run.id], timeout=max(1.0, deadline - time.monotonic()), interval=0.1):
        raise RuntimeError("the clusters did not run a warm-up run")


def _fire_latencies(count: int, spread: int) -> dict[int, tuple[list[float], int, int]]:
    """{organisations: (latencies, duplicates, missing)}: `count` schedules of one organisation due at one
    minute boundary, then `count` schedules spread over `spread` organisations due at the next one, fired by
    the same two clusters. The schedules are written once the clusters are up, 15 to 75 s before their fire
    time, and the doorbell rung as `schedule_create` does: each scheduler reads the first fire time once
    and sleeps until it."""
    from django.utils import timezone

    from config import doorbell
    from workflows.schedules import SCHEDULES_CHANNEL

    results = {}
    with Cluster(workers=2) as one, Cluster(workers=2) as two:
        _clusters_ready([one, two])
        first = (timezone.now() + timedelta(seconds=75)).replace(second=0, microsecond=0)
        layouts = {1: (_schedules_due(count, 1, first), first)}
        if spread > 1:
            second = first + timedelta(minutes=1)
            layouts[spread] = (_schedules_due(count, spread, second), second)
        doorbell.ring(SCHEDULES_CHANNEL)
        for organizations, ((workflows, stamp), fire_time) in layouts.items():
            results[organizations] = _collect(workflows, stamp, count, fire_time)
    return results


def _hook_rates(options) -> dict:
    import httpx

    from accounts.choices import ALL_SCOPES
    from accounts.services import api_key_create
    from workflows.models import Workflow
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("Hooks bench")
    key = api_key_create(organization=org, actor=actor, name="bench", scopes=ALL_SCOPES).key
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(5))
    Workflow.objects.filter(pk=workflow.pk).update(webhook_enabled=True)
    workflow.refresh_from_db()

    from django.db import connection

    server_env = {"BATON_BENCH_CONN_MAX_AGE": 0} if connection.vendor == "postgresql" else {}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=child_env(BATON_ENGINE_DISPATCH="queue", BATON_WEBHOOK_RATE_PER_MINUTE=10**9,
                                **server_env),
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        body = {"input_data": {"n": 1}}
        hook = build_request(
            "POST", f"/api/v1/hooks/{workflow.pk}/{workflow.webhook_secret}", "none", {"n": 1}
        )
        hook = hook.replace(b"Authorization: Bearer none\r\n", b"")
        return measure(port, {
            "trigger": (build_request("POST", f"/api/v1/workflows/{workflow.pk}/run", key, body), 202),
            "hook": (hook, 202),
        }, options)  # fmt: skip
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _fire_rows(count: int, organizations: int, latencies, duplicates: int, missing: int) -> list[Row]:
    where = "one organisation" if organizations == 1 else f"{organizations} organisations"
    rows = []
    if latencies:
        p50, p99, last = (
            percentile(latencies, 50) * 1000,
            percentile(latencies, 99) * 1000,
            max(latencies) * 1000,
        )
        rows.append(Row(
            "schedules", f"{count} schedules of {where} due at once, 2 qclusters: fire time → run created",
            f"p99 {p99:.0f} ms",
            f"p99 ≤ {LATENCY_TARGET_MS} ms", f"p50 {p50:.0f} ms, last {last:.0f} ms; {len(latencies)} runs",
            p99 <= LATENCY_TARGET_MS and not missing,
        ))  # fmt: skip
    rows.append(Row("schedules", f"duplicate runs ({where}, per schedule and fire time)", str(duplicates),
                    "0", f"fire times without a run: {missing}", duplicates == 0))  # fmt: skip
    return rows


def run(options) -> list[Row]:
    count = options.sched_count
    rows = []
    for organizations, (latencies, duplicates, missing) in _fire_latencies(count, options.sched_orgs).items():
        rows += _fire_rows(count, organizations, latencies, duplicates, missing)
    if options.sched_no_hooks:
        return rows
    rates = _hook_rates(options)
    ratio = rates["hook"]["rate"] / rates["trigger"]["rate"]
    ratios = rates["hook"]["round_ratios"]
    rows.append(Row(
        "schedules", "POST /hooks/{workflow_id}/{token} (5-step workflow)",
        f"{rates['hook']['rate']:,.0f} req/s",
        f"≥ {HOOK_TARGET}× POST …/run",
        f"{ratio:.2f}× POST …/run ({rates['trigger']['rate']:,.0f} req/s; rounds {min(ratios):.2f}–"
        f"{max(ratios):.2f}×); p50 {rates['hook']['p50']:.1f} ms", ratio >= HOOK_TARGET,
    ))  # fmt: skip
    return rows
