"""The trigger's lookups of its workflow and version, written once (config/sql.py) because every trigger
runs them. Each returns what its ORM form would; tests/workflows/test_fastpaths.py runs both and compares."""

from __future__ import annotations

from config import sql
from workflows.models import Schedule, Workflow, WorkflowVersion

_WORKFLOW_BY_ID = sql.Prepared(
    Workflow, lambda org, ref: Workflow.objects.filter(organization_id=org, pk=ref), arity=2
)
_WORKFLOW_BY_SLUG = sql.Prepared(
    Workflow, lambda org, ref: Workflow.objects.filter(organization_id=org, slug=ref), arity=2
)
_VERSION = sql.Select(WorkflowVersion, None, "{workflow_id} = %s AND {number} = %s")


def workflow_by_id(organization_id: str, workflow_id: str) -> Workflow | None:
    """The organisation's workflow with this id (its project not loaded), or None."""
    return _WORKFLOW_BY_ID.first(organization_id, workflow_id)


def workflow_by_slug(organization_id: str, slug: str) -> Workflow | None:
    """The organisation's workflow with this slug (its project not loaded), or None."""
    return _WORKFLOW_BY_SLUG.first(organization_id, slug)


# A version never changes and is deleted only with its workflow, whose id is never used again
# (workflows/models.py): each process keeps the rows it has read, as the driver returned them, and makes a
# new instance of one for every call (nothing mutable is shared between requests). Bounded: cleared when full.
_VERSION_ROWS: dict[tuple[str, int], tuple] = {}
VERSION_ROWS_MAX = 1024


def version_by_number(workflow_id: str, number: int) -> WorkflowVersion | None:
    """The workflow's version `number`, or None."""
    key = (workflow_id, number)
    raw = _VERSION_ROWS.get(key)
    if raw is None:
        found = _VERSION.send(workflow_id, number).raw()
        if not found:
            return None
        raw = found[0]
        if len(_VERSION_ROWS) >= VERSION_ROWS_MAX:
            _VERSION_ROWS.clear()
        _VERSION_ROWS[key] = raw
    return _VERSION.instance(raw)


# What a fire pass changes on its schedules (runs/scheduling.py): one statement for all of them.
_SAVE_FIRED = sql.Update(Schedule, ("enabled", "next_run_at", "last_run_at", "last_run_id", "last_error"))


def save_fired_schedules(schedules: list[Schedule]) -> None:
    """Save what a fire pass changed on these schedules (as `bulk_update` of those fields would)."""
    if schedules:
        _SAVE_FIRED.save_many(schedules)
