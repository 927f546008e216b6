"""config/sql.py: statements written once must read and write exactly what the ORM does."""

import json
from decimal import Decimal

import pytest
from django.core.serializers.json import DjangoJSONEncoder
from django.db import DatabaseError, DataError, IntegrityError, connection, models, transaction
from django.db.models import Exists, F, JSONField, OuterRef, Value
from django.forms.models import model_to_dict
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from config import sql
from runs.engine import dispatch
from runs.models import Run, RunEvent, StepRun
from tests.factories import RunFactory

pytestmark = pytest.mark.django_db

ALL_RUN_FIELDS = sql.Select(Run, None, "{pk} = %s")
SOME_STEP_FIELDS = sql.Select(
    StepRun, ("step_id", "status", "output_data", "started_at"), "{run_id} = %s", order_by="{step_id}"
)


EVENT_FIELDS = ("run", "seq", "type", "step_id", "data", "created_at")
ESCAPED = 'é ✓ "quoted" back\\slash \n\t\x01 😀'  # what a JSON document must escape


@pytest.fixture(autouse=True, params=["request", "worker"])
def connection_kind(request):
    """Each test with a web request's connection (CONN_MAX_AGE=0: statements go as the ORM sends them) and
    with a worker's (kept: on PostgreSQL bound on the server and prepared). On PostgreSQL several rows go as
    one JSON document on both."""
    saved = connection.settings_dict["CONN_MAX_AGE"]
    connection.settings_dict["CONN_MAX_AGE"] = 0 if request.param == "request" else 60
    yield request.param
    connection.settings_dict["CONN_MAX_AGE"] = saved


@pytest.fixture
def run(settings, org, owner):
    settings.BATON_ENGINE_DISPATCH = "manual"
    steps = [
        {"id": "a", "type": "transform", "config": {"value": {"n": "{{ inputs.n }}", "s": "é ✓"}}},
        {
            "id": "b",
            "type": "transform",
            "config": {"value": "{{ steps.a.output.n }}"},
            "depends_on": ["a"],
        },
    ]
    created = RunFactory(
        workflow__organization=org,
        workflow__name="Two",
        workflow__steps=steps,
        input_data={"n": 3},
        metadata={"team": "x"},
    )
    dispatch.drain()
    Run.objects.filter(pk=created.pk).update(cost_usd=Decimal("0.125000"), total_tokens=7, pinned=True)
    yield Run.objects.get(pk=created.pk)
    dispatch.MANUAL_QUEUE.clear()
    dispatch.MANUAL_ADMISSIONS.clear()
    dispatch.MANUAL_CALLBACKS.clear()


def _values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


def test_select_reads_every_field_as_the_orm_does(run):
    found = ALL_RUN_FIELDS.first(run.pk)
    assert _values(found) == _values(run)
    assert isinstance(found.cost_usd, Decimal) and found.pinned is True and found.completed_at.tzinfo
    assert found._state.adding is False and found._state.db == "default"
    assert ALL_RUN_FIELDS.first("run_missing") is None


def test_select_of_some_fields_defers_the_others(run):
    rows = SOME_STEP_FIELDS.all(run.pk)
    assert [row.step_id for row in rows] == ["a", "b"]
    assert rows[0].output_data == {"n": 3, "s": "é ✓"} and rows[1].output_data == 3
    assert {"run_id", "attempts", "input_data"} <= rows[0].get_deferred_fields()
    assert rows[0].attempts == StepRun.objects.get(pk=rows[0].pk).attempts  # loaded on access


def test_select_locks_rows_where_the_backend_can():
    for lock, expected in ((True, "FOR UPDATE"), ("FOR NO KEY UPDATE", "FOR NO KEY UPDATE")):
        statement, _converters = sql.Select(Run, ("id",), "{pk} = %s", for_update=lock)._compiled(
            connection.vendor
        )
        if connection.vendor == "postgresql":
            assert statement.endswith(expected)
        else:
            assert "FOR " not in statement


def test_update_writes_what_the_orm_reads_back(run):
    update = sql.Update(Run, ("result", "completed_at", "cost_usd", "metadata"))
    run.result = {"nested": [1, 2.5, None, "ü"]}
    run.completed_at = timezone.now()
    run.cost_usd = Decimal("1.500001")
    run.metadata = {}
    update.save(run)
    fresh = Run.objects.get(pk=run.pk)
    assert (fresh.result, fresh.completed_at, fresh.cost_usd, fresh.metadata) == (
        run.result, run.completed_at, run.cost_usd, {}
    )  # fmt: skip


