"""Executing one step run: claim it with a lease, run its handler, record the outcome, continue.

A worker owns a step run only through its lease token (`lease_owner`); a result recorded with a stale
token (the step was reclaimed meanwhile) is discarded. Handlers run outside any transaction, except those
of instant steps (pure and quick: transform, condition, end), which run under the run lock in the
transaction that found them ready, for at most BATON_INSTANT_STEPS_MS (docs/engine.md).
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from dataclasses import replace
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from runs.choices import EventType, StepStatus
from runs.engine import monitor, slots
from runs.engine import secrets as engine_secrets
from runs.engine.advance import advance_locked, ready_rows
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.control import unclaim_paused
from runs.engine.dispatch import dispatch
from runs.engine.outcomes import Attempt, attempt_entry, charge, event_data
from runs.engine.plan import plan_for, step_definition
from runs.engine.record import Execution, apply_outcome, attempt_failed, close_quietly, terminate_step
from runs.engine.resolve import as_json, has_side_effects, resolve_config, variables_for
from runs.engine.templating import render_value
from runs.engine.unit_of_work import (
    UnitOfWork,
    claim_step,
    keep_rows,
    lock_for_record,
    lock_run,
    queue_rows,
    read_for_claim,
    read_step,
)
from runs.models import Run, StepRun
from workflows.steps import get_step_type

logger = logging.getLogger("baton.engine")

LEASE_GRACE_SECONDS = 30
# A worker continues straight into the next ready step, but not forever: after this long it rings the
# doorbell instead, so one django-q2 task stays well below the cluster's task timeout.
INLINE_CONTINUE_SECONDS = 30.0
_HOST = f"{socket.gethostname()}:{os.getpid()}"

# A claimed step: the unit of work of the claim (its `rows` feed the step's variables), the row, the token.
Claimed = tuple[UnitOfWork, StepRun, str]


def step_execute(step_run_id: str) -> None:
    """Claim the step run, execute it, record the outcome, advance; continue into a single next step.
    An instant step is executed within its claim's transaction (and whatever instant steps it readies)."""
    deadline = time.monotonic() + INLINE_CONTINUE_SECONDS
    claimed = claim(step_run_id, timezone.now())
    while claimed is not None:
        if _hand_to_slot(claimed, deadline):
            return  # an I/O slot of this process executes it (runs/engine/slots.py)
        claimed = _execute_claimed(claimed, may_continue=time.monotonic() < deadline)


def _is_io_bound(type_name: str) -> bool:
    step_type = get_step_type(type_name)
    return step_type is not None and step_type.io_bound


def _hand_to_slot(claimed: Claimed, deadline: float) -> bool:
    """Hand a claimed I/O-bound step to one of this worker process's slots, which executes and records it
    (and continues into the next step while that is I/O-bound too); False: execute it here."""
    slots_ = slots.current()
    step_run = claimed[1]
    if slots_ is None or slots_.draining or not _is_io_bound(step_run.type) or _not_queued():
        return False
    # The heartbeat starts now: the step is ours from the claim on, even while it waits for a free slot.
    watch = _watch(claimed)

    def in_slot(claimed=claimed, watch=watch):
        while claimed is not None:
            may_continue = time.monotonic() < deadline and not slots.draining()
            claimed = _execute_claimed(
                claimed, may_continue=may_continue, continue_into=_is_io_bound, watch=watch
            )
            watch = None

    if slots_.submit(in_slot):
        return True
    monitor.unwatch(watch)
    return False


def _not_queued() -> bool:
    """Steps dispatched inline or by hand (tests) are executed where they are, never in slots."""
    return settings.BATON_ENGINE_DISPATCH != "queue"


def _watch(claimed: Claimed) -> monitor.Watch:
    work, step_run, token = claimed
    policy = step_definition(plan_for(work.run), step_run)[1]
    return monitor.watch(step_run.id, work.run.id, token, lease_seconds(policy))


def lease_seconds(policy: dict) -> int:
    """How long a claim (and each heartbeat, see monitor.py) holds a step: its timeout + grace, at most
    BATON_STEP_LEASE_SECONDS. The heartbeat keeps extending it while the worker lives, so a dead worker
    loses a long step after one lease instead of after its whole timeout."""
    timeout = policy.get("timeout_seconds")
    lease = settings.BATON_STEP_LEASE_SECONDS
    return min(timeout + LEASE_GRACE_SECONDS, lease) if timeout else lease


