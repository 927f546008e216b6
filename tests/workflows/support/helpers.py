"""Definitions valid under API.md ("Workflow definition") and a workflow factory using the real service."""

import copy

from accounts.choices import Role
from accounts.principal import Principal
from workflows.services import workflow_create


def transform(step_id: str, value: str, depends_on: list[str] | None = None) -> dict:
    step = {"id": step_id, "type": "transform", "config": {"value": value}}
    if depends_on:
        step["depends_on"] = list(depends_on)
    return step


def definition(
    name: str = "Greeter", description: str = "Greets someone.", steps: list[dict] | None = None
) -> dict:
    if steps is None:
        steps = [
            transform("hello", "Hello {{ inputs.who }}"),
            transform("shout", "{{ steps.hello.output }}!", ["hello"]),
        ]
    return {
        "name": name,
        "description": description,
        "inputs": {"type": "object", "properties": {"who": {"type": "string"}}, "required": ["who"]},
        "steps": copy.deepcopy(steps),
        "output": f"{{{{ steps.{steps[-1]['id']}.output }}}}",
    }


def owner_actor(org, user):
    return Principal(organization=org, user=user, role=Role.OWNER)


def make_workflow(org, owner, name: str = "Greeter", **kwargs):
    return workflow_create(
        organization=org, actor=owner_actor(org, owner), definition=definition(name), **kwargs
    )
