"""Runs and step runs."""

import factory
from django.db.models import F
from django.utils import timezone

from runs.models import Run, StepRun
from runs.services import run_create
from tests.factories.accounts import owner_of
from tests.factories.workflows import WorkflowFactory

FINISHED = ("completed", "failed", "cancelled")


class RunFactory(factory.django.DjangoModelFactory):
    """A run made by run_create (a step run per step, its audit event, ready steps dispatched as the test's
    settings say); other keywords (input_data, env, dry_run…) go to the service. `status` then forces a
    state and `created_at` a date, as if the engine had got there: a finished run's steps completed
    (`failed` too: the failure is the run's)."""

    class Meta:
        model = Run

    workflow = factory.SubFactory(WorkflowFactory)
    actor = factory.LazyAttribute(lambda o: owner_of(o.workflow.organization))

    @classmethod
    def _create(cls, model_class, *args, status=None, created_at=None, **kwargs):
        run = run_create(**kwargs)
        changes = {}
        if status is not None:
            changes["status"] = status
            if status in FINISHED:
                changes["completed_at"] = timezone.now()
                changes["started_at"] = F("created_at")
        if created_at is not None:
            changes["created_at"] = created_at
        if not changes:
            return run
        Run.objects.filter(pk=run.pk).update(**changes)
        if status in FINISHED:
            StepRun.objects.filter(run=run).update(status="completed" if status == "failed" else status)
        return Run.objects.get(pk=run.pk)


class StepRunFactory(factory.django.DjangoModelFactory):
    """A step run row as the engine writes one (for a step the run's definition need not have)."""

    class Meta:
        model = StepRun

    run = factory.SubFactory(RunFactory)
    step_id = factory.Sequence(lambda n: f"step{n}")
    type = "transform"
