"""Tenancy registry entries for the workflows routes (imported by tests/support/tenancy_registry.py)."""

from tests.support.tenancy_registry import register
from tests.workflows.support.helpers import make_workflow, owner_actor
from workflows.services import template_save_from_workflow


@register(
    "workflow-detail", "workflow-clone", "workflow-input-schema", "workflow-permanent",
    "workflow-publish", "workflow-rollback", "workflow-save-as-template", "workflow-set-status",
    "workflow-unarchive", "workflow-versions",
)  # fmt: skip
def _workflow(org, owner):
    return {"ref": make_workflow(org, owner).id}


# GET /diff without v1/v2 is a 400 by contract, so the owner's plain GET cannot be the sanity check;
# tests/workflows/test_versions.py reads diffs of the organisation's own workflow.
@register("workflow-diff", sanity_get=False)
def _workflow_for_diff(org, owner):
    return {"ref": make_workflow(org, owner).id}


@register("workflow-version-detail")
def _workflow_version(org, owner):
    return {"ref": make_workflow(org, owner).id, "number": 1}


@register("template-detail", "template-install")
def _org_template(org, owner):
    workflow = make_workflow(org, owner)
    return {"pk": template_save_from_workflow(workflow=workflow, actor=owner_actor(org, owner)).id}


def _schedule(org, owner):
    from workflows.schedules import schedule_create

    workflow = make_workflow(org, owner)
    schedule = schedule_create(
        workflow=workflow,
        actor=owner_actor(org, owner),
        values={"cron_expression": "@daily", "input_data": {"who": "x"}},
    )
    return {"schedule_id": schedule.id}


register("schedule-detail", "schedule-backfill")(_schedule)


@register("workflow-schedules")
def _workflow_schedules(org, owner):
    return {"ref": make_workflow(org, owner).id}


@register("workflow-webhook-secret-rotate")
def _workflow_webhook(org, owner):
    return {"ref": make_workflow(org, owner).id}
