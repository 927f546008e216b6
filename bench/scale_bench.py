"""Scale (docs/reliability.md, "Scale"): one organisation with `--scale-runs` runs (default 1,000,000) and
`--scale-steps` step rows a run (default 5: 5,000,000 rows), generated in SQL (INSERT … SELECT over
generate_series: seconds a hundred thousand rows, no ORM), on PostgreSQL only. Then:

- `GET /runs` with each filter (workflow, status, trigger, env, version, created_after/before, metadata)
  and without: p95 of `--scale-samples` requests each (target ≤ 50 ms);
- `GET /runs/{id}` (a run with its steps): p95 (target ≤ 20 ms);
- the retention prune of `--scale-expired` expired runs (default 100,000, the oldest of them) in a
  `manage.py prune_runs` child process, while this process triggers runs: the trigger's p99 during the
  prune against its p99 idle (target ≤ 2×).

Requests go through Django's test client in this process (the whole API stack: middleware,
authentication, throttle, view, serializers, the database), so the figures are the server's time without
the network. `python bench/run.py scale --scale-runs 200000` measures a smaller table.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import Row, percentile

ROOT = Path(__file__).resolve().parent.parent
LIST_TARGET_MS = 50.0
DETAIL_TARGET_MS = 20.0
PRUNE_RATIO_TARGET = 2.0
WORKFLOWS = 20
VERSIONS = 3  # per workflow
RETENTION_DAYS = 30


def add_arguments(parser) -> None:
    group = parser.add_argument_group("scale")
    group.add_argument("--scale-runs", type=int, default=1_000_000, help="runs to generate (scale)")
    group.add_argument("--scale-steps", type=int, default=5, help="step rows per run (scale)")
    group.add_argument("--scale-expired", type=int, default=100_000, help="expired runs the prune removes")
    group.add_argument("--scale-samples", type=int, default=40, help="requests per measured query (scale)")


def _ms(seconds: float) -> float:
    return seconds * 1000


def _insert_select(model, overrides: dict[str, str], source: str, params: list) -> None:
    """INSERT INTO model's table (every concrete column) SELECT … FROM `source`: `overrides` gives the SQL
    of some columns (the others get the field's default as a parameter)."""
    from django.db import connection

    columns, expressions, values = [], [], []
    for field in model._meta.concrete_fields:
        columns.append(connection.ops.quote_name(field.column))
        if field.column in overrides or field.name in overrides:
            sql = overrides.get(field.column, overrides.get(field.name))
            expressions.append(sql.replace("%", "%%"))  # SQL's modulo, not a placeholder
        else:
            default = field.get_default()
            expressions.append("%s")
            values.append(field.get_db_prep_save(default, connection))
    table = connection.ops.quote_name(model._meta.db_table)
    sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(expressions)} FROM {source}"
    with connection.cursor() as cursor:
        cursor.execute(sql, values + params)


def _drop_secondary_indexes(models) -> list[str]:
    """Drops the tables' indexes other than their primary keys and constraints, and turns off the foreign
    keys' triggers for this session (the generated rows are consistent by construction): millions of rows
    go in several times faster, and each index is then built once, sorted. Returns the CREATE INDEX
    statements that rebuild them."""
    from django.db import connection

    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            """SELECT i.indexname, i.indexdef FROM pg_indexes i
               JOIN pg_class c ON c.relname = i.indexname
               WHERE i.schemaname = current_schema() AND i.tablename = ANY(%s)
                 AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = c.oid)""",
            [tables],
        )
        found = cursor.fetchall()
        for name, _definition in found:
            cursor.execute(f"DROP INDEX {connection.ops.quote_name(name)}")
        cursor.execute("SET session_replication_role = replica")  # no foreign-key checks per row
    return [definition for _name, definition in found]