def test_update_of_a_missing_row_is_an_error(run):
    run.pk = "run_missing"
    with pytest.raises(DatabaseError, match="no row was updated"):
        sql.Update(Run, ("status",), must_exist=True).save(run)


def test_update_many_writes_each_row(run):
    rows = list(StepRun.objects.filter(run=run).order_by("step_id"))
    for index, row in enumerate(rows):
        row.output_data = {"index": index}
    sql.Update(StepRun, ("output_data",)).save_many(rows)
    assert [row.output_data for row in StepRun.objects.filter(run=run).order_by("step_id")] == [
        {"index": 0},
        {"index": 1},
    ]


def test_update_many_of_one_row_writes_that_row_only(run):
    first, second = StepRun.objects.filter(run=run).order_by("step_id")
    first.status, first.output_data = "queued", {"only": "me"}
    sql.Update(StepRun, ("status", "output_data")).save_many([first])
    stored = {row.pk: (row.status, row.output_data) for row in StepRun.objects.filter(run=run)}
    assert stored == {first.pk: ("queued", {"only": "me"}), second.pk: (second.status, second.output_data)}


def test_update_many_writes_every_kind_of_value(run):
    """On PostgreSQL several rows go as one JSON document (nulls, JSON of any shape, times, decimals)."""
    fields = ("status", "output_data", "error", "started_at", "attempt", "cost_usd")
    rows = list(StepRun.objects.filter(run=run).order_by("step_id"))
    rows[0].status, rows[0].output_data, rows[0].error = "failed", None, {"code": "x", "message": "é"}
    rows[0].started_at, rows[0].attempt, rows[0].cost_usd = None, 3, Decimal("2.000001")
    rows[1].output_data, rows[1].started_at = [1, "two", None], timezone.now()
    sql.Update(StepRun, fields).save_many(rows)
    stored = StepRun.objects.filter(run=run).order_by("step_id")
    assert [[getattr(row, name) for name in fields] for row in stored] == [
        [getattr(row, name) for name in fields] for row in rows
    ]


def test_insert_writes_rows_the_orm_reads_back(run):
    events = [RunEvent(run_id=run.pk, seq=100 + n, type="step_started", data={"n": n}) for n in range(3)]
    sql.Insert(RunEvent).add(events)
    stored = RunEvent.objects.filter(run=run, seq__gte=100).order_by("seq")
    assert [(event.seq, event.data, event.created_at) for event in stored] == [
        (event.seq, event.data, event.created_at) for event in events
    ]
    assert all(event._state.adding is False for event in events)


@pytest.mark.parametrize("count", [1, 3])  # one row: VALUES; several: a document on PostgreSQL
def test_insert_of_values_writes_what_an_insert_of_instances_writes(run, count):
    insert = sql.Insert(RunEvent, ("run", "seq", "type", "step_id", "data", "created_at"))
    moment = timezone.now()
    data = {"n": [1, "é"], "x": None}
    rows = [(run.pk, 200 + n, "step_completed", f"s{n}", data, moment) for n in range(count)]
    insert.add_values(rows)
    stored = RunEvent.objects.filter(run=run, seq__gte=200).order_by("seq")
    assert [(e.run_id, e.seq, e.type, e.step_id, e.data, e.created_at) for e in stored] == rows


