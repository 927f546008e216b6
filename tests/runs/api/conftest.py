"""Runs API fixtures: workflows made through the real services, the engine in manual mode (steps run
only when a test drains them), and uploads under a per-test MEDIA_ROOT."""

import copy

import factory
import pytest

from accounts.choices import Role
from accounts.principal import Principal
from runs.engine import dispatch as dispatch_module
from tests.factories import RunFactory, WorkflowFactory

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


class GreeterFactory(WorkflowFactory):
    """A workflow of GREETER's definition unless told otherwise."""

    definition = factory.LazyFunction(lambda: copy.deepcopy(GREETER))


class GreeterRunFactory(RunFactory):
    """A run with GREETER's required input unless told otherwise."""

    input_data = factory.LazyFunction(lambda: {"who": "Ada"})


@pytest.fixture
def workflow(org, actor):
    return GreeterFactory(organization=org, actor=actor)


def drain() -> int:
    return dispatch_module.drain()
