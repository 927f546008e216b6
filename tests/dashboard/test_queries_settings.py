"""The settings, schedules, versions and audit event pages cost the same number of queries whatever they
list (as tests/dashboard/test_queries.py does for the first pages)."""

import pytest

from accounts.models import Agent, LlmProvider
from accounts.services import secret_create
from audit.models import AuditEvent
from tests.dashboard.support.helpers import actor, make_workflow, signed_in
from tests.dashboard.test_queries import _queries
from workflows.schedules import schedule_create
from workflows.services import workflow_update

PAGES = [
    "/settings/llm-providers/",
    "/settings/agents/",
    "/settings/secrets/",
    "/settings/security/",
    "/settings/usage/",
    "/workflows/{wf}/schedules/",
    "/workflows/{wf}/versions/",
    "/workflows/{wf}/",
    "/audit/{event}/",
]


def _add_rows(org, owner, workflow, count, start):
    principal = actor(org, owner)
    for i in range(start, start + count):
        provider = LlmProvider.objects.create(
            organization=org, name=f"P{i}", kind="openai", default_model="m"
        )
        Agent.objects.create(organization=org, name=f"A{i}", provider=provider)
        secret_create(organization=org, actor=principal, name=f"S{i}", value="a-long-secret-value")
        schedule_create(workflow=workflow, actor=principal, values={"cron_expression": f"{i % 60} 9 * * *"})
        definition = {
            "name": workflow.name,
            "steps": [{"id": f"s{i}", "type": "transform", "config": {"value": i}}],
        }
        workflow_update(workflow=workflow, actor=principal, definition=definition)


@pytest.mark.parametrize("page", PAGES)
def test_page_query_count_does_not_grow_with_rows(page, org, owner):
    org.max_schedules = org.max_schedules_per_workflow = None
    org.save(update_fields=["max_schedules", "max_schedules_per_workflow"])
    client = signed_in(owner, org)
    workflow = make_workflow(org, owner)
    _add_rows(org, owner, workflow, 1, 0)
    event = AuditEvent.objects.filter(organization=org).latest("seq")
    url = page.format(wf=workflow.id, event=event.id)
    few = _queries(client, url)
    _add_rows(org, owner, workflow, 8, 1)
    assert _queries(client, url) == few