def _generate(org, workflows, versions, runs: int, steps: int, expired: int) -> float:
    """The runs and their steps; returns the seconds it took."""
    from django.db import connection

    from runs.models import Run, StepRun

    started = time.perf_counter()
    rebuild = _drop_secondary_indexes([Run, StepRun])
    workflow_ids = "ARRAY[" + ",".join(f"'{w.pk}'" for w in workflows) + "]"
    version_ids = "ARRAY[" + ",".join(str(int(v.pk)) for v in versions) + "]::bigint[]"
    hashes = "ARRAY[" + ",".join(f"'{v.content_hash}'" for v in versions) + "]"  # VERSIONS per workflow
    # No `queued` runs: the first trigger's admission would start them all (the organisation has no limit
    # on concurrent runs), not what this bench measures. `running` and `paused` ones stay as they are.
    statuses = (
        "ARRAY['completed','completed','completed','failed','cancelled','completed','running','paused']"
    )
    triggers = "ARRAY['api','api','webhook','schedule','manual','api','rerun','api']"
    chunk = 200_000
    for first in range(0, runs, chunk):
        last = min(runs, first + chunk)
        version = f"1 + (i % {WORKFLOWS}) * {VERSIONS} + (i / 7) % {VERSIONS}"
        old = f"now() - make_interval(days => {RETENTION_DAYS + 5})"  # the expired runs' time: past retention
        base = f"CASE WHEN i >= {runs - expired} THEN {old} ELSE now() END"
        # i = 0 is the newest run; the oldest `expired` ones finished long ago (past the retention).
        overrides = {
            "id": "'run_scale' || lpad(i::text, 10, '0')",
            "organization_id": f"'{org.pk}'",
            "workflow_id": f"({workflow_ids})[1 + i % {WORKFLOWS}]",
            "workflow_version_id": f"({version_ids})[{version}]",
            "definition_hash": f"({hashes})[{version}]",
            "status": f"CASE WHEN i >= {runs - expired} THEN 'completed' ELSE ({statuses})[1 + i % 8] END",
            "trigger": f"({triggers})[1 + (i / 3) % 8]",
            "metadata": "jsonb_build_object('customer', 'c' || (i % 5000), 'batch', (i % 97)::text)",
            "env": "CASE WHEN i % 4 = 0 THEN 'prod' WHEN i % 4 = 1 THEN 'staging' ELSE NULL END",
            "created_at": f"{base} - make_interval(secs => i * 2 + 60)",
            "started_at": f"{base} - make_interval(secs => i * 2 + 59)",
            "completed_at": f"{base} - make_interval(secs => i * 2 + 50)",
            "event_seq": "0",
        }
        _insert_select(Run, overrides, "generate_series(%s, %s) AS g(i)", [first, last - 1])
    run_table = connection.ops.quote_name(Run._meta.db_table)
    for first in range(0, runs, chunk):
        last = min(runs, first + chunk)
        overrides = {
            "id": "'sr_scale' || lpad(g.i::text, 10, '0') || '_' || s.n",
            "run_id": "'run_scale' || lpad(g.i::text, 10, '0')",
            "step_id": "'s' || s.n",
            "type": "'transform'",
            "status": "'completed'",
            "attempt": "1",
            "queued_at": "now() - make_interval(secs => g.i * 2 + 58)",
            "started_at": "now() - make_interval(secs => g.i * 2 + 58)",
            "completed_at": "now() - make_interval(secs => g.i * 2 + 57)",
            "output_data": "to_jsonb(s.n)",
        }
        _insert_select(
            StepRun, overrides,
            f"generate_series(%s, %s) AS g(i) CROSS JOIN generate_series(0, {steps - 1}) AS s(n)",
            [first, last - 1],
        )  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        for definition in rebuild:
            cursor.execute(definition)
        cursor.execute("RESET maintenance_work_mem")
        cursor.execute("SET session_replication_role = DEFAULT")
    with connection.cursor() as cursor:  # as autovacuum would: statistics and the visibility map
        cursor.execute(f"VACUUM ANALYZE {run_table}")
        cursor.execute(f"VACUUM ANALYZE {connection.ops.quote_name(StepRun._meta.db_table)}")
    return time.perf_counter() - started


