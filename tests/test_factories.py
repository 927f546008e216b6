"""The factories make what the services make: a test that uses one starts from a real object."""

import pytest

from audit.models import AuditEvent
from runs.engine import dispatch
from tests.factories import (
    OrganizationFactory,
    RunFactory,
    StepRunFactory,
    WorkflowFactory,
    WorkflowVersionFactory,
    transform,
)

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _manual_dispatch(settings):
    settings.BATON_ENGINE_DISPATCH = "manual"
    yield
    dispatch.MANUAL_QUEUE.clear()
    dispatch.MANUAL_ADMISSIONS.clear()


def test_a_workflow_has_its_first_version_and_its_audit_event():
    workflow = WorkflowFactory(name="Fetch", steps=[transform("a", 1), transform("b", 2, depends_on=["a"])])
    assert workflow.name == "Fetch" and workflow.current_version == 1
    assert [step["id"] for step in workflow.versions.get(number=1).definition["steps"]] == ["a", "b"]
    assert (
        AuditEvent.objects.filter(organization=workflow.organization, event="workflow.created").count() == 1
    )


def test_a_version_follows_the_latest():
    workflow = WorkflowFactory(name="Fetch")
    version = WorkflowVersionFactory(workflow=workflow)
    workflow.refresh_from_db()
    assert version.number == 2 == workflow.current_version
    assert version.definition["name"] == "Fetch, edited" == workflow.name


def test_a_run_has_a_step_run_per_step_and_can_be_forced_to_finish():
    org = OrganizationFactory()
    workflow = WorkflowFactory(
        organization=org, steps=[transform("a", 1), transform("b", 2, depends_on=["a"])]
    )
    started = RunFactory(workflow=workflow)
    assert started.organization_id == org.id
    assert sorted(started.steps.values_list("step_id", "status")) == [("a", "queued"), ("b", "pending")]
    done = RunFactory(workflow=workflow, status="completed")
    assert done.status == "completed" and done.completed_at and done.started_at == done.created_at
    assert set(done.steps.values_list("status", flat=True)) == {"completed"}


def test_a_step_run_belongs_to_a_run():
    step = StepRunFactory(step_id="extra")
    assert step.run.steps.filter(step_id="extra").get() == step and step.status == "pending"
