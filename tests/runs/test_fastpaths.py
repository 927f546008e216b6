"""runs/fastpaths.py and the unit of work's statements read and write what their ORM forms do."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Coalesce
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import SecurityPolicy
from runs import fastpaths
from runs.engine import dispatch as dispatch_module
from runs.engine import unit_of_work
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, RunEvent, StepRun
from runs.services import run_create
from tests.runs.conftest import transform
from tests.workflows.support.helpers import make_workflow
from workflows.models import Workflow

pytestmark = pytest.mark.django_db


def _values(instance, *skip) -> dict:
    fields = type(instance)._meta.concrete_fields
    return {field.attname: getattr(instance, field.attname) for field in fields if field.attname not in skip}


@pytest.fixture
def run(engine):
    """A finished run of two steps, with a loop's iteration (not a top-level row) and a child run."""
    steps = [transform("a", {"n": 1}), transform("b", "{{ steps.a.output.n }}", depends_on=["a"])]
    finished = engine.start(steps, metadata={"team": "x"})
    Run.objects.filter(pk=finished.pk).update(cost_usd=Decimal("0.125000"), total_tokens=7)
    return Run.objects.get(pk=finished.pk)


def _new_run(source: Run) -> tuple[Run, list[StepRun]]:
    run = Run(
        organization_id=source.organization_id,
        workflow_id=source.workflow_id,
        workflow_version_id=source.workflow_version_id,
        definition_hash=source.definition_hash,
        input_data={"é": ["✓", 1.5, None]},
        metadata={"k": "v"},
        env="prod",
        status="queued",
    )
    rows = [StepRun(run=run, step_id=step_id, type="transform", name=step_id.upper()) for step_id in "ab"]
    return run, rows


def test_insert_run_stores_what_bulk_create_stores(run):
    fast, fast_rows = _new_run(run)
    orm, orm_rows = _new_run(run)
    fast.created_at = orm.created_at
    fastpaths.insert_run(fast, fast_rows)
    Run.objects.bulk_create([orm])
    StepRun.objects.bulk_create(orm_rows)
    skip = ("id", "run_id")
    assert _values(Run.objects.get(pk=fast.pk), "id") == _values(Run.objects.get(pk=orm.pk), "id")
    stored = [
        _values(row, *skip, "created_at") for row in StepRun.objects.filter(run=fast).order_by("step_id")
    ]
    expected = [
        _values(row, *skip, "created_at") for row in StepRun.objects.filter(run=orm).order_by("step_id")
    ]
    assert stored == expected and len(stored) == 2


def test_save_workflow_last_run_writes_what_save_writes(run):
    moment = timezone.now() - timedelta(minutes=3)
    workflow = Workflow.objects.get(pk=run.workflow_id)
    workflow.last_run_at = moment
    fastpaths.save_workflow_last_run(workflow)
    assert Workflow.objects.get(pk=workflow.pk).last_run_at == moment
    workflow.save(update_fields=["last_run_at"])
    assert Workflow.objects.get(pk=workflow.pk).last_run_at == moment


def test_run_for_detail_reads_what_the_queryset_reads(run, other_org):
    child, _rows = _new_run(run)
    child.parent_run = run
    Run.objects.bulk_create([child])
    for candidate in (run, child):
        orm = (
            Run.objects.filter(organization_id=run.organization_id, pk=candidate.pk)
            .annotate(
                workflow_name=F("workflow__name"),
                version_number=F("workflow_version__number"),
                has_children=Exists(Run.objects.filter(parent_run_id=OuterRef("pk"))),
            )
            .get()
        )
        fast = fastpaths.run_for_detail(run.organization_id, candidate.pk)
        assert _values(fast) == _values(orm)
        extra = ("workflow_name", "version_number", "has_children")
        assert [getattr(fast, name) for name in extra] == [getattr(orm, name) for name in extra]
    assert fastpaths.run_for_detail(other_org.pk, run.pk) is None


def test_top_level_steps_reads_what_the_queryset_reads(run):
    orm = list(StepRun.objects.filter(run_id=run.pk, parent__isnull=True).order_by("queued_at", "id"))
    fast = fastpaths.top_level_steps(run.pk)
    assert [_values(row) for row in fast] == [_values(row) for row in orm] and len(orm) == 2