def _sample(client, path: str, samples: int, expected: int = 200) -> dict:
    """p50/p95 wall ms and the median CPU ms of this process over `samples` GETs (after two warm-up
    requests), the last body, and the database's own execution time (EXPLAIN ANALYZE) of the request's
    runs queries: a loaded machine inflates wall time most, these two least."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    durations, cpu = [], []
    body = {}
    for index in range(samples + 2):
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(path)
        elapsed, elapsed_cpu = time.perf_counter() - started, time.process_time() - started_cpu
        if response.status_code != expected:
            raise RuntimeError(f"GET {path} answered {response.status_code}: {response.content[:300]!r}")
        if index >= 2:
            durations.append(elapsed)
            cpu.append(elapsed_cpu)
        body = response.json()
    with CaptureQueriesContext(connection) as captured:
        client.get(path)
    database = 0.0
    with connection.cursor() as cursor:
        for query in captured.captured_queries:
            sql = query["sql"]
            if '"runs_run"' not in sql or not sql.lstrip().upper().startswith("SELECT"):
                continue
            cursor.execute(f"EXPLAIN (ANALYZE, FORMAT JSON) {sql}")
            plan = cursor.fetchone()[0]
            plan = json.loads(plan) if isinstance(plan, str) else plan
            database += plan[0]["Execution Time"]
    return {
        "p50": _ms(percentile(durations, 50)),
        "p95": _ms(percentile(durations, 95)),
        "cpu": _ms(percentile(cpu, 50)),
        "db": database,
        "body": body,
    }


def _trigger_latencies(client, path: str, *, count: int = 0, until=None) -> list[float]:
    durations = []
    while (count and len(durations) < count) or (until is not None and not until()):
        started = time.perf_counter()
        response = client.post(path, {"input_data": {"n": 1}}, content_type="application/json")
        durations.append(time.perf_counter() - started)
        if response.status_code != 202:
            raise RuntimeError(f"trigger answered {response.status_code}: {response.content[:300]!r}")
    return durations


def run(options) -> list[Row]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return [Row("scale", "skipped", "PostgreSQL only", "", "set DATABASE_URL (make bench on PostgreSQL)")]

    from accounts.choices import ALL_SCOPES
    from accounts.services import api_key_create
    from bench.cluster import bench_organization, chain_definition
    from workflows.models import WorkflowVersion
    from workflows.services import workflow_create, workflow_update

    runs, steps, expired = (
        options.scale_runs,
        options.scale_steps,
        min(options.scale_expired, options.scale_runs),
    )
    org, _owner, actor = bench_organization("Scale bench")
    org.retention_days = RETENTION_DAYS
    org.save(update_fields=["retention_days"])
    key = api_key_create(organization=org, actor=actor, name="bench", scopes=ALL_SCOPES).key
    workflows = []
    for n in range(WORKFLOWS):
        workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(steps))
        for extra in range(1, VERSIONS):
            definition = chain_definition(steps)
            definition["description"] = f"version {extra + 1} of {n}"
            workflow, _ = workflow_update(workflow=workflow, actor=actor, definition=definition)
        workflows.append(workflow)
    versions = []
    for workflow in workflows:
        versions += list(WorkflowVersion.objects.filter(workflow=workflow).order_by("number"))
    assert len(versions) == WORKFLOWS * VERSIONS
    generated = _generate(org, workflows, versions, runs, steps, expired)
    notes = f"{runs:,} runs, {runs * steps:,} steps generated in {generated:,.0f} s; load {_load()}"
    rows = [Row("scale", "fixture", f"{runs:,} runs / {runs * steps:,} steps", "", notes)]
    return rows + measure(org, key, workflows, options)


def measure(org, key: str, workflows: list, options) -> list[Row]:
    """The list, detail and prune measurements on a generated fixture (the prune consumes it)."""
    from django.test import Client

    from bench.cluster import child_env
    from runs.models import Run

    steps, expired = options.scale_steps, min(options.scale_expired, options.scale_runs)
    rows = []
    client = Client(SERVER_NAME="127.0.0.1", HTTP_AUTHORIZATION=f"Bearer {key}")
    samples = options.scale_samples
    target = workflows[3]
    cases = {
        "no filter": "/api/v1/runs",
        "workflow": f"/api/v1/runs?workflow={target.pk}",
        "status=failed": "/api/v1/runs?status=failed",
        "status=failed,cancelled": "/api/v1/runs?status=failed&status=cancelled",
        "trigger=schedule": "/api/v1/runs?trigger=schedule",
        "env=prod": "/api/v1/runs?env=prod",
        "version=2": "/api/v1/runs?version=2",
        "created window (1 h)": f"/api/v1/runs?created_after={_ago(7200)}&created_before={_ago(3600)}",
        "metadata.customer": "/api/v1/runs?metadata.customer=c42",
        "metadata.batch (1 % of runs)": "/api/v1/runs?metadata.batch=5",
        "metadata + status": "/api/v1/runs?metadata.customer=c42&status=completed",
        "workflow runs": f"/api/v1/workflows/{target.pk}/runs?status=failed",
        "offset 10,000": "/api/v1/runs?offset=10000",
    }  # fmt: skip
    targeted = set(cases) - {"offset 10,000"}  # a deep offset reads the rows it skips: no target
    for name, path in cases.items():
        found = _sample(client, path, samples)
        body = found["body"]
        estimated = " (estimated)" if body.get("total_estimated") else ""
        target = f"p95 ≤ {LIST_TARGET_MS:.0f} ms" if name in targeted else ""
        rows.append(
            Row("scale", f"GET /runs {name}", f"p50 {found['p50']:.1f} ms, p95 {found['p95']:.1f} ms", target,
                f"total {body['total']:,}{estimated}; CPU {found['cpu']:.1f} ms (Python, median), "
                f"database {found['db']:.1f} ms (EXPLAIN ANALYZE); load {_load()}",
                met=found["p95"] <= LIST_TARGET_MS if target else None)
        )  # fmt: skip
    detail_ids = list(
        Run.objects.filter(organization=org).order_by("?").values_list("pk", flat=True)[:samples]
    )
    durations, cpu = [], []
    for run_id in detail_ids:
        started, started_cpu = time.perf_counter(), time.process_time()
        response = client.get(f"/api/v1/runs/{run_id}")
        durations.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        assert response.status_code == 200 and len(response.json()["steps"]) == steps
    p95 = _ms(percentile(durations, 95))
    rows.append(
        Row("scale", "GET /runs/{id} (with its steps)", f"p50 {_ms(percentile(durations, 50)):.1f} ms, "
            f"p95 {p95:.1f} ms", f"p95 ≤ {DETAIL_TARGET_MS:.0f} ms",
            f"{len(durations)} random runs; CPU {_ms(percentile(cpu, 50)):.1f} ms (Python, median); "
            f"load {_load()}",
            met=p95 <= DETAIL_TARGET_MS)
    )  # fmt: skip
    rows.append(_prune_under_triggers(client, workflows[0], expired, child_env))
    return rows


# The prune's child process: Django starts (seconds of CPU on a loaded machine, which would slow the
# triggers measured beside it), says so, and prunes when told to.
PRUNE_CHILD = """
import sys, django
django.setup()
from django.core.management import call_command
print("ready", flush=True)
sys.stdin.readline()
call_command("prune_runs", "--batch", sys.argv[1])
"""


def _prune_under_triggers(client, workflow, expired: int, child_env) -> Row:
    """Trigger p99 while `manage.py prune_runs` removes the expired runs, against its p99 idle: triggers
    just before and just after the prune (the machine's own noise drifts over minutes)."""
    from django.conf import settings

    from runs.models import Run

    path = f"/api/v1/workflows/{workflow.pk}/run"
    _trigger_latencies(client, path, count=20)  # warm-up: caches, the first admission
    idle = _trigger_latencies(client, path, count=300)
    prune = subprocess.Popen(
        [sys.executable, "-c", PRUNE_CHILD, "500"], cwd=ROOT, env=child_env(), text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    ready = prune.stdout.readline().strip()
    if ready != "ready":
        raise RuntimeError(f"the prune's child process did not start: {ready} {prune.stdout.read()}")
    before = Run.objects.count()
    done = threading.Event()
    started = time.perf_counter()
    prune.stdin.write("go\n")
    prune.stdin.flush()
    threading.Thread(target=lambda: (prune.wait(), done.set()), daemon=True).start()
    during = _trigger_latencies(client, path, until=done.is_set)
    prune_seconds = time.perf_counter() - started
    output = prune.stdout.read().strip()
    if prune.returncode != 0 or not output.endswith("run(s) deleted"):
        raise RuntimeError(f"prune_runs failed: {output}")
    removed = before + len(during) - Run.objects.count()
    idle += _trigger_latencies(client, path, count=300)
    idle_p99, during_p99 = _ms(percentile(idle, 99)), _ms(percentile(during, 99))
    idle_p50, during_p50 = _ms(percentile(idle, 50)), _ms(percentile(during, 50))
    ratio = during_p99 / idle_p99
    return Row(
        "scale", f"trigger p99 while pruning {removed:,} expired runs",
        f"{during_p99:.1f} ms vs {idle_p99:.1f} ms idle ({ratio:.2f}×)", f"≤ {PRUNE_RATIO_TARGET:.0f}×",
        f"p50 {during_p50:.1f} ms vs {idle_p50:.1f} ms idle; prune {prune_seconds:,.0f} s "
        f"({removed / prune_seconds:,.0f} runs/s, batches of 500, "
        f"BATON_RETENTION_PAUSE_PERCENT={settings.BATON_RETENTION_PAUSE_PERCENT}); {len(during)} triggers "
        f"during it, {len(idle)} idle (before and after); expected {expired:,}; load {_load()}",
        met=ratio <= PRUNE_RATIO_TARGET,
    )  # fmt: skip


def _ago(seconds: int) -> str:
    return str(int(time.time()) - seconds)


def _load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg())
