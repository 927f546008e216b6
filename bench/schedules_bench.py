"""Schedules and inbound webhooks (docs/schedules.md).

1. `--sched-count` schedules (`* * * * *`) due at the same minute boundary, fired by 2 real qclusters (2
   worker processes each, so 4 scheduler threads): the time from the fire time to each run's creation
   (p50, p99, the last one) and duplicates (runs beyond one per schedule and fire time). The schedules are
   written before the clusters start, so each scheduler reads the fire time once and sleeps until it.
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
from bench.cluster import ROOT, Cluster, bench_organization, chain_definition, child_env
from bench.common import Row, percentile

LATENCY_TARGET_MS = 1000
HOOK_TARGET = 0.8


def add_arguments(parser):
    group = parser.add_argument_group("schedules")
    group.add_argument("--sched-count", type=int, default=200, help="schedules due at once (default 200)")


def _fire_latencies(count: int) -> tuple[list[float], int, int]:
    """(fire time → run created, seconds, per run; duplicates; fire times without a run)."""
    from django.utils import timezone

    from runs.models import Run
    from workflows.models import Schedule
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("Schedules bench")
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(1))
    now = timezone.now()
    fire_time = (now + timedelta(seconds=70)).replace(second=0, microsecond=0)  # 10 to 70 s ahead
    Schedule.objects.bulk_create(
        Schedule(organization=org, workflow=workflow, cron_expression="* * * * *", input_data={"n": 1},
                 overlap="allow", next_run_at=fire_time)
        for _ in range(count)
    )  # fmt: skip
    stamp = fire_time.strftime("%Y-%m-%dT%H:%M:%SZ")
    with Cluster(workers=2), Cluster(workers=2):
        wait = (fire_time - timezone.now()).total_seconds()
        time.sleep(max(0.0, wait))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Run.objects.filter(workflow=workflow, metadata__fire_time=stamp).count() >= count:
                break
            time.sleep(0.05)
        time.sleep(1)  # a duplicate, if any, would come now
        rows = list(
            Run.objects.filter(workflow=workflow, metadata__fire_time=stamp).values_list(
                "metadata", "created_at"
            )
        )
    per_fire = Counter(metadata["schedule_id"] for metadata, _ in rows)
    duplicates = sum(n - 1 for n in per_fire.values())
    missing = count - len(per_fire)
    latencies = [(created - fire_time).total_seconds() for _, created in rows]
    Schedule.objects.filter(workflow=workflow).delete()
    return latencies, duplicates, missing


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


def run(options) -> list[Row]:
    count = options.sched_count
    latencies, duplicates, missing = _fire_latencies(count)
    rows = []
    if latencies:
        p50, p99, last = (
            percentile(latencies, 50) * 1000,
            percentile(latencies, 99) * 1000,
            max(latencies) * 1000,
        )
        rows.append(Row(
            "schedules", f"{count} schedules due at once, 2 qclusters: fire time → run created",
            f"p99 {p99:.0f} ms",
            f"p99 ≤ {LATENCY_TARGET_MS} ms", f"p50 {p50:.0f} ms, last {last:.0f} ms; {len(latencies)} runs",
            p99 <= LATENCY_TARGET_MS and not missing,
        ))  # fmt: skip
    rows.append(Row("schedules", "duplicate runs (per schedule and fire time)", str(duplicates), "0",
                    f"fire times without a run: {missing}", duplicates == 0))  # fmt: skip
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
