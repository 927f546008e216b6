"""Tenancy-test factories for this area's routes (see tests/support/tenancy_registry.py)."""

from django.test import override_settings

from runs.engine import dispatch
from runs.services import run_create
from tests.support.tenancy_registry import register
from tests.workflows.support.helpers import make_workflow, owner_actor


@register("run-stream")
def _run_stream(org, owner):
    """A finished run of `org` (its stream answers at once and ends, so the owner's sanity GET returns)."""
    with override_settings(BATON_ENGINE_DISPATCH="manual"):
        workflow = make_workflow(org, owner)
        run = run_create(workflow=workflow, actor=owner_actor(org, owner), input_data={"who": "Ada"})
        dispatch.drain()
    return {"run_id": run.pk}