@pytest.mark.parametrize("steps", [1, 3])
def test_inserts_together_write_what_each_insert_writes(run, steps):
    """A run, its step rows (instances) and its events (values): one statement on PostgreSQL, three elsewhere,
    the rows as `Insert.add` and `Insert.add_values` write them."""
    inserts = (sql.Insert(Run), sql.Insert(StepRun), sql.Insert(RunEvent, EVENT_FIELDS))

    def new(marker):
        created = Run(organization_id=run.organization_id, workflow_id=run.workflow_id,
                      workflow_version_id=run.workflow_version_id, metadata={"m": marker},
                      input_data={"k": ESCAPED, "n": [1.5, None]}, status="running",
                      started_at=timezone.now(), event_seq=2, cost_usd=Decimal("0.5"),
                      pause_signal=None)  # fmt: skip
        rows = [StepRun(run=created, step_id=f"s{n}", type="transform", name=ESCAPED, state={"x": ESCAPED})
                for n in range(steps)]  # fmt: skip
        events = [(created.id, seq, "run_queued", "", {"v": ESCAPED, "seq": seq}, timezone.now())
                  for seq in (1, 2)]  # fmt: skip
        return created, rows, events

    together, together_rows, together_events = new("together")
    apart, apart_rows, apart_events = new("apart")
    with CaptureQueriesContext(connection) as queries:
        sql.insert_together(
            (inserts[0], [together]), (inserts[1], together_rows), (inserts[2], together_events)
        )
    inserts[0].add([apart])
    inserts[1].add(apart_rows)
    inserts[2].add_values(apart_events)
    assert len(queries.captured_queries) == (1 if connection.vendor == "postgresql" else 3)
    assert together._state.adding is False and all(row._state.adding is False for row in together_rows)
    skip = ("id", "run_id", "metadata", "created_at", "started_at")
    assert _values(Run.objects.get(pk=together.pk)) == {**_values(together), "cost_usd": Decimal("0.5")}
    assert {k: v for k, v in _values(Run.objects.get(pk=together.pk)).items() if k not in skip} == {
        k: v for k, v in _values(Run.objects.get(pk=apart.pk)).items() if k not in skip
    }
    stored = [_values(row) for row in StepRun.objects.filter(run=together).order_by("step_id")]
    assert stored == [_values(row) for row in together_rows]
    events = RunEvent.objects.filter(run=together).order_by("seq")
    assert [(e.run_id, e.seq, e.type, e.step_id, e.data, e.created_at) for e in events] == together_events


def test_inserts_together_write_nothing_when_one_fails(run):
    insert_run, insert_events = sql.Insert(Run), sql.Insert(RunEvent, EVENT_FIELDS)
    created = Run(organization_id=run.organization_id, workflow_id=run.workflow_id,
                  workflow_version_id=run.workflow_version_id)  # fmt: skip
    duplicate = [(run.pk, 1, "run_queued", "", {}, timezone.now())]  # run.pk's seq 1 exists: unique
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert_together((insert_run, [created]), (insert_events, duplicate))
    assert not Run.objects.filter(pk=created.pk).exists()


def test_prepared_queryset_reads_what_the_queryset_reads(run):
    def build(organization_id, run_id):
        return Run.objects.filter(organization_id=organization_id, pk=run_id).annotate(
            workflow_name=F("workflow__name"),
            has_children=Exists(Run.objects.filter(parent_run_id=OuterRef("pk"))),
        )

    prepared = sql.Prepared(Run, build, arity=2)
    found = prepared.first(run.organization_id, run.pk)
    expected = build(run.organization_id, run.pk).get()
    assert model_to_dict(found) == model_to_dict(expected) and _values(found) == _values(expected)
    assert (found.workflow_name, bool(found.has_children)) == ("Two", False)
    assert prepared.first("org_other", run.pk) is None  # the values are parameters, not baked in


def test_prepared_refuses_a_lookup_that_changes_its_value():
    prepared = sql.Prepared(Run, lambda name: Run.objects.filter(workflow__name__icontains=name), arity=1)
    with pytest.raises(ValueError, match="placeholder"):
        prepared.all("x")