def claim(step_run_id: str, now) -> Claimed | None:
    """Claim a queued step for this worker (an instant one is executed here, in the claim's transaction);
    None for a duplicate or stale message, or when nothing is left to continue into."""
    with transaction.atomic():
        # The run's rows are read with the lock in one round trip: an instant step's inputs and advance, a
        # leased step's template variables, and what its record's advance reuses (`UnitOfWork.carry`).
        run, row, fetched = read_for_claim(step_run_id)
        if run is None or row is None or row["status"] != StepStatus.QUEUED:
            return None  # a duplicate or stale message: nothing to do
        work = UnitOfWork(run)
        rows = keep_rows(work, fetched)  # also the variables of the step claimed (`work.rows`)
        instant = _is_instant(row["type"])
        if row["parent_id"] is not None:
            rows = None
        if run.is_terminal or run.cancel_requested_at is not None:
            StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).update(
                status=StepStatus.CANCELLED, completed_at=now
            )
            ready = advance_locked(work)
            work.save()
            dispatch(ready)
            return None
        if run.pause_requested_at is not None:
            unclaim_paused(work, step_run_id, now)
            work.save()
            return None
        if instant:
            # Executed here, under the lock this claim holds, and recorded in this same transaction.
            budget = _instant_budget()
            if rows is not None:
                step_run = rows[row["step_id"]]
                step_run = step_run if step_run.id == step_run_id else None
            else:
                step_run = StepRun.objects.filter(pk=step_run_id).first()
            if step_run is None or step_run.status != StepStatus.QUEUED:
                return None
            ready = _execute_instant(work, step_run, rows)
            return _advance_and_continue(work, ready, now, may_continue=True, budget=budget, rows=rows)
        step_run = read_step(step_run_id, StepStatus.QUEUED)
        if step_run is None:
            return None
        claimed = _claim_row(work, step_run, now, StepStatus.QUEUED)
        work.save()
    return claimed


def _any_type(type_name: str) -> bool:
    return True


def _claim_queued(work: UnitOfWork, step_run_id: str, now, accepts=_any_type) -> Claimed | None:
    """Compare-and-set a queued step to running with a fresh lease token (the caller holds the run lock)."""
    step_run = read_step(step_run_id, StepStatus.QUEUED)
    if step_run is None or not accepts(step_run.type):
        return None
    return _claim_row(work, step_run, now, StepStatus.QUEUED)


def _claim_row(work: UnitOfWork, step_run: StepRun, now, expected: str) -> Claimed | None:
    """Claim a step run in hand whose stored status is `expected`: `queued`, or `pending` when a record
    continues straight into a step it just found ready (it is never stored as `queued` then)."""
    lease = lease_seconds(step_definition(plan_for(work.run), step_run)[1])
    token = f"{_HOST}:{uuid.uuid4().hex[:12]}"
    if not claim_step(step_run.id, expected, token, now + timedelta(seconds=lease), now):
        return None
    step_run.status = StepStatus.RUNNING
    step_run.lease_owner = token
    step_run.attempt += 1
    step_run.started_at = step_run.started_at or now
    if not step_run.state.get("suspended"):
        work.emit(EventType.STEP_STARTED, step_run.step_id, event_data(step_run, attempt=step_run.attempt))
    return work, step_run, token


def _execute_claimed(
    claimed: Claimed, *, may_continue: bool, continue_into=None, watch: monitor.Watch | None = None
) -> Claimed | None:
    """Execute a claimed step and record it; returns the next step, already claimed, to continue into
    (only a step whose type `continue_into` accepts, when given)."""
    work, step_run, token = claimed
    run = work.run
    # Heartbeat and terminate signal while this thread works on the step (runs/engine/monitor.py).
    watch = watch or _watch(claimed)
    try:
        execution = run_handler(run, step_run, work.rows, token, watch.should_stop)
    finally:
        monitor.unwatch(watch)
    return _record(work, step_run.id, execution, may_continue, continue_into)


def _never_stop() -> bool:
    return False


