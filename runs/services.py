"""Run operations (every write to a run goes through here or the engine). Keyword-only, explicit actor."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from audit.services import audit_record
from config.errors import Conflict, Unprocessable
from runs.choices import EventType, RunTrigger
from runs.engine import core
from runs.engine.dispatch import dispatch
from runs.models import Run, StepRun
from workflows.definition import input_schema
from workflows.models import Workflow, WorkflowVersion


def input_errors(definition: dict, input_data) -> list[str]:
    """Sentences for each way `input_data` fails the workflow's input schema (empty when valid)."""
    validator = Draft202012Validator(input_schema(definition))
    errors = []
    for error in sorted(validator.iter_errors(input_data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        errors.append(f"input.{where}: {error.message}" if where else f"input: {error.message}")
    return errors


@transaction.atomic
def run_create(
    *,
    workflow: Workflow,
    actor,
    version: WorkflowVersion | None = None,
    input_data: dict | None = None,
    metadata: dict | None = None,
    env: str | None = None,
    dry_run: bool = False,
    trigger: str = RunTrigger.API,
    parent_run: Run | None = None,
) -> Run:
    """Create a run of `version` (default: the latest) with one pending step run per step, record
    `run_queued` and `run.triggered`, and advance it (ready steps are dispatched after commit).

    Raises Unprocessable("invalid_input") when the input fails the workflow's input schema."""
    if version is None:
        version = WorkflowVersion.objects.get(workflow=workflow, number=workflow.current_version)
    definition = version.definition
    input_data = {} if input_data is None else input_data
    errors = input_errors(definition, input_data)
    if errors:
        raise Unprocessable("invalid_input", "The run input does not match the workflow's input schema.",
                            details={"errors": errors})  # fmt: skip
    run = Run.objects.create(
        organization_id=workflow.organization_id,
        workflow=workflow,
        workflow_version=version,
        definition_hash=version.content_hash,
        trigger=trigger,
        input_data=input_data,
        metadata=metadata or {},
        env=env,
        dry_run=dry_run,
        parent_run=parent_run,
        triggered_by=actor.actor_id,
        triggered_by_type=actor.actor_type,
    )
    StepRun.objects.bulk_create(
        [
            StepRun(run=run, step_id=step["id"], type=step["type"], name=step.get("name", ""))
            for step in definition["steps"]
        ]
    )
    Workflow.objects.filter(pk=workflow.pk).update(last_run_at=run.created_at)
    audit_record(
        organization=workflow.organization,
        event="run.triggered",
        actor=actor,
        target=("run", run.id),
        data={"workflow_id": workflow.id, "version": version.number, "trigger": trigger, "dry_run": dry_run},
        run_id=run.id,
    )
    run = Run.objects.select_for_update().get(pk=run.pk)
    core.emit(run, EventType.RUN_QUEUED, data={"workflow_version": version.number})
    ready = core.advance_locked(run)
    core.save_run(run)
    dispatch(ready)
    return run


@transaction.atomic
def run_cancel(*, run: Run, actor, reason: str = "") -> Run:
    """Cooperative cancel: nothing new starts, unstarted steps are cancelled, and the run becomes
    `cancelled` when no step is running any more. A terminal run → Conflict run_not_cancellable."""
    locked = Run.objects.select_for_update().get(pk=run.pk)
    if locked.is_terminal:
        raise Conflict("run_not_cancellable", f"Run {run.id} is {locked.status} and cannot be cancelled.")
    if locked.cancel_requested_at is None:
        audit_record(
            organization=locked.organization,
            event="run.cancelled",
            actor=actor,
            target=("run", locked.id),
            data={"reason": reason} if reason else {},
            note=reason or None,
            run_id=locked.id,
        )
        core.run_request_cancel(locked, timezone.now())
        core.save_run(locked)
    return locked
