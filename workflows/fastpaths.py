"""The trigger's lookups of its workflow and version, written once (config/sql.py) because every trigger
runs them. Each returns what its ORM form would; tests/workflows/test_fastpaths.py runs both and compares."""

from __future__ import annotations

from django.db.models import F

from accounts.policy import DEFAULT_POLICY
from config import sql
from workflows.models import Schedule, Workflow, WorkflowVersion

# What starting a run reads of the organisation's security policy (runs/engine/secrets.py `run_limits`): the
# trigger reads it with its workflow, one statement where there were two.
RUN_POLICY_FIELDS = ("max_run_duration_seconds", "max_steps_per_run")
_RUN_POLICY = {f"policy_{name}": F(f"organization__security_policy__{name}") for name in RUN_POLICY_FIELDS}


def _workflow_by(field: str) -> tuple[sql.Prepared, sql.Prepared]:
    """The reads of the organisation's workflow by `field`: without and with `_RUN_POLICY`."""

    def build(org, ref, **annotations):
        return Workflow.objects.filter(organization_id=org, **{field: ref}).annotate(**annotations)

    return (
        sql.Prepared(Workflow, build, arity=2),
        sql.Prepared(Workflow, lambda org, ref: build(org, ref, **_RUN_POLICY), arity=2),
    )


_WORKFLOW_BY_ID = _workflow_by("pk")
_WORKFLOW_BY_SLUG = _workflow_by("slug")
_VERSION = sql.Select(WorkflowVersion, None, "{workflow_id} = %s AND {number} = %s")


def workflow_by_id(organization_id: str, workflow_id: str, *, run_policy: bool = False) -> Workflow | None:
    """The organisation's workflow with this id (its project not loaded), or None. `run_policy`: with
    `workflow.run_policy`, {field: value} of RUN_POLICY_FIELDS as runs/engine/secrets.py `policy_for` gives
    them (the defaults when the organisation never saved a policy)."""
    return _found(_WORKFLOW_BY_ID, run_policy, organization_id, workflow_id)


def workflow_by_slug(organization_id: str, slug: str, *, run_policy: bool = False) -> Workflow | None:
    """The organisation's workflow with this slug (its project not loaded), or None; `run_policy` as above."""
    return _found(_WORKFLOW_BY_SLUG, run_policy, organization_id, slug)


def _found(statements, run_policy: bool, organization_id: str, ref: str) -> Workflow | None:
    workflow = statements[run_policy].first(organization_id, ref)
    if workflow is not None and run_policy:
        policy = {}
        for name in RUN_POLICY_FIELDS:
            value = workflow.__dict__.pop(f"policy_{name}")
            policy[name] = DEFAULT_POLICY[name] if value is None else value
        workflow.run_policy = policy
    return workflow


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
