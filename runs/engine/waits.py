"""Steps waiting for a timer or a person (approval, input; docs/approvals.md).

The run's status follows its steps waiting for a person (`sync_awaiting`); an answer requeues the step so
its handler turns the answer into the step's outcome (`person_answered`, `approval_record`); the reconciler
wakes timers that fell due and settles waits past their timeout (`step_wake`).
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from accounts.principal import SYSTEM
from audit.services import audit_record
from runs.choices import EventType, RunStatus, StepStatus
from runs.engine import secrets as engine_secrets
from runs.engine.dispatch import dispatch
from runs.engine.outcomes import PERSON_WAIT, event_data
from runs.engine.plan import plan_for
from runs.engine.resolve import iso
from runs.engine.unit_of_work import UnitOfWork, lock_run
from runs.models import StepRun

AWAITING_STATUS = {"approval": StepStatus.AWAITING_APPROVAL, "input": StepStatus.AWAITING_INPUT}
_AWAITING_EVENT = {"approval": EventType.RUN_AWAITING_APPROVAL, "input": EventType.RUN_AWAITING_INPUT}
_RUN_AWAITING = {
    StepStatus.AWAITING_APPROVAL: RunStatus.AWAITING_APPROVAL,
    StepStatus.AWAITING_INPUT: RunStatus.AWAITING_INPUT,
}


def await_person(work: UnitOfWork, row: StepRun, now) -> None:
    """A step started waiting for a person: `run_awaiting_*` event, and the run's status follows."""
    signal = row.state.get("signal") or {}
    work.emit(_AWAITING_EVENT[row.state["awaiting"]], row.step_id, event_data(row, pause_signal=signal))
    sync_awaiting(work, now)


def sync_awaiting(work: UnitOfWork, now) -> None:
    """Make a locked run's status and `pause_signal` follow its steps waiting for a person: awaiting_approval
    or awaiting_input with the signal of the step named so far (else the first waiting one in plan order),
    or `running` again when none waits. Waiting time does not count against the run's duration limit: the
    deadline is cleared while waiting and starts anew afterwards. Runs queued, paused or finished are left
    alone. The caller saves the run."""
    run = work.run
    if run.status not in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_INPUT):
        return
    waiting = {
        row.step_id: row
        for row in StepRun.objects.filter(run_id=run.id, parent__isnull=True, status__in=PERSON_WAIT).only(
            "id", "step_id", "status", "state"
        )
    }
    if not waiting:
        if run.status != RunStatus.RUNNING:
            run.status = RunStatus.RUNNING
            run.pause_signal = None
            run.deadline_at = now + timedelta(seconds=engine_secrets.run_limits(run).max_duration_seconds)
        return
    named = (run.pause_signal or {}).get("step_id")
    if named not in waiting:
        named = next(step_id for step_id in plan_for(run).order if step_id in waiting)
    row = waiting[named]
    run.status = _RUN_AWAITING[row.status]
    run.pause_signal = row.state.get("signal")
    run.deadline_at = None


def person_answered(work: UnitOfWork, row: StepRun, now, *, state: dict, output=None) -> None:
    """A locked step waiting for a person has its answer (`state` holds it, with `outcome`): requeue it so
    its handler turns the answer into the step's outcome; the run's status follows the steps still waiting."""
    row.state = {**row.state, **state}
    fields = ["state", "status", "wake_at", "dispatched_at"]
    if output is not None:
        row.output_data = output
        fields.append("output_data")
    row.status = StepStatus.QUEUED
    row.wake_at = None
    row.dispatched_at = now
    row.save(update_fields=fields)
    sync_awaiting(work, now)
    dispatch([row.id])


def approval_record(work: UnitOfWork, row: StepRun, decision: dict, now) -> str | None:
    """Add `decision` ({by, by_type, approved, note, at}) to a locked step awaiting approval. Returns the
    outcome it settles — "rejected" (any rejection), "approved" (`required_approvals` reached, or the
    system's timeout decision) — and then requeues the step; None while more approvals are needed. The
    decisions so far are the step's output meanwhile."""
    decisions = [*(row.state.get("decisions") or []), decision]
    required = (row.input_data or {}).get("required_approvals", 1)
    if not decision["approved"]:
        outcome = "rejected"
    elif decision.get("by_type") == "system" or sum(1 for d in decisions if d["approved"]) >= required:
        outcome = "approved"
    else:
        outcome = None
    output = {"approved": outcome == "approved", "decisions": decisions}
    if outcome is None:
        row.state = {**row.state, "decisions": decisions}
        row.output_data = output
        row.save(update_fields=["state", "output_data"])
    else:
        person_answered(work, row, now, state={"decisions": decisions, "outcome": outcome}, output=output)
    return outcome


def step_wake(step_run_id: str) -> bool:
    """Requeue a waiting step whose timer is due (wait step, retry backoff), or settle a step waiting for a
    person whose timeout passed (approval: its `on_timeout`; input: `input_timeout`); True if acted on."""
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        work = lock_run(run_id)
        if work.run.pause_requested_at is not None:
            return False  # woken by the resume
        now = timezone.now()
        woken = StepRun.objects.filter(pk=step_run_id, status=StepStatus.WAITING, wake_at__lte=now).update(
            status=StepStatus.QUEUED, wake_at=None, dispatched_at=now
        )
        if woken:
            dispatch([step_run_id])
        else:
            woken = _person_timeout(work, step_run_id, now)
    return bool(woken)


def _person_timeout(work: UnitOfWork, step_run_id: str, now) -> bool:
    """The reconciler's timeout of a step waiting for a person (the caller holds the run lock)."""
    run = work.run
    if run.is_terminal or run.pause_requested_at is not None:
        return False
    row = (
        StepRun.objects.select_for_update()
        .filter(pk=step_run_id, status__in=PERSON_WAIT, wake_at__lte=now)
        .first()
    )
    if row is None:
        return False
    config = row.input_data or {}
    if row.status == StepStatus.AWAITING_INPUT:
        person_answered(work, row, now, state={"outcome": "timed_out", "answered_at": iso(now)})
        work.save()
        return True
    approve = config.get("on_timeout", "reject") == "approve"
    verb, policy = ("approved", "approve") if approve else ("rejected", "reject")
    seconds = config.get("timeout_seconds")
    note = f"No decision within {seconds} s: {verb} by the timeout (on_timeout: {policy})."
    decision = {"by": "system", "by_type": "system", "approved": approve, "note": note, "at": iso(now)}
    approval_record(work, row, decision, now)
    audit_record(
        organization=run.organization,
        event="run.approved" if approve else "run.rejected",
        actor=SYSTEM,
        target=("run", run.id),
        data={"step_id": row.step_id, "step_run_id": row.id, "approved": approve, "timeout": True},
        note=note,
        run_id=run.id,
    )
    work.save()
    return True
