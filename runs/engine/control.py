"""Stopping and continuing a run: cancel, terminate, time out, pause, continue, start steps anew.

The services (runs/services/control.py, resume.py) hold the rules for people; these work on a locked run's
unit of work, which the caller saves (docs/runs-api.md "Pause, resume and rerun").
"""

from __future__ import annotations

from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from runs.choices import EventType, RunStatus, StepStatus
from runs.engine import secrets as engine_secrets
from runs.engine import subworkflows
from runs.engine.advance import advance_locked, ready_rows
from runs.engine.loops import advance_loop
from runs.engine.outcomes import finish_run
from runs.engine.plan import plan_for
from runs.engine.unit_of_work import UnitOfWork, lock_run
from runs.engine.waits import sync_awaiting
from runs.models import Run, StepRun


def run_request_cancel(work: UnitOfWork, now) -> None:
    """Ask a locked run to stop: nothing new starts; it is cancelled once no step is running."""
    work.run.cancel_requested_at = now
    advance_locked(work)
    subworkflows.on_cancel_requested(work.run)


def run_request_terminate(work: UnitOfWork, now) -> None:
    """Terminate a locked run: like a cancel request, and the workers running its steps are told to stop
    (the step monitor polls `terminate_requested_at`; scripts are killed). Each running step ends
    `cancelled` with error code `terminated`; the run is cancelled once no step is running."""
    run = work.run
    run.terminate_requested_at = now
    run.cancel_requested_at = run.cancel_requested_at or now
    advance_locked(work)
    subworkflows.on_cancel_requested(run)


def run_fail_timeout(run_id: str) -> bool:
    """Fail an active run past its deadline with `run_timeout`; True if it was failed here."""
    with transaction.atomic():
        work = lock_run(run_id)
        run = work.run
        now = timezone.now()
        if run.is_terminal or run.deadline_at is None or run.deadline_at > now:
            return False
        limit = int((run.deadline_at - run.started_at).total_seconds()) if run.started_at else None
        error = {
            "code": "run_timeout",
            "message": f"The run exceeded its maximum duration ({limit} s)."
            if limit
            else "The run timed out.",
            "step_id": None,
        }
        finish_run(work, RunStatus.FAILED, now=now, error=error)
        work.save()
    return True


def run_request_pause(work: UnitOfWork, now) -> None:
    """Ask a locked, active run to pause: no new step starts; paused at once when none is running."""
    work.run.pause_requested_at = work.run.pause_requested_at or now
    ready_rows(work)


def unclaim_paused(work: UnitOfWork, step_run_id: str, now) -> None:
    """A queued step's message arrived after the pause: it goes back to where it was (pending, or waiting
    and due at once for a step resumed from a suspension) and the run may now be paused."""
    row = StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).only("id", "state").first()
    if row is not None:
        if row.state.get("suspended"):
            changes = {"status": StepStatus.WAITING, "wake_at": now, "dispatched_at": None}
        else:
            changes = {"status": StepStatus.PENDING, "queued_at": None, "dispatched_at": None}
        StepRun.objects.filter(pk=row.id, status=StepStatus.QUEUED).update(**changes)
    ready_rows(work)


def run_continue(work: UnitOfWork, now) -> list[str]:
    """Resume a locked `paused` run (or one asked to pause) where it stopped: timers that fell due meanwhile
    fire now, loops top up their iterations, ready steps start. Returns the dispatched step run ids."""
    run = work.run
    run.pause_requested_at = None
    if run.status == RunStatus.PAUSED:
        run.status = RunStatus.RUNNING
        limits = engine_secrets.run_limits(run)
        run.deadline_at = now + timedelta(seconds=limits.max_duration_seconds)
        work.emit(EventType.RUN_STARTED, data={"resumed": True})
    ready = list(
        StepRun.objects.filter(run_id=run.id, status=StepStatus.WAITING, wake_at__lte=now).values_list(
            "pk", flat=True
        )
    )
    if ready:
        StepRun.objects.filter(pk__in=ready).update(status=StepStatus.QUEUED, wake_at=None, dispatched_at=now)
    plan = plan_for(run)
    for loop in StepRun.objects.filter(
        run_id=run.id, parent__isnull=True, type="loop", status=StepStatus.WAITING
    ):
        ready += advance_loop(work, loop, plan.steps[loop.step_id], now)
    ready += advance_locked(work)
    sync_awaiting(work, now)  # steps still waiting for a person: the run waits for them again
    return ready


def reset_steps(run: Run, step_ids: set[str], now) -> None:
    """Make a locked run's top-level steps `step_ids` pending again (a resume or rerun starts them anew):
    their outputs, errors and loop iterations go; attempts stay in their history (numbering continues) and
    tokens spent stay counted. A sub_workflow step's old child run keeps existing but is unlinked."""
    rows = StepRun.objects.filter(run_id=run.id, parent__isnull=True, step_id__in=step_ids)
    Run.objects.filter(parent_step_run__in=rows).update(parent_step_run=None)
    StepRun.objects.filter(run_id=run.id, parent__in=rows).delete()
    rows.update(
        status=StepStatus.PENDING,
        output_data=None,
        error=None,
        skip_reason="",
        state={},
        queued_at=None,
        started_at=None,
        completed_at=None,
        lease_owner="",
        lease_expires_at=None,
        wake_at=None,
        dispatched_at=None,
    )
