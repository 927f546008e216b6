"""Dashboard: server time of the runs list, a run's detail and the overview (docs/dashboard.md) with
`--dash-runs` runs (default 10,000: five steps each, statuses as a busy organisation has them, spread over
30 days) of `--dash-workflows` workflows (default 200) in the database, written with bulk inserts.

Each page is requested through Django's test client (the whole middleware stack, session sign-in,
templates; no network), `--dash-requests` times after a warm-up; per request the wall and CPU time of this
process. Target: p95 ≤ 50 ms per page. The workflow list (200 rows) is measured too, without a target.
"""

import sys
import time
from datetime import timedelta
from decimal import Decimal

from bench.cluster import bench_organization, dag_definition
from bench.common import Row, percentile

TARGET_MS = 50
STATUSES = (  # (status, share per 100 runs)
    ("completed", 80),
    ("failed", 12),
    ("cancelled", 4),
    ("running", 2),
    ("awaiting_approval", 1),
    ("queued", 1),
)


def add_arguments(parser):
    group = parser.add_argument_group("dashboard")
    group.add_argument("--dash-runs", type=int, default=10_000, help="runs in the database (default 10000)")
    group.add_argument("--dash-workflows", type=int, default=200, help="workflows (default 200)")
    group.add_argument("--dash-requests", type=int, default=200, help="requests per page (default 200)")


def _step_status(run_status: str, n: int) -> str:
    if run_status in ("completed", "cancelled") or n == 0:
        return "completed"
    if run_status == "failed":
        return "failed" if n == 3 else ("skipped" if n == 4 else "completed")
    if run_status == "queued":
        return "pending"
    return (
        {"running": "running", "awaiting_approval": "awaiting_approval"}[run_status] if n == 1 else "pending"
    )


def _populate(org, actor, workflows: int, runs: int):
    """`workflows` workflows (through the service: versions, tags, audit) and `runs` runs with five step
    runs each (bulk inserts), newest in the last hours; returns a finished run with real steps and events."""
    from django.test import override_settings
    from django.utils import timezone

    from runs.models import Run, StepRun
    from runs.services import run_create
    from workflows.services import workflow_create

    definition = dag_definition()
    flows = [
        workflow_create(organization=org, actor=actor, definition={**definition, "name": f"Flow {i:03}"},
                        tags=[f"team-{i % 7}"])
        for i in range(workflows)
    ]  # fmt: skip
    # The detail page's run executes for real (steps, attempts, events) before the bulk rows exist, so the
    # engine never meets their made-up step rows.
    with override_settings(BATON_ENGINE_DISPATCH="inline"):
        detail = run_create(workflow=flows[0], actor=actor, input_data={"n": 1})
    versions = {flow.id: flow.versions.values_list("id", "content_hash").get() for flow in flows}
    statuses = [status for status, share in STATUSES for _ in range(share)]
    now = timezone.now()
    batch = 2000
    for start in range(0, runs, batch):
        rows = []
        for i in range(start, min(runs, start + batch)):
            flow = flows[i % len(flows)]
            status = statuses[i % len(statuses)]
            created = now - timedelta(seconds=i * 30 * 86_400 / runs)
            finished = status in ("completed", "failed", "cancelled")
            rows.append(
                Run(
                    organization=org,
                    workflow=flow,
                    workflow_version_id=versions[flow.id][0],
                    definition_hash=versions[flow.id][1],
                    status=status,
                    trigger="api",
                    input_data={"n": i},
                    created_at=created,
                    started_at=created,
                    completed_at=created + timedelta(seconds=3) if finished else None,
                    error={"code": "step_failed", "message": f"Step s3 failed ({i})", "step_id": "s3"}
                    if status == "failed"
                    else None,
                    result={"last": i} if status == "completed" else None,
                    total_tokens=120,
                    cost_usd=Decimal("0.0012"),
                    event_seq=8,
                    pause_signal={"type": "approval", "step_id": "s1", "message": "OK?"}
                    if status == "awaiting_approval"
                    else None,
                )
            )
        Run.objects.bulk_create(rows, batch_size=500)
        steps = [
            StepRun(run=run, step_id=f"s{n}", type="transform", status=_step_status(run.status, n),
                    attempt=1, input_data={"n": n}, output_data=n, queued_at=run.created_at,
                    started_at=run.created_at, completed_at=run.created_at)
            for run in rows
            for n in range(5)
        ]  # fmt: skip
        StepRun.objects.bulk_create(steps, batch_size=1000)
    from django.db import connection

    if connection.vendor == "postgresql":  # as autovacuum would have by now on a live database
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    detail.refresh_from_db()
    return detail


def _measure(client, url: str, requests: int) -> tuple[list[float], list[float], int]:
    from django.db import connection

    for _ in range(5):
        response = client.get(url)
        assert response.status_code == 200, (url, response.status_code)
    statements = []

    def count(execute, sql, params, many, context):
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            statements.append((time.perf_counter() - start, sql))

    with connection.execute_wrapper(count):
        client.get(url)
    slowest = sorted(statements, reverse=True)[:2]
    for seconds, sql in slowest:  # where a slow page spends its database time (stderr: not in the table)
        print(f"  {url}: {seconds * 1000:.1f} ms {sql[:160]}", file=sys.stderr)
    walls, cpus = [], []
    for _ in range(requests):
        start, start_cpu = time.perf_counter(), time.process_time()
        response = client.get(url)
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - start_cpu)
        assert response.status_code == 200
    return walls, cpus, len(statements)


def run(options) -> list[Row]:
    from django.test import Client, override_settings

    from accounts.authentication import SESSION_ORG_KEY

    org, owner, actor = bench_organization("Dashboard bench")
    started = time.perf_counter()
    detail = _populate(org, actor, options.dash_workflows, options.dash_runs)
    setup = time.perf_counter() - started
    client = Client(HTTP_HOST="127.0.0.1")
    client.force_login(owner)
    session = client.session
    session[SESSION_ORG_KEY] = org.id
    session.save()
    pages = [
        ("overview", "/"),
        ("runs list", "/runs/"),
        ("run detail", f"/runs/{detail.id}/"),
        ("runs list, filtered (failed)", "/runs/?status=failed"),
        ("workflows list", "/workflows/"),
    ]
    rows = []
    # The per-session limit (600 a minute by default) is not what is measured here.
    with override_settings(BATON_DASHBOARD_REQUESTS_PER_MINUTE=10_000_000):
        for index, (name, url) in enumerate(pages):
            walls, cpus, queries = _measure(client, url, options.dash_requests)
            p95 = percentile(walls, 95) * 1000
            targeted = index < 3
            rows.append(
                Row(
                    "dashboard",
                    f"{name} p95 / p50 ({options.dash_runs:,} runs, {options.dash_workflows} workflows)",
                    f"{p95:.1f} / {percentile(walls, 50) * 1000:.1f} ms",
                    f"p95 ≤ {TARGET_MS} ms" if targeted else "",
                    f"CPU p95 {percentile(cpus, 95) * 1000:.1f} ms; {queries} queries; "
                    f"{options.dash_requests} requests; data written in {setup:.0f} s",
                    met=(p95 <= TARGET_MS) if targeted else None,
                )
            )
    return rows
