"""How steps and runs end: a step completed, failed or skipped, a run finished; events and audit follow.

Every function here works on a locked run's unit of work (unit_of_work.py) and the step rows in hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from accounts.principal import SYSTEM
from runs.choices import RUN_TERMINAL_EVENTS, EventType, RunStatus, StepStatus
from runs.engine import secrets as engine_secrets
from runs.engine import subworkflows
from runs.engine.context import StepError, StepOutcome
from runs.engine.dispatch import request_admission
from runs.engine.plan import Plan
from runs.engine.resolve import iso, variables_for
from runs.engine.templating import render_value
from runs.engine.unit_of_work import UnitOfWork, save_step
from runs.models import StepRun

# Steps waiting for a person (approval, input): not started work either, so a run that ends cancels them.
PERSON_WAIT = (StepStatus.AWAITING_APPROVAL, StepStatus.AWAITING_INPUT)
UNSTARTED = (StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING, *PERSON_WAIT)


@dataclass(frozen=True)
class Attempt:
    """One execution of a step's handler: its lease token ("" for an instant step), start and duration."""

    token: str
    started_at: datetime | None
    duration_ms: int = 0


def event_data(row: StepRun, **extra) -> dict:
    data = {"step_run_id": row.id, "type": row.type}
    if row.iteration is not None:
        data["iteration"] = row.iteration
    data.update(extra)
    return data


def attempt_entry(row: StepRun, status: str, error, attempt: Attempt | None = None) -> dict:
    """The entry of `row.attempts` recording the attempt that just ended."""
    started_at = attempt.started_at if attempt else (row.started_at if row.attempt <= 1 else None)
    return {
        "attempt": row.attempt,
        "status": status,
        "error": error,
        "duration_ms": attempt.duration_ms if attempt else 0,
        "started_at": iso(started_at),
    }


