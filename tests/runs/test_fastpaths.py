"""runs/fastpaths.py and the unit of work's statements read and write what their ORM forms do."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models import Exists, F, OuterRef
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


def test_read_top_level_rows_reads_what_the_queryset_reads(run):
    rows = unit_of_work.read_top_level_rows(run.pk)
    orm = {row.step_id: row for row in StepRun.objects.filter(run_id=run.pk, parent__isnull=True)}
    assert rows.keys() == orm.keys() == {"a", "b"}
    for step_id, row in rows.items():
        assert {name: getattr(row, name) for name in unit_of_work.ADVANCE_FIELDS} == {
            name: getattr(orm[step_id], name) for name in unit_of_work.ADVANCE_FIELDS
        }


def test_read_for_claim_reads_the_run_the_step_and_the_rows(run):
    step = StepRun.objects.get(run=run, step_id="b")
    with transaction.atomic():
        locked, peek, rows = unit_of_work.read_for_claim(step.pk)
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
    with transaction.atomic():
        assert unit_of_work.read_for_claim("sr_missing") == (None, None, {})


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