def run_handler(run: Run, step_run: StepRun, rows, token: str, should_stop=_never_stop) -> Execution:
    """Resolve the step's config and execute its handler (outside any transaction, except for an instant
    step); errors become the execution's error, secrets are redacted from everything to be stored. `rows`:
    the run's top-level rows in hand, for the variables (else they are read)."""
    now = timezone.now()
    plan = plan_for(run)
    step, policy = step_definition(plan, step_run)
    started = time.monotonic()
    input_data = None
    outcome: StepOutcome | None = None
    error: StepError | None = None
    dry_run_skip = False
    security = engine_secrets.begin_execution(run.organization_id)  # secrets and policy, loaded once
    try:
        step_type = get_step_type(step_run.type)
        variables = variables_for(run, plan, list(rows.values()) if rows is not None else None)
        if step_run.parent_id is not None:
            variables = {**variables, "item": step_run.state.get("item"), "index": step_run.iteration}
        input_data = as_json(resolve_config(step, variables), step_run.step_id, "config")
        if run.dry_run and has_side_effects(step_run.type, input_data):
            dry_run_skip = True
        else:
            if step_type is None or step_type.execute is None:
                raise StepError(
                    "step_type_not_available",
                    f"Step '{step_run.step_id}' has type '{step_run.type}', which this Baton version cannot "
                    "execute yet.",
                    retryable=False,
                )
            timeout = policy.get("timeout_seconds")
            deadline = now + timedelta(seconds=timeout or settings.BATON_STEP_LEASE_SECONDS)
            context = StepContext(
                run_id=run.id,
                step_run_id=step_run.id,
                step_id=step_run.step_id,
                step_type=step_run.type,
                config=input_data,
                step=step,
                attempt=step_run.attempt,
                deadline=deadline,
                now=now,
                dry_run=run.dry_run,
                variables=variables,
                state=dict(step_run.state),
                organization_id=run.organization_id,
                render=lambda value, variables=variables: render_value(value, variables),
                run_model=run.model,
                should_stop=should_stop,
            )
            outcome = step_type.execute(context)
            if timeout and timezone.now() > deadline:
                raise StepError(
                    "step_timeout", f"Step '{step_run.step_id}' took longer than its {timeout} s timeout."
                )
            if not isinstance(outcome, StepOutcome):
                outcome = StepOutcome.completed(outcome)
            if outcome.output is not None:
                outcome = replace(outcome, output=as_json(outcome.output, step_run.step_id, "output"))
    except StepError as exc:
        error = exc
    except Exception as exc:
        logger.exception("step %s (%s) raised", step_run.id, step_run.type)
        error = StepError("step_error", f"Step '{step_run.step_id}' raised {type(exc).__name__}: {exc}")
    # What the handler resolved itself (an agent step's prompt and model) is stored with the resolved config.
    extra = getattr(error, "input_extra", None) or (outcome.input_extra if outcome is not None else None)
    if extra and isinstance(input_data, dict):
        input_data = {**input_data, **as_json(extra, step_run.step_id, "input")}
    # Secret values and redact_patterns matches become *** in everything stored; the loop step cap.
    input_data, outcome, error = engine_secrets.finish_execution(security, run, input_data, outcome, error)
    duration_ms = int((time.monotonic() - started) * 1000)
    attempt = Attempt(token=token, started_at=now, duration_ms=duration_ms)
    return Execution(attempt, outcome, error, input_data, dry_run_skip)


def _record(
    claimed_by: UnitOfWork, step_run_id, execution: Execution, may_continue=False, continue_into=None
) -> Claimed | None:
    """Store the outcome of an attempt and advance. When exactly one step became ready (and `may_continue`),
    claim it in the same transaction and return it, saving this worker a queue round trip; instant steps
    that became ready are executed here first. `claimed_by`: the unit of work of the claim, whose rows
    the advance reuses where they did not change meanwhile."""
    outcome, error, attempt = execution.outcome, execution.error, execution.attempt
    with transaction.atomic():
        work, row = lock_for_record(claimed_by.run.id, step_run_id, attempt.token)
        work.carry(claimed_by)
        run = work.run
        if row is None:
            logger.info("step run %s was reclaimed; its late result is discarded", step_run_id)
            return None
        now = timezone.now()
        row.lease_owner = ""
        row.lease_expires_at = None
        if execution.input_data is not None:
            row.input_data = execution.input_data
        if run.is_terminal:
            # The run ended while this step ran (failed elsewhere, ended, timed out): keep the outcome for
            # the record, but start nothing and write no event after the run's terminal one.
            charged = charge(work, row, outcome, error)  # tokens spent count even so (docs/quotas.md)
            close_quietly(row, outcome, error, attempt, now)
            if charged:
                work.save()
            return None
        if run.terminate_requested_at is not None:
            # Terminated while running (the handler was told to stop, a script was killed): whatever it
            # returned, the step ends cancelled; the run is cancelled once no step is running.
            charge(work, row, outcome, error)
            terminate_step(row, now, attempt)
            ready = advance_locked(work)
            work.save()
            dispatch(ready)
            return None
        budget = _instant_budget()
        ready = apply_outcome(work, row, execution, now)
        return _advance_and_continue(
            work, ready, now, may_continue=may_continue, budget=budget, continue_into=continue_into
        )


def _instant_budget() -> float:
    """The time.monotonic() until which this transaction may execute instant steps that become ready, under
    the run lock, before the ones left are queued or continued into as usual (BATON_INSTANT_STEPS_MS; 0:
    never). On SQLite the transaction holds the one write lock."""
    return time.monotonic() + settings.BATON_INSTANT_STEPS_MS / 1000


