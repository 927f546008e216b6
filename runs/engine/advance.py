"""Advancing a run: decide what can happen next under its row lock, and dispatch it (idempotent).

Invariants (docs/engine.md): every change to a run or its step runs happens in a transaction that first
locks the run row, so a run has one writer at a time and `RunEvent.seq` stays gapless.
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from runs.choices import STEP_FINISHED, EventType, RunStatus, SkipReason, StepStatus
from runs.engine import secrets as engine_secrets
from runs.engine.dispatch import dispatch
from runs.engine.outcomes import (
    Attempt,
    attempt_entry,
    cancel_unstarted,
    complete_run,
    finish_run,
    run_error,
    skip,
    step_failed,
)
from runs.engine.plan import Plan, plan_for
from runs.engine.resolve import template_error, variables_for
from runs.engine.templating import evaluate_expression
from runs.engine.unit_of_work import UnitOfWork, current_rows, lock_run, queue_rows
from runs.models import StepRun


def advance(run_id: str) -> list[str]:
    """Decide what can happen next in the run and dispatch it; idempotent. Returns the dispatched ids."""
    with transaction.atomic():
        work = lock_run(run_id)
        ready = advance_locked(work)
        work.save()
        dispatch(ready)
    return ready


def advance_locked(
    work: UnitOfWork, *, admit: bool = False, rows: dict[str, StepRun] | None = None
) -> list[str]:
    """The body of `advance` (the caller holds the run lock and saves the work); returns ready step ids.

    A `queued` run only starts with `admit=True`: admission (runs/concurrency.py) decides when a run fits
    its concurrency limits. `rows`: the run's top-level rows in hand and current (see `ready_rows`)."""
    return queue_rows(ready_rows(work, admit=admit, rows=rows))


def first_advance(
    work: UnitOfWork, rows: dict[str, StepRun], policy: dict | None = None
) -> list[StepRun] | None:
    """The first advance of a new run whose rows are not written yet (admitted: nothing counts it), made in
    memory when all it does is start the run and queue the steps that depend on none: no such step has a
    `when` to evaluate (or skip by), and the security policy lets the run start. Returns the queued rows;
    None, having changed nothing, otherwise (the caller writes the rows, then advances as usual). `rows`:
    every top-level row, pending; `policy`: the organisation's security policy (at least its
    max_run_duration_seconds and max_steps_per_run), when the caller read it already."""
    run = work.run
    plan = plan_for(run)
    if not plan.order or any(
        plan.steps[step_id].get("when") is not None for step_id in plan.order if not plan.deps[step_id]
    ):
        return None
    limits = engine_secrets.run_limits(run, policy)
    if limits.violation is not None:
        return None
    return ready_rows(work, admit=True, rows=rows, limits=limits)