def test_the_run_as_shown_reads_what_the_queryset_reads(run, other_org):
    child, _rows = _new_run(run)
    child.parent_run = run
    Run.objects.bulk_create([child])
    names = (*fastpaths.RUN_SHOWN, "workflow_name", "version_number", "has_children")
    for candidate in (run, child):
        orm = fastpaths.run_for_detail(run.organization_id, candidate.pk)
        fast = fastpaths.run_shown(run.organization_id, candidate.pk)
        assert vars(fast) == {name: getattr(orm, name) for name in names}
    assert fastpaths.run_shown(other_org.pk, run.pk) is None
    assert fastpaths.run_shown(run.organization_id, "run_missing") is None


def test_the_steps_as_shown_read_what_the_queryset_reads(run):
    orm = fastpaths.top_level_steps(run.pk)
    fast = fastpaths.top_level_steps_shown(run.pk)
    assert len(fast) == 2
    assert [vars(row) for row in fast] == [
        {name: getattr(row, name) for name in fastpaths.STEP_SHOWN} for row in orm
    ]


def _advance_values(row) -> dict:
    return {name: getattr(row, name) for name in unit_of_work.ADVANCE_FIELDS}


def test_current_rows_reads_what_the_queryset_reads(run):
    with transaction.atomic():
        rows = unit_of_work.current_rows(unit_of_work.lock_run(run.pk))
    orm = {row.step_id: row for row in StepRun.objects.filter(run_id=run.pk, parent__isnull=True)}
    assert rows.keys() == orm.keys() == {"a", "b"}
    for step_id, row in rows.items():
        assert _advance_values(row) == _advance_values(orm[step_id])


def test_current_rows_keeps_only_the_instances_of_unchanged_rows(run):
    """A row another transaction changed since the earlier read is made anew, an unchanged one is kept, and
    one this thread changed in hand (its status) is read again even when the stored row did not change."""
    with transaction.atomic():
        earlier = unit_of_work.lock_run(run.pk)
        first = unit_of_work.current_rows(earlier)
    StepRun.objects.filter(run=run, step_id="b").update(output_data={"changed": True}, attempts=[{"x": 1}])
    with transaction.atomic():
        work = unit_of_work.lock_run(run.pk)
        work.carry(earlier)
        rows = unit_of_work.current_rows(work)
    assert rows["a"] is first["a"]
    assert rows["b"] is not first["b"] and rows["b"].output_data == {"changed": True}
    assert rows["b"].attempts == [{"x": 1}] and work.rows is rows
    rows["a"].status = "running"  # changed in hand, never stored
    with transaction.atomic():
        again = unit_of_work.lock_run(run.pk)
        again.carry(work)
        reread = unit_of_work.current_rows(again)
    assert reread["a"] is not rows["a"] and reread["a"].status == "completed"
    assert reread["b"] is rows["b"]


def test_read_for_claim_reads_the_run_the_step_and_the_rows(run):
    step = StepRun.objects.get(run=run, step_id="b")
    with transaction.atomic():
        locked, peek, fetched = unit_of_work.read_for_claim(step.pk)
        rows = unit_of_work.keep_rows(UnitOfWork(locked), fetched)
    assert _values(locked) == _values(Run.objects.get(pk=run.pk))
    assert peek == {
        "id": step.pk,
        "run_id": run.pk,
        "status": step.status,
        "step_id": "b",
        "type": "transform",
        "parent_id": None,
    }
    assert set(rows) == {"a", "b"} and rows["b"].pk == step.pk
    assert _advance_values(rows["b"]) == _advance_values(step)
    with transaction.atomic():
        assert unit_of_work.read_for_claim("sr_missing") == (None, None, [])


@pytest.mark.parametrize("expected", ["queued", "pending"])
def test_claim_step_writes_what_the_orm_update_writes(run, expected):
    now = timezone.now()
    lease = now + timedelta(seconds=60)
    fast, orm = (StepRun.objects.get(run=run, step_id=step_id) for step_id in "ab")
    started = fast.started_at
    StepRun.objects.filter(pk__in=[fast.pk, orm.pk]).update(
        status=expected, dispatched_at=now, wake_at=now, started_at=None if expected == "pending" else started
    )
    assert unit_of_work.claim_step(fast.pk, expected, "host:1:abc", lease, now)
    changes = {"queued_at": now} if expected == "pending" else {}
    StepRun.objects.filter(pk=orm.pk, status=expected).update(
        status="running", lease_owner="host:1:abc", lease_expires_at=lease, attempt=F("attempt") + 1,
        started_at=Coalesce(F("started_at"), now), dispatched_at=None, wake_at=None, **changes,
    )  # fmt: skip
    fast, orm = StepRun.objects.get(pk=fast.pk), StepRun.objects.get(pk=orm.pk)
    different = ("id", "step_id", "output_data", "input_data", "attempts", "completed_at", "queued_at")
    assert _values(fast, *different) == _values(orm, *different)
    assert fast.status == "running" and fast.attempt == 2
    assert fast.started_at == (now if expected == "pending" else started)
    if expected == "pending":
        assert fast.queued_at == orm.queued_at == now
    assert not unit_of_work.claim_step(fast.pk, expected, "host:1:def", lease, now)  # no longer `expected`


