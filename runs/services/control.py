"""Stopping, pausing, deleting and pinning runs (docs/runs-api.md)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from config.errors import Conflict, not_found
from runs.choices import EventType, RunStatus
from runs.engine.control import run_request_cancel, run_request_pause, run_request_terminate
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, RunFile, StepRun
from runs.services.files import remove_files


def run_cancel(*, run: Run, actor, reason: str = "") -> Run:
    """Cooperative cancel: nothing new starts, unstarted steps are cancelled, and the run becomes
    `cancelled` when no step is running any more. A terminal run → Conflict run_not_cancellable."""
    return _stop(run, actor, reason, terminate=False)


def run_terminate(*, run: Run, actor, reason: str = "") -> Run:
    """Immediate cancel: like run_cancel, and the steps running now are killed (the workers' step monitor
    sees `terminate_requested_at` within about a second; scripts lose their whole process group). Each
    such step ends `cancelled` with error code `terminated`; the run becomes `cancelled` as soon as no
    step is running. A terminal run → Conflict run_not_cancellable. Audited `run.terminated`; terminating
    an already terminated run changes nothing."""
    return _stop(run, actor, reason, terminate=True)


@transaction.atomic
def _stop(run: Run, actor, reason: str, *, terminate: bool) -> Run:
    locked = Run.objects.select_for_update().get(pk=run.pk)
    verb = "terminated" if terminate else "cancelled"
    if locked.is_terminal:
        raise Conflict("run_not_cancellable", f"Run {run.id} is {locked.status} and cannot be {verb}.")
    asked = locked.terminate_requested_at if terminate else locked.cancel_requested_at
    if asked is None:
        audit_record(
            organization=locked.organization,
            event=f"run.{verb}",
            actor=actor,
            target=("run", locked.id),
            data={"reason": reason} if reason else {},
            note=reason or None,
            run_id=locked.id,
        )
        work = UnitOfWork(locked)
        request = run_request_terminate if terminate else run_request_cancel
        request(work, timezone.now())
        work.save()
    return locked


@transaction.atomic
def run_pause(*, run: Run, actor) -> Run:
    """No new step starts; the run becomes `paused` once none of its steps is running (a queued run that
    has not started pauses at once). Timers (waits, retry backoffs) hold until the resume."""
    locked = Run.objects.select_for_update().get(pk=run.pk)
    if locked.is_terminal or locked.cancel_requested_at is not None:
        state = locked.status if locked.is_terminal else "being cancelled"
        raise Conflict("run_not_pausable", f"Run {run.id} is {state} and cannot be paused.")
    if locked.pause_requested_at is None:
        work = UnitOfWork(locked)
        now = timezone.now()
        if locked.status == RunStatus.QUEUED:
            # Not admitted yet: paused at once, and it gives up its place in the queue until resumed.
            locked.pause_requested_at = now
            locked.status = RunStatus.PAUSED
            work.emit(EventType.RUN_PAUSED)
        else:
            run_request_pause(work, now)
        work.save()
        audit_record(
            organization=locked.organization,
            event="run.paused",
            actor=actor,
            target=("run", locked.id),
            data={"status": locked.status},
            run_id=locked.id,
        )
    return locked


@transaction.atomic
def run_delete(*, run: Run, actor) -> None:
    """Delete a terminal run with its steps, events and attachments (the files' bytes go after the
    commit); audited as run.deleted. An active run → Conflict run_active."""
    locked = Run.objects.select_for_update().filter(pk=run.pk).first()
    if locked is None:
        raise not_found("run", run.id)
    if not locked.is_terminal:
        raise Conflict("run_active", f"Run {run.id} is {locked.status}: cancel it before deleting it.")
    delete_locked(run.organization, [locked], actor, bulk=False)


def delete_locked(organization, runs: list[Run], actor, *, bulk: bool) -> None:
    """Audit and delete these locked, terminal runs; their files are removed once the transaction commits."""
    ids = [run.pk for run in runs]
    paths = list(RunFile.objects.filter(run_id__in=ids).values_list("storage_path", flat=True))
    for run in runs:
        data = {"workflow_id": run.workflow_id, "status": run.status}
        if bulk:
            data["bulk"] = True
        audit_record(
            organization=organization, event="run.deleted", actor=actor, target=("run", run.pk),
            data=data, run_id=run.pk,
        )  # fmt: skip
    # Iterations first: the parent link cascades, and deleting children up front keeps the collector flat.
    StepRun.objects.filter(run_id__in=ids, parent__isnull=False).delete()
    Run.objects.filter(pk__in=ids).delete()
    if paths:
        transaction.on_commit(lambda: remove_files(paths))


@transaction.atomic
def run_pin_set(*, run: Run, actor, pinned: bool) -> Run:
    """Pin (retention never removes it) or unpin a run; audited as run.pinned / run.unpinned when it
    changes (setting the current value again is a no-op)."""
    changed = Run.objects.filter(pk=run.pk).exclude(pinned=pinned).update(pinned=pinned)
    if changed:
        audit_record(
            organization=run.organization,
            event="run.pinned" if pinned else "run.unpinned",
            actor=actor,
            target=("run", run.pk),
            run_id=run.pk,
        )
    run.pinned = pinned
    return run