def ready_rows(
    work: UnitOfWork,
    *,
    admit: bool = False,
    rows: dict[str, StepRun] | None = None,
    limits: engine_secrets.RunLimits | None = None,
) -> list[StepRun]:
    """advance_locked's decisions; the ready rows are returned `queued` in memory but not yet saved, and the
    run's top-level rows are kept as `work.rows` for the next step's template variables. `rows`: the
    top-level rows in hand, current because every change of this transaction went through them (the
    instant steps' loop), instead of reading them again. `limits`: the run's, when starting it, if the
    caller has them."""
    run = work.run
    if run.is_terminal:
        return []
    now = timezone.now()
    if run.cancel_requested_at is not None:
        cancel_unstarted(work, now)
        if not StepRun.objects.filter(run_id=run.id, status=StepStatus.RUNNING).exists():
            finish_run(work, RunStatus.CANCELLED, now=now)
        return []
    if run.status == RunStatus.QUEUED:
        if not admit:
            return []
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or now  # a resumed run keeps its first start
        # The security policy's max_run_duration_seconds (capped by the setting) and max_steps_per_run.
        limits = limits or engine_secrets.run_limits(run)
        run.deadline_at = now + timedelta(seconds=limits.max_duration_seconds)
        work.emit(EventType.RUN_STARTED)
        if limits.violation is not None:
            finish_run(work, RunStatus.FAILED, now=now, error=limits.violation)
            return []

    plan = plan_for(run)
    # Every top-level row, once per advance, with only the columns deciding (and claiming) needs; those
    # unchanged since the unit of work last read them are not made again (`current_rows`).
    if rows is None:
        rows = current_rows(work)
    work.rows = rows
    if run.pause_requested_at is not None and any(row.status not in STEP_FINISHED for row in rows.values()):
        settle_pause(work)  # nothing new starts; paused once no step runs
        return []
    variables = None
    ready: list[StepRun] = []
    for step_id in plan.order:
        row = rows[step_id]
        if row.status != StepStatus.PENDING:
            continue
        deps = plan.deps[step_id]
        if any(rows[dep].status not in STEP_FINISHED for dep in deps):
            continue
        blocking = [
            dep
            for dep in deps
            if rows[dep].status == StepStatus.FAILED and plan.steps[dep].get("on_failure") != "continue"
        ]
        if blocking:  # normally the run already failed when that step failed
            failed = rows[blocking[0]]
            finish_run(work, RunStatus.FAILED, now=now, error=run_error(failed))
            return []
        if deps and all(_skipped_branch(rows[dep]) for dep in deps):
            skip(work, row, SkipReason.UPSTREAM_SKIPPED, now)
            continue
        if _branch_not_taken(plan, rows, step_id):
            skip(work, row, SkipReason.BRANCH_NOT_TAKEN, now)
            continue
        when = plan.steps[step_id].get("when")
        if when is not None:
            if variables is None:
                variables = variables_for(run, plan, list(rows.values()))
            try:
                go = evaluate_expression(when, variables) if isinstance(when, str) else when
            except Exception as exc:
                # A Jinja message may quote a value (`steps[secrets.X]`): redacted like any stored error.
                error = engine_secrets.redact_when_error(
                    run.organization_id, template_error(step_id, "when", exc)
                )
                row.attempts = [
                    *row.attempts,
                    attempt_entry(row, "failed", error.as_dict(), Attempt("", now)),
                ]
                if step_failed(work, row, plan.steps[step_id], error.as_dict(), now):
                    return []
                variables = None
                continue
            if not go:
                skip(work, row, SkipReason.WHEN_FALSE, now)
                variables = None
                continue
        row.status = StepStatus.QUEUED
        row.queued_at = row.dispatched_at = now
        ready.append(row)

    if ready:
        return ready
    if any(row.status not in STEP_FINISHED for row in rows.values()):
        return []
    # Every top-level step finished, so every iteration did too (a loop finishes after its iterations).
    complete_run(work, plan, list(rows.values()), now, all_finished=True)
    return []


def settle_pause(work: UnitOfWork) -> None:
    """A run asked to pause becomes `paused` once none of its steps is running or queued. Its duration
    limit stops with it (deadline cleared; a resume starts a new one)."""
    run = work.run
    if run.status == RunStatus.PAUSED:
        return
    busy = StepRun.objects.filter(run_id=run.id, status__in=(StepStatus.RUNNING, StepStatus.QUEUED))
    if busy.exists():
        return
    run.status = RunStatus.PAUSED
    run.deadline_at = None
    work.emit(EventType.RUN_PAUSED)


def _skipped_branch(row: StepRun) -> bool:
    """A dependency that did not happen. Dry-run skips count as done: the rest of the plan still runs."""
    if row.status == StepStatus.SKIPPED:
        return row.skip_reason != SkipReason.DRY_RUN
    return row.status == StepStatus.CANCELLED


def _branch_not_taken(plan: Plan, rows: dict[str, StepRun], step_id: str) -> bool:
    for dep in plan.deps[step_id]:
        step = plan.steps[dep]
        if step["type"] != "condition" or rows[dep].status != StepStatus.COMPLETED:
            continue
        taken = bool((rows[dep].output_data or {}).get("result"))
        other = step["config"].get("else" if taken else "then", [])
        if step_id in other:
            return True
    return False