def test_insert_of_many_rows_goes_in_batches_of_the_backends_size(run, django_assert_max_num_queries):
    events = [RunEvent(run_id=run.pk, seq=1000 + n, type="step_started") for n in range(2000)]
    batch = connection.ops.bulk_batch_size(sql.Insert(RunEvent)._compiled(connection.vendor)[2], events)
    with django_assert_max_num_queries(-(-2000 // batch)):
        sql.Insert(RunEvent).add(events)
    assert RunEvent.objects.filter(run=run, seq__gte=1000).count() == 2000


def test_values_are_keyed_by_attribute_name(run):
    rows = SOME_STEP_FIELDS.values(run.pk)
    assert [(row["step_id"], row["output_data"]) for row in rows] == [("a", {"n": 3, "s": "é ✓"}), ("b", 3)]
    assert set(rows[0]) == {"id", "step_id", "status", "output_data", "started_at"}


def test_a_pipeline_runs_its_statements_in_order_and_reads_them_after(run):
    lock = sql.Select(Run, ("status",), "{pk} = %s", for_update=True)
    run.status = "cancelled"
    with transaction.atomic(), sql.pipeline():
        locked = lock.send(run.pk)
        sql.Update(Run, ("status",), must_exist=True).save(run)
        after = sql.Select(Run, ("status",), "{pk} = %s").send(run.pk)
        steps = SOME_STEP_FIELDS.send(run.pk)
        assert locked.first().status == "completed"  # read before the update, as it was sent
        assert after.first().status == "cancelled"
        assert [row.step_id for row in steps.all()] == ["a", "b"]
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_a_missing_row_in_a_pipeline_is_an_error_when_it_ends(run):
    run.pk = "run_missing"
    with pytest.raises(DatabaseError, match="no row was updated"), transaction.atomic(), sql.pipeline():
        sql.Update(Run, ("status",), must_exist=True).save(run)


def test_a_failing_statement_in_a_pipeline_fails_the_transaction(run):
    original = Run.objects.get(pk=run.pk).status
    run.status = "cancelled"
    taken = RunEvent.objects.filter(run=run).first()
    duplicate = RunEvent(run_id=run.pk, seq=taken.seq, type="step_started")
    with pytest.raises(IntegrityError), transaction.atomic(), sql.pipeline():
        sql.Update(Run, ("status",), must_exist=True).save(run)
        sql.Insert(RunEvent).add([duplicate])
    assert Run.objects.get(pk=run.pk).status == original  # the update before it rolled back too


def _prepared_statements(marker: str) -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_prepared_statements WHERE statement LIKE %s", [f"%{marker}%"])
        return cursor.fetchone()[0]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="prepared statements are PostgreSQL's")
def test_statements_are_prepared_on_their_second_use_on_a_workers_connection(run, settings, connection_kind):
    marker = f"41 < 42 AND '{connection_kind}' = '{connection_kind}'"
    select = sql.Select(Run, ("status",), "{pk} = %s AND " + marker)
    select.rows(run.pk)
    assert _prepared_statements(marker) == 0
    assert [tuple(row) for row in select.rows(run.pk)] == [(run.pk, "completed")]
    assert _prepared_statements(marker) == (1 if connection_kind == "worker" else 0)

    settings.BATON_PG_PREPARED_STATEMENTS = False  # behind a pooler that cannot keep them
    marker = f"43 < 44 AND '{connection_kind}' = '{connection_kind}'"
    unprepared = sql.Select(Run, ("status",), "{pk} = %s AND " + marker)
    for _ in range(3):
        unprepared.rows(run.pk)
    assert _prepared_statements(marker) == 0


def test_insert_of_several_rows_keeps_every_kind_of_value(run):
    """On PostgreSQL several rows go as one JSON document: nulls, an all-null column, JSON of every shape,
    text JSON must escape, decimals and times must come back as the ORM wrote them."""
    now = timezone.now()
    rows = [
        StepRun(id=f"sr_document{n}", run_id=run.pk, step_id=f"x{n}", type="transform", status="pending",
                output_data=value, input_data=None, state={"n": n}, cost_usd=Decimal(f"{n}.000001"),
                queued_at=now if n else None, name=ESCAPED * n)
        for n, value in enumerate([None, {"a": [1, None], ESCAPED: ESCAPED}, [1, "two"], "text", 3.5])
    ]  # fmt: skip
    sql.Insert(StepRun).add(rows)
    stored = StepRun.objects.filter(step_id__startswith="x").order_by("step_id")
    assert [model_to_dict(row) for row in stored] == [model_to_dict(row) for row in rows]
    assert [row.output_data for row in stored] == [
        None, {"a": [1, None], ESCAPED: ESCAPED}, [1, "two"], "text", 3.5
    ]  # fmt: skip
    assert stored[2].name == ESCAPED * 2


def test_json_values_orjson_refuses_or_keys_differently_are_written_as_json_dumps_writes_them(run):
    """The document is written by orjson and, for what it refuses, by json.dumps: an integer beyond 64 bits,
    keys that are not strings (written as json.dumps writes them), deep nesting."""
    huge = 2**70
    deep = [[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]
    values = [{"n": huge}, {1: "one", None: "none", 2.5: "half"}, deep, {"é": "\u2028 \u2029"}]
    rows = [
        StepRun(id=f"sr_doc_json{n}", run_id=run.pk, step_id=f"j{n}", type="transform", status="pending",
                output_data=value, state={})
        for n, value in enumerate(values)
    ]  # fmt: skip
    sql.Insert(StepRun).add(rows)
    stored = StepRun.objects.filter(step_id__startswith="j").order_by("step_id")
    assert [row.output_data for row in stored] == [
        {"n": huge}, {"1": "one", "null": "none", "2.5": "half"}, deep, {"é": "\u2028 \u2029"}
    ]  # fmt: skip


def test_json_null_in_a_json_column_is_stored_as_json_null_not_sql_null(run):
    """A document's null is SQL NULL: rows holding JSON `null` are written the ORM's way instead."""
    rows = list(StepRun.objects.filter(run=run).order_by("step_id"))
    for row in rows:
        row.output_data = Value(None, JSONField())
    sql.Update(StepRun, ("output_data",)).save_many(rows)
    assert StepRun.objects.filter(run=run, output_data=None).count() == 2  # JSON null
    assert not StepRun.objects.filter(run=run, output_data__isnull=True).exists()  # not SQL NULL
    events = [
        RunEvent(run_id=run.pk, seq=300 + n, type="step_started", data=Value(None, JSONField()))
        for n in range(2)
    ]
    sql.Insert(RunEvent).add(events)
    assert RunEvent.objects.filter(run=run, seq__gte=300, data=None).count() == 2


def test_a_value_too_long_for_its_column_is_refused_as_the_orm_refuses_it(run):
    """Not cut to the column's length (as a cast to varchar(n) would cut it)."""

    def outcome(write) -> str:
        try:
            with transaction.atomic():
                write()
        except DataError:
            return "refused"
        return "stored"

    def rows(prefix):
        return [
            StepRun(
                id=f"sr_{prefix}{n}", run_id=run.pk, step_id=f"{prefix}{n}".ljust(65, "x"), type="transform"
            )
            for n in range(2)
        ]

    ours = outcome(lambda: sql.Insert(StepRun).add(rows("ours")))
    assert ours == outcome(lambda: StepRun.objects.bulk_create(rows("orm")))
    assert ours == ("refused" if connection.vendor == "postgresql" else "stored")


def test_rows_beyond_one_documents_size_go_in_several(run, monkeypatch):
    monkeypatch.setattr(sql, "_DOCUMENT_ROWS", 2)
    events = [RunEvent(run_id=run.pk, seq=400 + n, type="step_started", data={"n": n}) for n in range(5)]
    with CaptureQueriesContext(connection) as insert:
        sql.Insert(RunEvent).add(events)
    rows = list(RunEvent.objects.filter(run=run, seq__gte=400).order_by("seq"))
    assert [event.data for event in rows] == [{"n": n} for n in range(5)]
    for event in rows:
        event.data = {"m": event.seq}
    with CaptureQueriesContext(connection) as update:
        sql.Update(RunEvent, ("data",)).save_many(rows)
    assert [event.data for event in RunEvent.objects.filter(run=run, seq__gte=400).order_by("seq")] == [
        {"m": 400 + n} for n in range(5)
    ]
    if connection.vendor == "postgresql":
        assert (len(insert), len(update)) == (3, 3)  # documents of 2, 2 and 1 rows


def test_fields_a_document_cannot_carry_are_written_the_orms_way():
    assert sql._document_fields((StepRun._meta.get_field("output_data"),)) is not None
    assert sql._document_fields((models.FloatField(name="x"),)) is None
    assert sql._document_fields((models.JSONField(name="y", encoder=DjangoJSONEncoder),)) is None


_AS_IS_SAMPLES = {
    str: ["", "x", "ünïcode"],
    int: [0, 7, -3, 2**40],
    bool: [True, False],
    float: [1.5],
    dict: [{}, {"a": [1, None]}],
    list: [[], [1, "x"]],
    type(None): [None],
}


def test_values_a_document_takes_as_they_are_are_what_their_fields_write():
    """A value whose type a field's `as_is` names goes in the document without the field's conversion: for
    every field of the tables written by documents, the conversion gives it back (as JSON writes it)."""
    from audit.models import AuditEvent

    checked = 0
    for model in (Run, StepRun, RunEvent, AuditEvent):
        keyed = sql._document_fields(tuple(model._meta.concrete_fields))
        assert keyed is not None, model
        for column, to_json, as_is in keyed:
            for kind in as_is:
                for value in _AS_IS_SAMPLES[kind]:
                    assert json.dumps(to_json(value, connection)) == json.dumps(value), (model, column, value)
                    checked += 1
    assert checked > 300


def test_saved_values_are_what_each_fields_pre_save_gives():
    from workflows.models import Project

    fields = tuple(Project._meta.concrete_fields)
    project = Project(organization_id="org_1", name="P", updated_at=None)
    plain = {attname: is_plain for attname, _field, is_plain in sql._readers(fields)}
    assert plain["updated_at"] is False and plain["name"] is plain["created_at"] is True  # auto_now: set
    values = sql._saved_values(fields, project)
    assert project.updated_at is not None  # its pre_save ran
    assert values == [getattr(project, field.attname) for field in fields]
