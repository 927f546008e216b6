"""Checks of speed and of query plans, run by `make bench` rather than by the tests: a bound on wall-clock
time, or on what the planner chooses, says how fast Baton is on this machine, not whether it is right, and
the test suite (run in parallel, on a shared machine) is no place to measure it. The behaviour behind each
check stays tested: tests/workflows/test_definition.py (a maximal definition is valid),
tests/runs/test_engine_steps.py (a long loop completes), tests/config/test_sqlite_writer_lock.py (a second
writer waits for the first) and tests/config/test_sql.py (several rows' UPDATE writes each row).
"""

import tempfile
import threading
import time
from pathlib import Path

from django.db import connection

from bench.common import Row

MAX_STEPS_COLD_SECONDS = 1.0
MAX_STEPS_WARM_SECONDS = 0.25
LONG_LOOP_SECONDS = 10.0
WRITER_WAKE_SECONDS = 0.05


def run(options) -> list[Row]:
    checks = (_validation_of_a_maximal_definition, _a_long_loop, _writer_lock_wake_up, _keyed_update_plan)
    return [check() for check in checks]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def _validation_of_a_maximal_definition() -> Row:
    """200 steps, each with two templates referring to upstream steps (a chain plus a fan-in), validated
    with the template parse cache cleared (cold) and then warm."""
    from workflows.definition import MAX_STEPS, validate_definition
    from workflows.templating import analyze_expression, analyze_template

    steps = [{"id": "s0", "type": "transform", "config": {"value": "{{ inputs.x }}"}}]
    for i in range(1, MAX_STEPS):
        deps = [f"s{i - 1}"] + ([f"s{i // 2}"] if i // 2 != i - 1 else [])
        value = {"a": f"{{{{ steps.s{i - 1}.output }}}}", "b": f"{{{{ steps.s0.output }}}} {i}"}
        steps.append(
            {"id": f"s{i}", "type": "transform", "config": {"value": value}, "depends_on": deps,
             "retry": {"max_attempts": 3}}
        )  # fmt: skip
    definition = {"name": "Maximal", "steps": steps, "output": f"{{{{ steps.s{MAX_STEPS - 1}.output }}}}"}
    assert validate_definition(definition) == []
    analyze_template.cache_clear()
    analyze_expression.cache_clear()
    started = time.perf_counter()
    errors = validate_definition(definition)
    cold = time.perf_counter() - started
    started = time.perf_counter()
    for _ in range(10):
        validate_definition(definition)
    warm = (time.perf_counter() - started) / 10
    met = not errors and cold < MAX_STEPS_COLD_SECONDS and warm < MAX_STEPS_WARM_SECONDS
    return Row("checks", f"validate a {MAX_STEPS}-step definition, cold / warm", f"{_ms(cold)} / {_ms(warm)}",
               f"< {_ms(MAX_STEPS_COLD_SECONDS)} / < {_ms(MAX_STEPS_WARM_SECONDS)}",
               "cold: template parse cache cleared", met)  # fmt: skip


def _a_long_loop() -> Row:
    """A 150-item loop step (5 at a time) from run_create to completion, in this process (manual dispatch
    drained here): the per-item cost stays small."""
    from django.conf import settings

    from bench.cluster import bench_organization
    from runs.engine import dispatch
    from runs.models import Run, StepRun
    from runs.services import run_create
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("Loop check")
    inline = {"type": "transform", "config": {"value": "{{ item * 2 }}"}}
    loop = {"id": "each", "type": "loop",
            "config": {"items": "range(150) | list", "step": inline, "max_concurrency": 5}}  # fmt: skip
    workflow = workflow_create(organization=org, actor=actor, definition={"name": "Loop", "steps": [loop]})
    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "manual"
    try:
        started = time.perf_counter()
        created = run_create(workflow=workflow, actor=actor)
        dispatch.drain()
        elapsed = time.perf_counter() - started
    finally:
        settings.BATON_ENGINE_DISPATCH = previous
        dispatch.MANUAL_QUEUE.clear()
        dispatch.MANUAL_ADMISSIONS.clear()
        dispatch.MANUAL_CALLBACKS.clear()
    status = Run.objects.get(pk=created.pk).status
    items = StepRun.objects.get(run_id=created.pk, step_id="each", parent__isnull=True).output_data["items"]
    met = status == "completed" and items == [i * 2 for i in range(150)] and elapsed < LONG_LOOP_SECONDS
    return Row("checks", "a 150-item loop, trigger to completion (manual dispatch)", f"{elapsed:.2f} s",
               f"< {LONG_LOOP_SECONDS:.0f} s", f"run {status}", met)  # fmt: skip


def _writer_lock_wake_up() -> Row:
    """config/sqlite: a second writer waiting on `<database>.writer-lock` starts as soon as the first
    commits (woken by the kernel, not by the busy handler's next try, which sleeps up to 100 ms by then).
    On a file of its own, whatever the benchmark's database."""
    from config.sqlite.base import DatabaseWrapper

    def wrapper(path) -> DatabaseWrapper:
        return DatabaseWrapper({
            "ENGINE": "config.sqlite", "NAME": str(path), "USER": "", "PASSWORD": "", "HOST": "", "PORT": "",
            "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30}, "ATOMIC_REQUESTS": False,
            "AUTOCOMMIT": True, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False, "TIME_ZONE": None, "TEST": {},
        })  # fmt: skip

    def begin(database):
        database.ensure_connection()
        database._start_transaction_under_autocommit()

    waits = []
    with tempfile.TemporaryDirectory(prefix="baton-writer-lock-") as directory:
        path = Path(directory) / "db.sqlite3"
        setup = wrapper(path)
        with setup.cursor() as cursor:
            cursor.execute("CREATE TABLE t (n INTEGER)")
        setup.close()
        for _ in range(5):
            first = wrapper(path)
            begin(first)
            began = threading.Event()

            def second_writer(began=began):
                second = wrapper(path)
                begin(second)
                began.set()
                second._commit()
                second.close()

            thread = threading.Thread(target=second_writer)
            thread.start()
            began.wait(0.2)  # the first still holds the lock
            committed = time.perf_counter()
            first._commit()
            began.wait(5)
            waits.append(time.perf_counter() - committed)
            thread.join(5)
            first.close()
    worst = max(waits)
    metric = "SQLite: second writer starts after the first's commit (worst of 5)"
    target = f"< {_ms(WRITER_WAKE_SECONDS)}"
    return Row("checks", metric, _ms(worst), target, "config/sqlite writer lock", worst < WRITER_WAKE_SECONDS)


def _plan_nodes(plan: dict):
    yield plan
    for child in plan.get("Plans", ()):
        yield from _plan_nodes(child)


def _keyed_update_plan() -> Row:
    """config/sql: an UPDATE of several rows looks each row up by its key, not a scan of the whole table.
    Of the rows a function returns the planner knows only the declared estimate (100), against which
    hashing the whole table looked cheaper in tables of thousands of rows (here 5,000 more). Checked in
    the plan the statement gets with its values (a web request's) and in the generic plan of a worker's
    prepared statement, which the worker keeps using instead of planning the statement again."""
    if connection.vendor != "postgresql":
        return Row("checks", "PostgreSQL: several rows' UPDATE plan", "n/a", "", "PostgreSQL's planner only")
    from django.db import transaction

    from bench.cluster import bench_organization
    from config import sql
    from runs.engine import dispatch
    from runs.models import StepRun
    from runs.services import run_create
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("Plan check")
    definition = {"name": "Two", "steps": [
        {"id": "a", "type": "transform", "config": {"value": 1}},
        {"id": "b", "type": "transform", "config": {"value": 2}, "depends_on": ["a"]},
    ]}  # fmt: skip
    workflow = workflow_create(organization=org, actor=actor, definition=definition)
    from django.conf import settings

    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "manual"
    try:
        created = run_create(workflow=workflow, actor=actor)
    finally:
        settings.BATON_ENGINE_DISPATCH = previous
        dispatch.MANUAL_QUEUE.clear()
        dispatch.MANUAL_ADMISSIONS.clear()
        dispatch.MANUAL_CALLBACKS.clear()

    columns = [field.column for field in StepRun._meta.concrete_fields]
    made = {"id": "'sr_many' || g", "step_id": "'many' || g"}  # copies of one row, 5,000 times
    copied = ", ".join(made.get(column, column) for column in columns)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO runs_steprun ({', '.join(columns)}) SELECT {copied} "
            "FROM runs_steprun, generate_series(1, 5000) g WHERE id = %s",
            [StepRun.objects.filter(run_id=created.pk).first().pk],
        )
        cursor.execute("ANALYZE runs_steprun")
    rows = list(StepRun.objects.filter(run_id=created.pk).order_by("step_id")[:5])
    marker = "bench_keyed_update"  # a statement of this check's own, to find among the prepared ones
    update = sql.Update(StepRun, ("status", "skip_reason"))
    statement = update._compiled_document("postgresql").replace(" FROM v ", f" FROM v /* {marker} */ ")
    fields = tuple(StepRun._meta.get_field(name) for name in ("id", "status", "skip_reason"))
    document = sql._document(
        sql._document_fields(fields), [(row.pk, "completed", "") for row in rows], connection
    )

    def scanned(plan) -> set[str]:
        nodes = _plan_nodes(plan[0]["Plan"])
        return {node.get("Relation Name") for node in nodes if node["Node Type"] == "Seq Scan"}

    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 60  # a worker's connection: statements prepared
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("EXPLAIN (FORMAT JSON) " + statement, [document])
            custom = scanned(cursor.fetchone()[0])
            cursor.execute("SET LOCAL plan_cache_mode = force_generic_plan")
            cursor.execute("PREPARE bench_many_rows AS " + statement.replace("%s", "$1"))
            try:
                cursor.execute("EXPLAIN (FORMAT JSON) EXECUTE bench_many_rows (%s)", [document])
                generic = scanned(cursor.fetchone()[0])
            finally:
                cursor.execute("DEALLOCATE bench_many_rows")
        for _ in range(8):  # PostgreSQL weighs a generic plan against the first five custom ones
            with sql._cursor(connection) as cursor:
                cursor.execute(statement, [document])
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT generic_plans FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{marker}%"]
            )
            generic_plans = [row[0] for row in cursor.fetchall()]
            cursor.execute("DELETE FROM runs_steprun WHERE id LIKE 'sr_many%%'")
    finally:
        connection.settings_dict["CONN_MAX_AGE"] = saved
    keyed = not custom | generic
    reused = len(generic_plans) == 1 and generic_plans[0] >= 2
    uses = generic_plans[0] if generic_plans else 0
    notes = (f"tables scanned: custom plan {sorted(custom) or 'none'}, generic {sorted(generic) or 'none'}; "
             f"a worker's prepared statement used its generic plan {uses} times in 8 executions")  # fmt: skip
    return Row("checks", "PostgreSQL: several rows' UPDATE finds rows by key (5 of 5,000+)",
               ("keyed" if keyed else "scan") + (", generic plan kept" if reused else ", planned each time"),
               "keyed, generic plan kept", notes, keyed and reused)  # fmt: skip
