"""Tenancy of the dashboard, generated from config/dashboard_urls.py: every route with a path parameter,
called by a signed-in owner of another organisation for an object of the first one, answers 404 (GET and
POST; 405 only where the view refuses the method outright) — never a page, a redirect or a 403. A new
route's parameter needs an entry in OBJECTS, so no route can skip this check."""

import pytest

from accounts.models import Agent, LlmProvider
from accounts.services import secret_create
from audit.models import AuditEvent
from config import dashboard_urls
from runs.services import run_create
from tests.conftest import key_for
from tests.dashboard.support.helpers import actor, make_workflow, signed_in
from tests.factories import add_member
from workflows.models import WorkflowTemplate
from workflows.schedules import schedule_create

# Path parameter -> how to make an object of `org` for it (returns the value to put in the path).
OBJECTS = {
    "ref": lambda org, owner: make_workflow(org, owner, name="Theirs").id,
    "run_id": lambda org, owner: (
        run_create(
            workflow=make_workflow(org, owner, name="Theirs run"), actor=actor(org, owner), input_data={}
        ).id
    ),
    "key_id": lambda org, owner: _key(org, owner),
    "user_id": lambda org, owner: add_member(org, "member").id,
    "schedule_id": lambda org, owner: (
        schedule_create(
            workflow=make_workflow(org, owner, name="Theirs scheduled"),
            actor=actor(org, owner),
            values={"cron_expression": "@daily"},
        ).id
    ),
    "provider_id": lambda org, owner: (
        LlmProvider.objects.create(organization=org, name="Theirs", kind="openai", default_model="m").id
    ),
    "agent_id": lambda org, owner: Agent.objects.create(organization=org, name="Theirs").id,
    "secret_id": lambda org, owner: (
        secret_create(
            organization=org, actor=actor(org, owner), name="THEIRS", value="a-long-secret-value"
        ).id
    ),
    "event_id": lambda org, owner: AuditEvent.objects.filter(organization=org).latest("seq").id,
    # A step id names a step of the run in the path, not an object of its own: the run is the other org's.
    "step_id": lambda org, owner: "greet",
    "part": lambda org, owner: "input",
    "template_id": lambda org, owner: (
        WorkflowTemplate.objects.create(
            organization=org, name="Theirs", definition={"name": "T", "steps": [{"id": "a", "type": "end"}]}
        ).id
    ),
}


def _key(org, owner) -> str:
    from accounts.models import ApiKey

    key_for(org, owner)
    return ApiKey.objects.filter(organization=org).latest("created_at").id


# Routes whose parameters name no organisation's object: a signed token is the whole authorisation.
EXEMPT = {"password-reset-confirm", "invitation"}
ROUTES = [
    (p.name, p.pattern.regex.groupindex, p)
    for p in dashboard_urls.urlpatterns
    if p.pattern.regex.groupindex and p.name not in EXEMPT
]


def test_every_dashboard_route_with_a_parameter_is_covered():
    assert ROUTES, "the dashboard has routes with parameters"
    missing = {name for _, params, _ in ROUTES for name in params} - set(OBJECTS)
    assert not missing, f"add these path parameters to OBJECTS: {sorted(missing)}"


@pytest.mark.parametrize("name", [name for name, _, _ in ROUTES])
def test_another_organisations_object_is_a_404(name, org, owner, other_org, outsider):
    from django.urls import reverse

    pattern = next(p for n, _, p in ROUTES if n == name)
    kwargs = {param: OBJECTS[param](org, owner) for param in pattern.pattern.regex.groupindex}
    url = reverse(f"dashboard:{name}", kwargs=kwargs)
    client = signed_in(outsider, other_org)
    for method in ("get", "post"):
        response = getattr(client, method)(url, {"decision": "approve", "step_id": "x"})
        assert response.status_code in (404, 405), (method, url, response.status_code)
    assert signed_in(owner, org).get(url).status_code in (200, 405)  # the same URL works for its own org
