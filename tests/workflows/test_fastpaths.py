"""workflows/fastpaths.py reads what its ORM forms read."""

import pytest

from accounts.principal import Principal
from workflows import fastpaths
from workflows.models import Workflow, WorkflowVersion
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db


def _values(instance) -> dict:
    return {field.attname: getattr(instance, field.attname) for field in type(instance)._meta.concrete_fields}


@pytest.fixture
def workflow(org, owner):
    actor = Principal(organization=org, user=owner, role="owner")
    definition = {"name": "Fast é ✓", "steps": [{"id": "a", "type": "transform", "config": {"value": 1}}]}
    return workflow_create(organization=org, actor=actor, definition=definition)


def test_workflow_lookups_read_what_the_queryset_reads(workflow, other_org):
    orm = Workflow.objects.get(organization_id=workflow.organization_id, pk=workflow.pk)
    by_id = fastpaths.workflow_by_id(workflow.organization_id, workflow.pk)
    by_slug = fastpaths.workflow_by_slug(workflow.organization_id, workflow.slug)
    assert _values(by_id) == _values(by_slug) == _values(orm)
    assert fastpaths.workflow_by_id(other_org.pk, workflow.pk) is None
    assert fastpaths.workflow_by_slug(other_org.pk, workflow.slug) is None


@pytest.mark.parametrize("saved", [False, True], ids=["default policy", "saved policy"])
def test_workflow_lookups_with_the_run_policy_read_it_as_policy_for_does(workflow, other_org, saved):
    from accounts.models import SecurityPolicy
    from runs.engine.secrets import policy_for

    if saved:
        SecurityPolicy.objects.update_or_create(
            organization_id=workflow.organization_id,
            defaults={"max_run_duration_seconds": 90, "max_steps_per_run": 7},
        )
    policy = policy_for(workflow.organization_id)
    expected = {name: policy[name] for name in fastpaths.RUN_POLICY_FIELDS}
    assert expected == ({"max_run_duration_seconds": 90, "max_steps_per_run": 7} if saved else expected)
    orm = Workflow.objects.get(organization_id=workflow.organization_id, pk=workflow.pk)
    by_id = fastpaths.workflow_by_id(workflow.organization_id, workflow.pk, run_policy=True)
    by_slug = fastpaths.workflow_by_slug(workflow.organization_id, workflow.slug, run_policy=True)
    assert _values(by_id) == _values(by_slug) == _values(orm)
    assert by_id.run_policy == by_slug.run_policy == expected
    assert not [name for name in vars(by_id) if name.startswith("policy_")]
    assert fastpaths.workflow_by_id(other_org.pk, workflow.pk, run_policy=True) is None


def test_version_by_number_reads_what_the_queryset_reads(workflow):
    orm = WorkflowVersion.objects.get(workflow=workflow, number=1)
    assert _values(fastpaths.version_by_number(workflow.pk, 1)) == _values(orm)
    assert fastpaths.version_by_number(workflow.pk, 2) is None


def test_a_version_read_again_comes_from_the_process_and_shares_nothing(workflow, django_assert_num_queries):
    first = fastpaths.version_by_number(workflow.pk, 1)
    with django_assert_num_queries(0):
        again = fastpaths.version_by_number(workflow.pk, 1)
    assert _values(again) == _values(first)
    assert again is not first
    assert again.definition is not first.definition  # a request may change its copy: no other sees it
    again.definition["steps"].append({"id": "b"})
    assert fastpaths.version_by_number(workflow.pk, 1).definition == first.definition
    with django_assert_num_queries(1):  # an absent version is not kept: it may be written next
        assert fastpaths.version_by_number(workflow.pk, 2) is None


def test_save_fired_schedules_writes_what_bulk_update_writes(workflow):
    from datetime import UTC, datetime

    from workflows.models import Schedule

    fields = ["enabled", "next_run_at", "last_run_at", "last_run_id", "last_error"]
    schedules = [
        Schedule.objects.create(
            organization_id=workflow.organization_id, workflow=workflow, cron_expression="0 * * * *"
        )
        for _ in range(4)
    ]
    at = datetime(2026, 3, 2, 14, 0, 0, 123456, tzinfo=UTC)
    changes = [
        {"enabled": False, "next_run_at": None, "last_error": {"code": "invalid_input", "message": "é ✓"}},
        {"next_run_at": at, "last_run_at": at, "last_run_id": "run_1", "last_error": None},
    ]
    for schedule, change in zip(schedules, changes * 2, strict=True):
        for name, value in change.items():
            setattr(schedule, name, value)
    fastpaths.save_fired_schedules(schedules[:2])
    Schedule.objects.bulk_update(schedules[2:], fields)
    stored = {s.pk: [getattr(s, name) for name in fields] for s in Schedule.objects.all()}
    assert stored[schedules[0].pk] == stored[schedules[2].pk]
    assert stored[schedules[1].pk] == stored[schedules[3].pk] == [True, at, at, "run_1", None]
