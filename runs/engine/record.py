"""Recording an execution's outcome on its locked step row: finished, retrying, suspended, spawning a
loop's iterations, ending the run; and closing a step whose run ended or was terminated meanwhile."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from runs.choices import EventType, RunStatus, SkipReason, StepStatus
from runs.engine.context import StepError, StepOutcome
from runs.engine.loops import after_step_finished, spawn_iterations
from runs.engine.outcomes import (
    Attempt,
    attempt_entry,
    charge,
    complete_run,
    complete_step,
    event_data,
    finish_run,
    skip,
    step_failed,
)
from runs.engine.plan import Plan, plan_for, step_definition
from runs.engine.unit_of_work import UnitOfWork
from runs.engine.waits import AWAITING_STATUS, await_person
from runs.models import StepRun


@dataclass(frozen=True)
class Execution:
    """What one execution of a step's handler produced, redacted, ready to be recorded."""

    attempt: Attempt
    outcome: StepOutcome | None
    error: StepError | None
    input_data: Any
    dry_run_skip: bool


def apply_outcome(work: UnitOfWork, row: StepRun, execution: Execution, now, *, instant=False) -> list[str]:
    """Store an execution's outcome on its locked step row (the run may end); returns the step run ids it
    queued. `instant`: an instant step's, whose completed top-level row may be saved later with the others
    (nothing in this transaction reads it from the database before `work.save()`, except `_end_run`, which
    flushes first)."""
    plan = plan_for(work.run)
    step, policy = step_definition(plan, row)
    outcome, error, attempt = execution.outcome, execution.error, execution.attempt
    ready: list[str] = []
    if error is not None:
        row.attempts = [*row.attempts, attempt_entry(row, "failed", error.as_dict(), attempt)]
        charge(work, row, outcome, error)  # a failed attempt's tokens (error details.tokens) count too
        ready += attempt_failed(work, row, policy, error, now)
    elif execution.dry_run_skip:
        row.save()
        skip(work, row, SkipReason.DRY_RUN, now)
        ready += after_step_finished(work, row, plan, now)
    elif outcome.kind == "suspended":
        # approval and input steps wait for a person (state "awaiting"), anything else for a timer or
        # the engine; wake_at is then the person's deadline (docs/approvals.md).
        awaiting = outcome.state.get("awaiting")
        row.status = AWAITING_STATUS[awaiting] if awaiting else StepStatus.WAITING
        row.wake_at = outcome.wake_at
        row.state = {**outcome.state, "suspended": True}
        # The resumed execution continues this attempt, so the claim's increment is given back.
        row.attempt = max(row.attempt - 1, 0)
        row.save()
        if awaiting:
            await_person(work, row, now)
    elif outcome.kind == "spawn_iterations":
        ready += spawn_iterations(work, row, step, outcome.items, now)
    else:
        defer = instant and row.parent_id is None and outcome.kind == "completed"
        complete_step(work, row, outcome, now, attempt, defer=defer)
        if outcome.kind == "end_run":
            _end_run(work, plan, row, outcome, now)
        else:
            ready += after_step_finished(work, row, plan, now)
    return ready


def attempt_failed(work: UnitOfWork, row: StepRun, policy: dict, error: StepError, now) -> list[str]:
    """Retry per the step's policy (a `waiting` step with wake_at) or fail it; returns ids to dispatch."""
    retry = policy.get("retry") or {}
    max_attempts = retry.get("max_attempts", 1)
    row.error = error.as_dict()
    if error.retryable and row.attempt < max_attempts:
        delay = retry.get("backoff_seconds", 0) * retry.get("backoff_multiplier", 1) ** (row.attempt - 1)
        work.emit(
            EventType.STEP_RETRYING,
            row.step_id,
            event_data(row, attempt=row.attempt, error=row.error, delay_seconds=delay),
        )
        if delay > 0:
            row.status = StepStatus.WAITING
            row.wake_at = now + timedelta(seconds=delay)
            row.save()
            return []
        row.status = StepStatus.QUEUED
        row.dispatched_at = now
        row.save()
        return [row.id]
    plan = plan_for(work.run)
    if step_failed(work, row, policy, row.error, now):
        return []
    return after_step_finished(work, row, plan, now)


def _end_run(work: UnitOfWork, plan: Plan, row: StepRun, outcome: StepOutcome, now) -> None:
    if outcome.run_status == RunStatus.FAILED:
        error = {"code": "run_ended", "message": outcome.message, "step_id": row.step_id}
        finish_run(work, RunStatus.FAILED, now=now, error=error, result=outcome.output)
        return
    if outcome.output is not None or not plan.has_output:
        finish_run(work, RunStatus.COMPLETED, now=now, result=outcome.output)
        return
    work.flush_rows()
    rows = list(StepRun.objects.filter(run_id=work.run.id, parent__isnull=True))
    complete_run(work, plan, rows, now)


def close_quietly(row: StepRun, outcome, error, attempt: Attempt, now) -> None:
    """Close a step whose run ended while it ran: its outcome is kept for the record, no event is written."""
    if error is None and outcome is not None and outcome.kind == "completed":
        row.status = StepStatus.COMPLETED
        row.output_data = outcome.output
        row.attempts = [*row.attempts, attempt_entry(row, "completed", None, attempt)]
    else:
        error_data = error.as_dict() if error else {"code": "run_ended", "message": "The run ended first."}
        row.status = StepStatus.FAILED if error else StepStatus.CANCELLED
        row.error = error_data if error else None
        row.attempts = [*row.attempts, attempt_entry(row, row.status, error_data, attempt)]
    row.completed_at = now
    row.wake_at = None
    row.save()


def terminate_step(row: StepRun, now, attempt: Attempt | None = None) -> None:
    """End a step of a terminated run `cancelled`, with error code `terminated`."""
    error = {"code": "terminated", "message": f"Step '{row.step_id}' was stopped: the run was terminated."}
    row.status = StepStatus.CANCELLED
    row.error = error
    row.completed_at = now
    row.wake_at = None
    row.attempts = [*row.attempts, attempt_entry(row, "cancelled", error, attempt)]
    row.save()
