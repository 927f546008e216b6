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


def test_version_by_number_reads_what_the_queryset_reads(workflow):
    orm = WorkflowVersion.objects.get(workflow=workflow, number=1)
    assert _values(fastpaths.version_by_number(workflow.pk, 1)) == _values(orm)
    assert fastpaths.version_by_number(workflow.pk, 2) is None