def _token_counts(tokens) -> dict[str, int]:
    if not isinstance(tokens, dict):
        return {}
    return {k: v for k, v in tokens.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def charge(work: UnitOfWork, row: StepRun, outcome: StepOutcome | None, error: StepError | None) -> bool:
    """Add an attempt's LLM tokens and cost to the step's and the run's totals: an outcome's, and a failed
    attempt's (its error's `details.tokens` and `details.cost_usd`). True when anything was added."""
    run = work.run
    details = (error.details or {}) if error is not None else {}
    sources = [(details.get("tokens"), details.get("cost_usd"))]
    if outcome is not None:
        sources.append((outcome.tokens, outcome.cost_usd))
    charged = False
    for tokens, cost in sources:
        counts = _token_counts(tokens)
        if counts:
            current = _token_counts(row.tokens)
            row.tokens = {**current, **{key: current.get(key, 0) + value for key, value in counts.items()}}
            run.total_tokens += counts.get("total", 0)
            charged = True
        if isinstance(cost, int | float | Decimal) and not isinstance(cost, bool) and cost > 0:
            amount = Decimal(str(cost))
            row.cost_usd += amount
            run.cost_usd += amount
            charged = True
    return charged


def complete_step(
    work: UnitOfWork, row: StepRun, outcome: StepOutcome, now, attempt: Attempt | None = None, *, defer=False
) -> None:
    """Store a completed outcome on the row and emit `step_completed`. `defer`: an instant top-level step,
    whose row is saved with the others by `work.flush_rows()` instead of now."""
    row.status = StepStatus.COMPLETED
    row.output_data = outcome.output
    row.error = None
    row.completed_at = now
    row.wake_at = None
    row.state = {}
    row.attempts = [*row.attempts, attempt_entry(row, "completed", None, attempt)]
    duration_ms = attempt.duration_ms if attempt else 0
    charge(work, row, outcome, None)
    if defer:
        work.unsaved_rows.append(row)
    else:
        save_step(row)
    work.emit(
        EventType.STEP_COMPLETED, row.step_id, event_data(row, attempt=row.attempt, duration_ms=duration_ms)
    )


def step_failed(work: UnitOfWork, row: StepRun, policy: dict, error: dict, now) -> bool:
    """Mark the step failed for good; True when that failed the run."""
    row.status = StepStatus.FAILED
    row.error = error
    row.completed_at = now
    row.wake_at = None
    save_step(row)
    work.emit(EventType.STEP_FAILED, row.step_id, event_data(row, attempt=row.attempt, error=error))
    if row.parent_id is None and policy.get("on_failure") != "continue":
        finish_run(work, RunStatus.FAILED, now=now, error=run_error(row))
        return True
    return False


def skip(work: UnitOfWork, row: StepRun, reason: str, now, input_data=None) -> None:
    row.status = StepStatus.SKIPPED
    row.skip_reason = reason
    row.completed_at = now
    fields = ["status", "skip_reason", "completed_at"]
    if input_data is not None:
        row.input_data = input_data
        fields.append("input_data")
    row.save(update_fields=fields)
    work.emit(EventType.STEP_SKIPPED, row.step_id, event_data(row, reason=reason))


def run_error(row: StepRun) -> dict:
    """The run's error when step `row` failed it."""
    error = row.error or {}
    return {
        "code": error.get("code", "step_failed"),
        "message": error.get("message", f"Step '{row.step_id}' failed."),
        "step_id": row.step_id,
    }


def cancel_unstarted(work: UnitOfWork, now) -> None:
    StepRun.objects.filter(run_id=work.run.id, status__in=UNSTARTED).update(
        status=StepStatus.CANCELLED, completed_at=now, wake_at=None
    )


def complete_run(work: UnitOfWork, plan: Plan, rows: list[StepRun], now, *, all_finished=False) -> None:
    """Complete the run with the definition's `output` rendered as its result (failed: output_error)."""
    result = None
    if plan.has_output:
        try:
            result = render_value(plan.output, variables_for(work.run, plan, rows))
        except Exception as exc:
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            error = {
                "code": "output_error",
                "message": f"The workflow output could not be rendered: {detail}",
            }
            finish_run(work, RunStatus.FAILED, now=now, error={**error, "step_id": None})
            return
    finish_run(work, RunStatus.COMPLETED, now=now, result=result, all_finished=all_finished)


def finish_run(work: UnitOfWork, status: str, *, now, result=None, error=None, all_finished=False) -> None:
    """Make the run terminal: unstarted steps are cancelled, running ones may still record their outcome.
    `all_finished`: the caller knows every step finished (no UPDATE to cancel the unstarted ones)."""
    run = work.run
    if not all_finished:
        cancel_unstarted(work, now)
    result, error = engine_secrets.redact_run_outcome(run.organization_id, result, error)
    run.status = status
    run.completed_at = now
    run.pause_signal = None  # nobody is asked anything any more
    run.result = result
    run.error = error
    data = {"status": status}
    if error:
        data["error"] = error
    if status == RunStatus.CANCELLED and run.terminate_requested_at is not None:
        data["terminated"] = True
    work.emit(RUN_TERMINAL_EVENTS[status], data=data)
    # A slot is free: admit queued runs in a transaction of its own after this one commits (never here:
    # admission locks the organisation first, and this transaction already holds a run lock).
    request_admission(run.organization_id)
    # Sub-workflows: wake the parent step waiting for this run, cancel children (after commit, see there).
    subworkflows.on_run_finished(run, status)
    if status in (RunStatus.COMPLETED, RunStatus.FAILED):
        # Appended by `work.save()`, last: the append locks the organisation's audit chain until this
        # transaction commits, and every run's outcome of the organisation waits for that lock.
        work.audit.append(
            {
                "organization": run.organization_id,
                "event": f"run.{status}",
                "actor": SYSTEM,
                "target": ("run", run.id),
                "data": {"workflow_id": run.workflow_id, **({"error": error} if error else {})},
                "run_id": run.id,
            }
        )