def test_save_step_writes_what_save_writes(run):
    fast, orm = (StepRun.objects.get(run=run, step_id=step_id) for step_id in "ab")
    for row in (fast, orm):
        row.status, row.output_data, row.error = "failed", None, {"code": "x", "message": "é"}
        row.attempts, row.tokens, row.cost_usd = [*row.attempts, {"a": 1}], {"total": 3}, Decimal("0.5")
        row.completed_at, row.lease_owner = timezone.now(), ""
    unit_of_work.save_step(fast)
    orm.save()
    different = ("id", "step_id", "completed_at", "started_at", "queued_at", "input_data", "attempts")
    stored_fast, stored_orm = StepRun.objects.get(pk=fast.pk), StepRun.objects.get(pk=orm.pk)
    assert _values(stored_fast, *different) == _values(stored_orm, *different)
    assert _values(stored_fast) == _values(fast)
    partial = StepRun.objects.only("id", "status").get(pk=fast.pk)  # a partial row: the ORM's save
    partial.status = "cancelled"
    unit_of_work.save_step(partial)
    assert StepRun.objects.get(pk=fast.pk).status == "cancelled"


def test_lock_run_reads_the_run_as_the_orm_does(run):
    with transaction.atomic():
        work = unit_of_work.lock_run(run.pk)
    assert _values(work.run) == _values(Run.objects.get(pk=run.pk))
    with pytest.raises(Run.DoesNotExist):
        unit_of_work.lock_run("run_missing")


def test_queue_rows_writes_what_an_update_writes(run):
    rows = list(StepRun.objects.filter(run=run).order_by("step_id"))
    now = timezone.now()
    for row in rows:
        row.status, row.queued_at, row.dispatched_at = "queued", now, now
    assert unit_of_work.queue_rows(rows) == [row.pk for row in rows]
    stored = list(StepRun.objects.filter(run=run).order_by("step_id").values_list("status", "queued_at"))
    assert stored == [("queued", now), ("queued", now)]


def test_units_of_work_keep_their_own_pending_events(run, engine):
    """Two transactions' units of work, interleaved, each write only their own run's events."""
    other = engine.start([transform("x", 1)])
    with transaction.atomic():
        first = unit_of_work.lock_run(run.pk)
        second = UnitOfWork(Run.objects.select_for_update().get(pk=other.pk))
        first.emit("test_first")
        second.emit("test_second")
        first.emit("test_first", data={"n": 2})
        second.save()
        first.save()
    assert "_pending_events" not in first.run.__dict__ and first.events == [] and second.events == []
    mine = list(RunEvent.objects.filter(run=run, type__startswith="test_").values_list("type", "seq"))
    theirs = list(RunEvent.objects.filter(run=other, type__startswith="test_").values_list("type", "seq"))
    assert mine == [("test_first", run.event_seq + 1), ("test_first", run.event_seq + 2)]
    assert theirs == [("test_second", other.event_seq + 1)]
    assert Run.objects.get(pk=run.pk).event_seq == run.event_seq + 2


def test_lock_for_record_reads_the_run_and_the_leased_step(run):
    step = StepRun.objects.get(run=run, step_id="b")
    StepRun.objects.filter(pk=step.pk).update(status="running", lease_owner="host:1:abc")
    with transaction.atomic():
        work, row = unit_of_work.lock_for_record(run.pk, step.pk, "host:1:abc")
        assert _values(work.run) == _values(Run.objects.get(pk=run.pk))
        assert _values(row) == _values(StepRun.objects.get(pk=step.pk))
        assert unit_of_work.lock_for_record(run.pk, step.pk, "host:1:other")[1] is None  # reclaimed
        with pytest.raises(Run.DoesNotExist):
            unit_of_work.lock_for_record("run_missing", step.pk, "host:1:abc")


def _created(run_id) -> tuple[Run, list[StepRun], list[RunEvent]]:
    run = Run.objects.get(pk=run_id)
    return run, list(StepRun.objects.filter(run=run).order_by("step_id")), list(run.events.order_by("seq"))


# Columns that differ between two runs of two workflows, or are the times of the trigger itself.
_OWN = ("id", "run_id", "workflow_id", "workflow_version_id", "definition_hash", "created_at", "started_at",
        "deadline_at", "queued_at", "dispatched_at")  # fmt: skip


