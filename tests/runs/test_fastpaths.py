"""runs/fastpaths.py and the unit of work's statements read and write what their ORM forms do."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Exists, F, OuterRef
from django.db.models.functions import Coalesce
from django.utils import timezone

from runs import fastpaths
from runs.engine import unit_of_work
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, RunEvent, StepRun
from tests.runs.conftest import transform
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
