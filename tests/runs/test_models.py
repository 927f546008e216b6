import pytest
from django.db import IntegrityError, transaction

from runs.models import Run, RunEvent, StepRun
from tests.runs.conftest import transform
from workflows.services import workflow_archive, workflow_delete_permanent


def test_permanent_workflow_delete_removes_its_runs(engine):
    run = engine.start([transform("a", 1)])
    workflow = run.workflow
    workflow_archive(workflow=workflow, actor=engine.actor)
    workflow_delete_permanent(workflow=workflow, actor=engine.actor)
    assert not Run.objects.filter(pk=run.pk).exists()
    assert not StepRun.objects.filter(run_id=run.pk).exists()
    assert not RunEvent.objects.filter(run_id=run.pk).exists()


def test_event_seq_and_step_ids_are_unique_per_run(engine):
    run = engine.start([transform("a", 1)])
    with pytest.raises(IntegrityError), transaction.atomic():
        RunEvent.objects.create(run=run, seq=1, type="run_started")
    with pytest.raises(IntegrityError), transaction.atomic():
        StepRun.objects.create(run=run, step_id="a", type="transform")


def test_ids_have_their_prefixes(engine):
    run = engine.start([transform("a", 1)])
    assert run.id.startswith("run_") and StepRun.objects.get(run=run).id.startswith("sr_")
    assert run.can_cancel() is False and run.is_terminal