@pytest.fixture
def uncapped(org):
    """The organisation with nothing counted under its lock: no cap on runs at once, no monthly limits."""
    org.max_concurrent_runs = org.monthly_run_limit = org.monthly_token_quota = None
    org.save(update_fields=["max_concurrent_runs", "monthly_run_limit", "monthly_token_quota"])
    return org


def test_a_run_started_before_its_rows_are_written_is_stored_as_the_usual_way_stores_it(engine, uncapped):
    steps = [transform("a", 1), transform("b", 2), transform("c", "{{ steps.a.output }}", depends_on=["a"])]
    started_first = engine.workflow(steps)
    # A root step's `when` is evaluated by the first advance, which then runs the usual way: the run's rows
    # written first, then its start, its queued rows and its events.
    usual = engine.workflow([{**steps[0], "when": "{{ true }}"}, *steps[1:]])
    with CaptureQueriesContext(connection) as fast_queries:
        fast_id = run_create(workflow=started_first, actor=engine.actor, input_data={"k": "é"}).id
    with CaptureQueriesContext(connection) as usual_queries:
        usual_id = run_create(workflow=usual, actor=engine.actor, input_data={"k": "é"}).id
    fast_run, fast_rows, fast_events = _created(fast_id)
    usual_run, usual_rows, usual_events = _created(usual_id)
    assert _values(fast_run, *_OWN) == _values(usual_run, *_OWN)
    assert fast_run.status == "running" and fast_run.event_seq == 2
    assert [_values(row, *_OWN) for row in fast_rows] == [_values(row, *_OWN) for row in usual_rows]
    assert [row.status for row in fast_rows] == ["queued", "queued", "pending"]
    assert [(e.seq, e.type, e.step_id, e.data) for e in fast_events] == [
        (e.seq, e.type, e.step_id, e.data) for e in usual_events
    ]
    # The same moments, in the same order: created, queued (its event), started (its event, the rows).
    queued, started = fast_events[0].created_at, fast_events[1].created_at
    assert fast_run.created_at <= queued <= fast_run.started_at <= started
    assert {row.queued_at for row in fast_rows if row.status == "queued"} == {fast_run.started_at}
    assert fast_run.deadline_at == fast_run.started_at + (usual_run.deadline_at - usual_run.started_at)
    assert list(dispatch_module.MANUAL_QUEUE) == [
        *(row.id for row in fast_rows if row.status == "queued"),
        *(row.id for row in usual_rows if row.status == "queued"),
    ]
    # No UPDATE of the run or its rows: they were written as the advance left them.
    written = [query["sql"] for query in fast_queries.captured_queries if "runs_" in query["sql"]]
    assert not [statement for statement in written if statement.startswith("UPDATE")]
    assert [q for q in usual_queries.captured_queries if q["sql"].startswith('UPDATE "runs_run"')]
    if connection.vendor == "postgresql":  # the run, its rows and its events: one statement
        assert len([statement for statement in written if "INSERT" in statement]) == 1
    engine.drain()
    assert Run.objects.get(pk=fast_id).status == Run.objects.get(pk=usual_id).status == "completed"


def test_a_run_the_security_policy_refuses_is_started_the_usual_way(engine, uncapped):
    SecurityPolicy.objects.update_or_create(organization=uncapped, defaults={"max_steps_per_run": 1})
    workflow = engine.workflow([transform("a", 1), transform("b", 2)])
    run = run_create(workflow=workflow, actor=engine.actor)
    stored = Run.objects.get(pk=run.pk)
    assert stored.status == "failed" and stored.error["code"] == "policy_violation"
    assert set(StepRun.objects.filter(run=run).values_list("status", flat=True)) == {"cancelled"}
    assert list(run.events.values_list("type", flat=True)) == ["run_queued", "run_started", "run_failed"]


def test_the_trigger_reads_the_policy_with_its_workflow(api_key_client, uncapped, owner):
    SecurityPolicy.objects.update_or_create(organization=uncapped, defaults={"max_run_duration_seconds": 77})
    workflow = make_workflow(uncapped, owner)
    with CaptureQueriesContext(connection) as queries:
        response = api_key_client.post(
            f"/api/v1/workflows/{workflow.id}/run", {"input": {"who": "x"}}, format="json"
        )
    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.deadline_at == run.started_at + timedelta(seconds=77)
    policy_table = SecurityPolicy._meta.db_table
    reads = [q["sql"] for q in queries.captured_queries if policy_table in q["sql"]]
    assert len(reads) == 1 and Workflow._meta.db_table in reads[0]
