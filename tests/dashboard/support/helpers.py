"""Shared setup for the dashboard tests: signed-in clients per persona and small workflows."""

from django.test import Client

from accounts.authentication import SESSION_ORG_KEY
from accounts.principal import Principal
from workflows.services import workflow_create


def signed_in(user, org, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    session = client.session
    session[SESSION_ORG_KEY] = org.id
    session.save()
    return client


def actor(org, user, role="owner") -> Principal:
    return Principal(organization=org, user=user, role=role)


APPROVAL_STEPS = [
    {"id": "ok", "type": "approval", "config": {"message": "Ship it?"}},
    {
        "id": "ship",
        "type": "transform",
        "config": {"value": "{{ steps.ok.output.approved }}"},
        "depends_on": ["ok"],
    },
]

INPUTS = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "description": "Who to greet"},
        "count": {"type": "integer", "minimum": 1},
        "ratio": {"type": "number"},
        "loud": {"type": "boolean"},
        "mood": {"enum": ["calm", "busy"]},
        "tags": {"type": "array", "items": {"type": "string"}},
        "extra": {"type": "object"},
    },
}
GREET_STEPS = [
    {"id": "greet", "type": "transform", "config": {"value": "Hello {{ inputs.name }}"}},
    {
        "id": "shout",
        "type": "transform",
        "config": {"value": "{{ steps.greet.output }}!"},
        "depends_on": ["greet"],
    },
    {"id": "done", "type": "transform", "config": {"value": 1}, "depends_on": ["greet"]},
]


def make_workflow(org, user, *, name="Greeter", steps=None, inputs=None, tags=None):
    definition = {"name": name, "steps": steps or GREET_STEPS}
    if inputs is not None:
        definition["inputs"] = inputs
    return workflow_create(organization=org, actor=actor(org, user), definition=definition, tags=tags or [])
