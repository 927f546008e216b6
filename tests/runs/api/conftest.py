"""Runs API fixtures: workflows made through the real services, the engine in manual mode (steps run
only when a test drains them), and uploads under a per-test MEDIA_ROOT."""

import pytest
from django.db.models import F
from django.utils import timezone

from accounts.choices import Role
from accounts.principal import Principal
from runs.engine import dispatch as dispatch_module
from runs.models import Run, StepRun
from runs.services import run_create
from workflows.services import workflow_create

GREETER = {
    "name": "Greeter",
    "inputs": {
        "type": "object",
        "properties": {"who": {"type": "string"}, "count": {"type": "integer"}, "tags": {"type": "array"}},
        "required": ["who"],
    },
    "steps": [
        {"id": "hello", "type": "transform", "config": {"value": "Hello {{ inputs.who }}"}},
        {"id": "shout", "type": "transform", "config": {"value": "{{ steps.hello.output }}!"},
         "depends_on": ["hello"]},
    ],
    "output": "{{ steps.shout.output }}",
}  # fmt: skip


@pytest.fixture(autouse=True)
def _engine_manual_and_media(settings, tmp_path):
    settings.BATON_ENGINE_DISPATCH = "manual"
    settings.MEDIA_ROOT = tmp_path / "files"
    dispatch_module.MANUAL_QUEUE.clear()
    yield
    dispatch_module.MANUAL_QUEUE.clear()


@pytest.fixture
def actor(org, owner):
    return Principal(organization=org, user=owner, role=Role.OWNER)


def make_workflow(org, actor, definition=None, **options):
    return workflow_create(organization=org, actor=actor, definition=definition or GREETER, **options)


@pytest.fixture
def workflow(org, actor):
    return make_workflow(org, actor)


def make_run(workflow, actor, *, status=None, input_data=None, created_at=None, **options) -> Run:
    """A run through run_create; `status` forces a final state (as if the engine had finished it)."""
    run = run_create(workflow=workflow, actor=actor, input_data=input_data or {"who": "Ada"}, **options)
    changes = {}
    if status is not None:
        changes["status"] = status
        if status in ("completed", "failed", "cancelled"):
            changes["completed_at"] = timezone.now()
            changes["started_at"] = F("created_at")
    if created_at is not None:
        changes["created_at"] = created_at
    if changes:
        Run.objects.filter(pk=run.pk).update(**changes)
    if status in ("completed", "failed", "cancelled"):
        StepRun.objects.filter(run=run).update(status=status if status != "failed" else "completed")
    return Run.objects.get(pk=run.pk)


def drain() -> int:
    return dispatch_module.drain()