def _is_instant(type_name: str) -> bool:
    step_type = get_step_type(type_name)
    return step_type is not None and step_type.instant and settings.BATON_INSTANT_STEPS_MS > 0


def _execute_instant(work: UnitOfWork, row: StepRun, rows: dict[str, StepRun] | None) -> list[str]:
    """Execute an instant step under the run lock the caller holds and record its outcome in the caller's
    transaction: no lease, no claim of its own (nothing else can see the step until this commits). `row`
    is stored as pending or queued; `rows` are the run's top-level rows in hand, for its variables."""
    now = timezone.now()
    row.status = StepStatus.RUNNING
    row.attempt += 1
    row.started_at = row.started_at or now
    row.queued_at = row.queued_at or now
    row.dispatched_at = None
    row.wake_at = None
    work.emit(EventType.STEP_STARTED, row.step_id, event_data(row, attempt=row.attempt))
    execution = run_handler(work.run, row, rows, token="")
    if execution.input_data is not None:
        row.input_data = execution.input_data
    return apply_outcome(work, row, execution, timezone.now(), instant=True)


def _advance_and_continue(
    work: UnitOfWork,
    ready: list[str],
    now,
    *,
    may_continue: bool,
    budget: float,
    rows: dict | None = None,
    continue_into=None,
) -> Claimed | None:
    """After an outcome was stored on a locked run: advance it, execute the instant steps that became ready
    (until `budget`, a time.monotonic() deadline, passes), claim one step to continue into when exactly one
    is ready (and `may_continue`), queue the others; saves the work and dispatches after commit. `rows`:
    the run's top-level rows in hand, current (else they are read). The last database work of its caller's
    transaction, whose COMMIT goes with the run's writes (`work.save(last=True)`)."""
    run = work.run
    may_continue = may_continue and run.pause_requested_at is None
    fresh = ready_rows(work, rows=rows) if not run.is_terminal else []
    while may_continue and not run.is_terminal and time.monotonic() < budget:
        instant = [row for row in fresh if _is_instant(row.type)]
        if not instant:
            break
        fresh = [row for row in fresh if not _is_instant(row.type)]
        rows = work.rows
        for row in instant:
            if run.is_terminal:
                break
            ready += _execute_instant(work, row, rows)
        if run.is_terminal:
            fresh = []  # still pending in the database, where finishing the run cancelled them
            break
        fresh += ready_rows(work, rows=rows)
    following = None
    accepts = continue_into or _any_type
    if may_continue and not ready and len(fresh) == 1 and not run.is_terminal and accepts(fresh[0].type):
        # Exactly one step became ready: claim it straight from pending (one UPDATE) and continue.
        following = _claim_row(work, fresh[0], now, StepStatus.PENDING)
    if following is None:
        ready += queue_rows(fresh)
        if len(ready) == 1 and may_continue and not run.is_terminal:
            following = _claim_queued(work, ready[0], now, accepts)
    work.save(last=True)  # the callers return what this returns from their outermost transaction
    dispatch(ready if following is None else [])  # after commit (`on_commit`): no database work here
    return following


def step_reclaim(step_run_id: str) -> bool:
    """Fail the attempt of a running step whose lease expired (retrying per policy); True if reclaimed.
    Called by the reconciler, under the run lock with a compare-and-set."""
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        work = lock_run(run_id)
        run = work.run
        now = timezone.now()
        row = (
            StepRun.objects.select_for_update()
            .filter(pk=step_run_id, status=StepStatus.RUNNING, lease_expires_at__lt=now)
            .first()
        )
        if row is None:
            return False
        policy = step_definition(plan_for(run), row)[1]
        error = StepError(
            "lease_expired",
            f"The worker running step '{row.step_id}' stopped responding (its lease expired).",
        )
        row.lease_owner = ""
        row.lease_expires_at = None
        if run.terminate_requested_at is not None and not run.is_terminal:
            terminate_step(row, now)  # its worker died after the run was terminated: nothing to retry
            ready = advance_locked(work)
            work.save()
            dispatch(ready)
            return True
        row.attempts = [*row.attempts, attempt_entry(row, "failed", error.as_dict())]
        if run.is_terminal:  # nothing to retry for: just close the step
            row.status = StepStatus.FAILED
            row.error = error.as_dict()
            row.completed_at = now
            row.save()
            return True
        ready = attempt_failed(work, row, policy, error, now)
        if not run.is_terminal:
            ready += advance_locked(work)
        work.save()
        dispatch(ready)
    return True
