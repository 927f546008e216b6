"""Schedules firing (docs/schedules.md): each fire time of each enabled schedule starts exactly one run,
however many worker processes fire at once and even when one dies mid-fire.

- A fire pass locks the due schedule rows of one organisation (`FOR UPDATE SKIP LOCKED` on PostgreSQL:
  another scheduler moves on to other rows; SQLite serializes writers), re-checks that each is still due,
  creates their runs together (runs/services/batch.py) and records the fire times in ScheduleFire (unique
  (schedule, fire_time)), all in one transaction. A process killed mid-fire rolls back whole, and the
  schedules are still due for the next scheduler.
- The scheduler loop (one thread per django-q2 worker process, beside the reconciler) sleeps until the
  earliest `next_run_at` and is woken by the doorbell (config/doorbell.py) when a schedule changes: no
  polling of the database while nothing is due.

Catch-up, overlap and backfill follow API.md ("Schedules also take `catchup`…").
"""

from __future__ import annotations

import logging
import random
import threading
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import close_old_connections, connection, transaction
from django.db.models import Min
from django.utils import timezone

from accounts.principal import SystemActor
from audit.services import audit_record
from config import doorbell
from config.errors import ApplicationError, Conflict, InvalidRequest, not_found
from runs.choices import RUN_ACTIVE, RunTrigger
from runs.models import Run
from runs.services import run_create
from runs.services.batch import NewRun, runs_create_many
from workflows import cron, fastpaths
from workflows.choices import FireOutcome, ScheduleCatchup, ScheduleOverlap, WorkflowStatus
from workflows.models import Schedule, ScheduleFire, Workflow
from workflows.schedules import SCHEDULES_CHANNEL
from workflows.selectors import workflow_version_get
from workflows.webhooks import webhook_deliveries_prune

logger = logging.getLogger("baton.scheduler")

# A fire time less late than this is on time, not missed (API.md).
GRACE = timedelta(seconds=60)
BATCH = 200
# Schedules fired in one transaction: their runs are created together, one organisation lock and one insert
# per table for all of an organisation's (runs/services/batch.py).
FIRE_CHUNK = BATCH
# How soon a scheduler looks again when a due schedule was locked by another one (it is being fired, or
# its firer died and the database is about to release the lock).
BUSY_RETRY_SECONDS = 0.1
PRUNE_EVERY = timedelta(hours=1)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _actor(schedule: Schedule) -> SystemActor:
    return SystemActor(organization=schedule.organization, actor_type="schedule", actor_id=schedule.id)


def _start_run(
    schedule: Schedule, workflow: Workflow, fire_time: datetime, *, backfill: bool = False, versions=None
) -> Run:
    """A run of the published version (else the latest) with the schedule's input. `versions`: a cache of
    the versions read in this transaction."""
    version = _version(workflow, {} if versions is None else versions)
    metadata = {"schedule_id": schedule.id, "fire_time": _iso(fire_time)}
    if backfill:
        metadata["backfill"] = True
    return run_create(
        workflow=workflow,
        actor=_actor(schedule),
        version=version,
        input_data=dict(schedule.input_data or {}),
        metadata=metadata,
        trigger=RunTrigger.SCHEDULE,
        audit_data={"schedule_id": schedule.id, "fire_time": metadata["fire_time"]},
    )


def _version(workflow: Workflow, versions: dict):
    """The version a scheduled run uses: the published one, else the latest (`versions`: those read in this
    transaction)."""
    number = workflow.published_version or workflow.current_version
    version = versions.get((workflow.pk, number))
    if version is None:
        spec = "published" if workflow.published_version else "latest"
        version = versions[(workflow.pk, number)] = workflow_version_get(workflow=workflow, spec=spec)
    return version


def _previous_active(schedule: Schedule) -> bool:
    return (
        bool(schedule.last_run_id)
        and Run.objects.filter(pk=schedule.last_run_id, status__in=RUN_ACTIVE).exists()
    )


def due_times(schedule: Schedule, now: datetime) -> tuple[list[datetime], list[datetime]]:
    """(on time, missed) fire times of `schedule` from its `next_run_at` up to `now`: on time when less than
    GRACE late; missed ones only within the catch-up window (older ones are never looked at)."""
    horizon = GRACE + timedelta(
        seconds=schedule.catchup_window_seconds if schedule.catchup != ScheduleCatchup.NONE else 0
    )
    since = max(schedule.next_run_at - timedelta(seconds=1), now - horizon)
    times = cron.previous_fire_times(schedule.cron_expression, schedule.timezone, now, since)
    on_time = [moment for moment in times if now - moment <= GRACE]
    missed = [moment for moment in times if now - moment > GRACE]
    return on_time, missed


def _selected(schedule: Schedule, on_time: list[datetime], missed: list[datetime]) -> list[datetime]:
    if schedule.catchup == ScheduleCatchup.ALL:
        return missed + on_time
    if schedule.catchup == ScheduleCatchup.LAST and missed and not on_time:
        return missed[-1:]
    return on_time


class _Batch:
    """What the fires of one transaction share: the workflows and versions read, the fire times already
    recorded (read once for the batch: every writer of a schedule's record holds its row lock), the runs
    to start (created together, runs/services/batch.py), and the records and schedule changes written in
    one statement each at the end."""

    def __init__(self, schedules: list[Schedule], now: datetime):
        self.now = now
        self.workflows: dict = {}
        self.versions: dict = {}
        oldest = (
            now - GRACE - timedelta(seconds=max((s.catchup_window_seconds for s in schedules), default=0))
        )
        self.fired = set(
            ScheduleFire.objects.filter(
                schedule_id__in=[s.pk for s in schedules], fire_time__gte=oldest, fire_time__lte=now
            ).values_list("schedule_id", "fire_time")
        )
        self.records: list[ScheduleFire] = []
        self.starts: list[tuple[Schedule, Workflow, datetime]] = []
        self.active: set[str] = set()  # the last runs still active, of the schedules whose overlap matters
        self.timings: dict = {}
        self.next_times: dict = {}

    def record(self, schedule: Schedule, moment: datetime, outcome: str, run_id: str = "", error=None):
        self.fired.add((schedule.pk, moment))
        self.records.append(
            ScheduleFire(schedule=schedule, fire_time=moment, outcome=outcome, run_id=run_id, error=error)
        )

    def due_times(self, schedule: Schedule) -> tuple[list[datetime], list[datetime]]:
        """`due_times`, computed once for the schedules of this pass that share their timing."""
        key = (schedule.cron_expression, schedule.timezone, schedule.next_run_at, schedule.catchup,
               schedule.catchup_window_seconds)  # fmt: skip
        if key not in self.timings:
            self.timings[key] = due_times(schedule, self.now)
        on_time, missed = self.timings[key]
        return list(on_time), list(missed)

    def next_fire_time(self, schedule: Schedule) -> datetime | None:
        key = (schedule.cron_expression, schedule.timezone)
        if key not in self.next_times:
            self.next_times[key] = cron.next_fire_time(schedule.cron_expression, schedule.timezone, self.now)
        return self.next_times[key]

    def read_active(self, schedules: list[Schedule]) -> None:
        """Which of these schedules' last runs are still active (one query for the round)."""
        ids = [s.last_run_id for s in schedules if s.overlap != ScheduleOverlap.ALLOW and s.last_run_id]
        self.active = set(Run.objects.filter(pk__in=ids, status__in=RUN_ACTIVE).values_list("pk", flat=True))

    def start_all(self) -> list[str]:
        """Create the runs of the fires decided so far, organisation by organisation (in the order of their
        ids: the lock order between schedulers), and record each fire's outcome."""
        by_organization: dict[str, list] = {}
        for start in self.starts:
            by_organization.setdefault(start[0].organization_id, []).append(start)
        self.starts = []
        outcomes = []
        for organization_id in sorted(by_organization):
            starts = by_organization[organization_id]
            items = [self.new_run(schedule, workflow, moment) for schedule, workflow, moment in starts]
            results = runs_create_many(items, trigger=RunTrigger.SCHEDULE)
            for (schedule, _workflow, moment), result in zip(starts, results, strict=True):
                outcomes.append(self.started(schedule, moment, result))
        return outcomes

    def new_run(self, schedule: Schedule, workflow: Workflow, moment: datetime) -> NewRun:
        version = _version(workflow, self.versions)
        metadata = {"schedule_id": schedule.id, "fire_time": _iso(moment)}
        return NewRun(
            workflow=workflow,
            version=version,
            actor=_actor(schedule),
            input_data=dict(schedule.input_data or {}),
            metadata=metadata,
            audit_data=dict(metadata),
        )

    def started(self, schedule: Schedule, moment: datetime, result) -> str:
        if isinstance(result, ApplicationError):
            logger.warning(
                "schedule %s could not start its run of %s: %s", schedule.id, _iso(moment), result.message
            )
            error = fire_error(result, moment)
            self.record(schedule, moment, FireOutcome.FAILED, error=error)
            schedule.last_error = error
            return FireOutcome.FAILED
        self.record(schedule, moment, FireOutcome.STARTED, result.id)
        schedule.last_run_at = self.now
        schedule.last_run_id = result.id
        schedule.last_error = None
        return FireOutcome.STARTED

    def write(self, schedules: list[Schedule]) -> None:
        ScheduleFire.objects.bulk_create(self.records)
        fastpaths.save_fired_schedules(schedules)


def fire_error(exc: ApplicationError, moment: datetime) -> dict:
    """What a failed fire records (ScheduleFire.error, Schedule.last_error): the error envelope's code,
    message and details, and the fire time."""
    error = {"code": exc.code, "message": exc.message, "fire_time": _iso(moment)}
    if exc.details:
        error["details"] = exc.details
    return error


def _decide(schedule: Schedule, workflow: Workflow, moment: datetime, batch: _Batch) -> str | None:
    """What becomes of one fire time of a locked schedule: a FireOutcome (or "duplicate"), or None when its
    run is to be started (`batch.starts`)."""
    if (schedule.pk, moment) in batch.fired:
        return "duplicate"  # fired already (a backfill, another scheduler before a restart)
    if schedule.overlap != ScheduleOverlap.ALLOW and schedule.last_run_id in batch.active:
        if schedule.overlap == ScheduleOverlap.SKIP:
            return FireOutcome.SKIPPED_OVERLAP
        if ScheduleFire.objects.filter(schedule=schedule, outcome=FireOutcome.WAITING).exists():
            return FireOutcome.SKIPPED_OVERLAP  # `queue` keeps at most one waiting
        ScheduleFire.objects.create(schedule=schedule, fire_time=moment, outcome=FireOutcome.WAITING)
        batch.fired.add((schedule.pk, moment))
        return FireOutcome.WAITING
    batch.starts.append((schedule, workflow, moment))
    return None


def _due_locked(schedule: Schedule, batch: _Batch, now: datetime) -> tuple[list[str], list[datetime]]:
    """(outcomes known already, fire times to fire in order) of a schedule whose row this transaction holds
    locked; its next fire time moves on (its changes are written by the batch)."""
    workflow = batch.workflows.get(schedule.workflow_id)
    if workflow is None:
        workflow = batch.workflows[schedule.workflow_id] = Workflow.objects.get(pk=schedule.workflow_id)
        workflow.organization = schedule.organization
    if not schedule.enabled or workflow.status == WorkflowStatus.ARCHIVED:
        schedule.enabled = False  # archiving disables a workflow's schedules (API.md)
        schedule.next_run_at = None
        return ["disabled"], []
    on_time, missed = batch.due_times(schedule)
    schedule.next_run_at = batch.next_fire_time(schedule)
    if workflow.status == WorkflowStatus.PAUSED:
        return [FireOutcome.SKIPPED_PAUSED] * len(on_time), []  # fire times while paused are skipped
    return [], _selected(schedule, on_time, missed)


def schedules_fire(schedule_ids: list[str], *, now: datetime) -> list[str]:
    """Fire those of `schedule_ids` that are due at `now` and that no other scheduler holds, in one
    transaction: their runs are created together (runs/services/batch.py: one organisation lock, one insert
    per table), in rounds when a schedule catches up several fire times (the n-th fire time of each schedule
    in round n, so its overlap policy sees the run of the one before); returns the outcomes of their fire
    times, plus "busy" for each one due but held by another scheduler."""
    with transaction.atomic():
        locked = list(
            Schedule.objects.select_for_update(skip_locked=True, of=("self",))
            .select_related("organization")
            .filter(pk__in=schedule_ids, next_run_at__lte=now)
            .order_by("pk")
        )
        outcomes: list[str] = []
        batch = _Batch(locked, now)
        due: list[tuple[Schedule, list[datetime]]] = []
        for schedule in locked:
            known, moments = _due_locked(schedule, batch, now)
            outcomes += known
            if moments:
                due.append((schedule, moments))
        for round_ in range(max((len(moments) for _s, moments in due), default=0)):
            this_round = [(schedule, moments[round_]) for schedule, moments in due if round_ < len(moments)]
            batch.read_active([schedule for schedule, _moment in this_round])
            for schedule, moment in this_round:
                outcome = _decide(schedule, batch.workflows[schedule.workflow_id], moment, batch)
                if outcome is not None:
                    outcomes.append(outcome)
            outcomes += batch.start_all()
        batch.write(locked)
    if len(locked) < len(schedule_ids):
        held = set(schedule_ids) - {schedule.pk for schedule in locked}
        outcomes += ["busy"] * Schedule.objects.filter(pk__in=held, next_run_at__lte=now).count()
    return outcomes


def schedule_fire(schedule_id: str, *, now: datetime) -> list[str]:
    """Fire one schedule if it is due at `now` and no other scheduler holds it; returns the outcomes of its
    fire times (["busy"] when another scheduler holds it, [] when it is not due)."""
    return schedules_fire([schedule_id], now=now)


def schedules_fire_due(*, now: datetime | None = None) -> Counter:
    """Fire every schedule due at `now`: one transaction per organisation (up to FIRE_CHUNK of its schedules),
    so that schedulers woken together fire different organisations in parallel (each skips the schedules
    another holds) instead of queueing on each other's organisation locks; counts the outcomes ("busy": due
    but held by another scheduler). A chunk that fails is fired again one schedule per transaction, so one
    schedule that cannot fire does not hold the others back."""
    now = now or timezone.now()
    by_organization: dict[str, list[str]] = {}
    for pk, organization_id in Schedule.objects.filter(next_run_at__lte=now).values_list(
        "pk", "organization_id"
    )[:BATCH]:
        by_organization.setdefault(organization_id, []).append(pk)
    chunks = [
        ids[start : start + FIRE_CHUNK]
        for ids in by_organization.values()
        for start in range(0, len(ids), FIRE_CHUNK)
    ]
    random.shuffle(chunks)  # schedulers woken together start at different organisations
    counts: Counter = Counter()
    for chunk in chunks:
        try:
            counts.update(schedules_fire(chunk, now=now))
            continue
        except Exception:
            logger.warning("a chunk of %d schedules failed to fire: one at a time", len(chunk), exc_info=True)
        for schedule_id in chunk:
            try:
                counts.update(schedule_fire(schedule_id, now=now))
            except Exception:
                logger.exception("schedule %s failed to fire", schedule_id)
                counts["error"] += 1
    return counts


def schedules_release_waiting(*, now: datetime | None = None) -> int:
    """Start the waiting fire (overlap `queue`) of each schedule whose previous run has finished."""
    now = now or timezone.now()
    ids = set(
        ScheduleFire.objects.filter(outcome=FireOutcome.WAITING).values_list("schedule_id", flat=True)[:BATCH]
    )
    started = 0
    for schedule_id in ids:
        with transaction.atomic():
            schedule = (
                Schedule.objects.select_for_update(skip_locked=True, of=("self",))
                .select_related("organization")
                .filter(pk=schedule_id)
                .first()
            )
            if schedule is None or _previous_active(schedule):
                continue
            fire = (
                ScheduleFire.objects.filter(schedule=schedule, outcome=FireOutcome.WAITING)
                .order_by("fire_time")
                .first()
            )
            if fire is None:
                continue
            workflow = Workflow.objects.get(pk=schedule.workflow_id)
            workflow.organization = schedule.organization
            if not schedule.enabled or (
                workflow.status != WorkflowStatus.ACTIVE and workflow.status != WorkflowStatus.DRAFT
            ):
                fire.outcome = FireOutcome.SKIPPED_PAUSED
                fire.save(update_fields=["outcome"])
                continue
            try:
                run = _start_run(schedule, workflow, fire.fire_time)
            except ApplicationError as exc:
                logger.warning("schedule %s could not start its waiting run: %s", schedule.id, exc.message)
                fire.outcome = FireOutcome.FAILED
                fire.save(update_fields=["outcome"])
                continue
            fire.outcome, fire.run_id = FireOutcome.STARTED, run.id
            fire.save(update_fields=["outcome", "run_id"])
            schedule.last_run_at, schedule.last_run_id = now, run.id
            schedule.save(update_fields=["last_run_at", "last_run_id"])
            started += 1
    return started


# ------------------------------------------------------------------------------------------- backfill


def schedule_backfill(
    *, schedule: Schedule, actor, start: datetime, end: datetime, dry_run: bool = False
) -> dict:
    """Every fire time of `schedule` in [start, end], and unless `dry_run` a run for each one that never had
    one (`metadata.backfill: true`; the overlap policy does not apply). All or nothing: a quota that cannot
    hold them all → 402 and no run. A window longer than BATON_SCHEDULE_BACKFILL_MAX_DAYS or holding more
    than BATON_SCHEDULE_BACKFILL_MAX_FIRES fire times, or reaching into the future → 400. Audited."""
    now = timezone.now()
    if end <= start:
        raise InvalidRequest(
            "invalid_request",
            "'end' must be after 'start'.",
            details={"fields": {"end": ["Must be after start."]}},
        )
    if end > now:
        raise InvalidRequest("invalid_request", "'end' must not be in the future: backfill fills the past.",
                             details={"fields": {"end": ["Must not be in the future."]}})  # fmt: skip
    max_days = settings.BATON_SCHEDULE_BACKFILL_MAX_DAYS
    if end - start > timedelta(days=max_days):
        raise InvalidRequest(
            "invalid_request",
            f"A backfill window is at most {max_days} days.",
            details={"fields": {"start": [f"At most {max_days} days before end."]}},
        )
    limit = settings.BATON_SCHEDULE_BACKFILL_MAX_FIRES
    times = cron.fire_times_between(schedule.cron_expression, schedule.timezone, start, end, limit=limit)
    if len(times) > limit:
        raise InvalidRequest(
            "invalid_request", f"The window holds more than {limit} fire times: backfill a shorter one."
        )
    with transaction.atomic():
        locked = (
            Schedule.objects.select_for_update(of=("self",))
            .select_related("organization")
            .get(pk=schedule.pk)
        )
        workflow = Workflow.objects.get(pk=locked.workflow_id)
        workflow.organization = locked.organization
        if workflow.status == WorkflowStatus.ARCHIVED:
            raise not_found("workflow", workflow.id)
        fired = {
            row.fire_time: row for row in ScheduleFire.objects.filter(schedule=locked, fire_time__in=times)
        }
        todo = [moment for moment in times if not (moment in fired and fired[moment].run_id)]
        result = {
            "fire_times": [_iso(moment) for moment in times],
            "runs": [],
            "created": 0,
            "skipped": len(times) - len(todo),
        }
        if dry_run:
            return result
        if todo and workflow.status == WorkflowStatus.PAUSED:
            raise Conflict("workflow_disabled", f"Workflow {workflow.id} is paused: activate it to backfill.")
        for moment in todo:
            run = _start_run(locked, workflow, moment, backfill=True)
            row = fired.get(moment)
            if row is None:
                ScheduleFire.objects.create(
                    schedule=locked,
                    fire_time=moment,
                    outcome=FireOutcome.STARTED,
                    run_id=run.id,
                    backfill=True,
                )
            else:
                row.outcome, row.run_id, row.backfill = FireOutcome.STARTED, run.id, True
                row.save(update_fields=["outcome", "run_id", "backfill"])
            result["runs"].append({"fire_time": _iso(moment), "run_id": run.id})
        result["created"] = len(result["runs"])
        audit_record(
            organization=locked.organization,
            event="schedule.backfilled",
            actor=actor,
            target=("schedule", locked.id),
            data={
                "workflow_id": workflow.id,
                "start": _iso(start),
                "end": _iso(end),
                "created": result["created"],
                "skipped": result["skipped"],
            },
        )
    return result


# ---------------------------------------------------------------------------------------------- the loop


class Scheduler:
    """One scheduler: `step()` fires what is due and says how long to sleep. The clock is injectable."""

    def __init__(self, clock: Callable[[], datetime] = timezone.now):
        self.clock = clock
        self.pruned_at: datetime | None = None

    def step(self) -> float:
        """Fire what is due now; the seconds until the next fire time (capped by
        BATON_SCHEDULER_MAX_SLEEP_SECONDS, shorter while a fire waits for its previous run)."""
        counts = schedules_fire_due(now=self.clock())
        if self.pruned_at is None or self.clock() - self.pruned_at > PRUNE_EVERY:
            self.pruned_at = self.clock()
            webhook_deliveries_prune(now=self.pruned_at)  # the hooks' record of deliveries seen
        waiting = ScheduleFire.objects.filter(outcome=FireOutcome.WAITING).exists()
        if waiting:
            schedules_release_waiting(now=self.clock())
        sleep = float(settings.BATON_SCHEDULER_MAX_SLEEP_SECONDS)
        next_due = Schedule.objects.filter(next_run_at__isnull=False).aggregate(at=Min("next_run_at"))["at"]
        if next_due is not None:
            sleep = min(sleep, max(0.0, (next_due - self.clock()).total_seconds()))
        if counts.get("busy"):
            sleep = min(sleep, BUSY_RETRY_SECONDS)
        if waiting:
            # A finishing run rings no doorbell: a waiting fire is looked at on the reconciler's cadence.
            sleep = min(sleep, settings.BATON_RECONCILE_INTERVAL_MS / 1000)
        return sleep


_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def run_loop(*, stop: threading.Event | None = None, clock: Callable[[], datetime] = timezone.now) -> None:
    """Fire, sleep until the next fire time or a doorbell ring, repeat (until `stop` is set)."""
    bell = doorbell.listen(SCHEDULES_CHANNEL)
    scheduler = Scheduler(clock=clock)
    try:
        while stop is None or not stop.is_set():
            try:
                close_old_connections()
                sleep = scheduler.step()
            except Exception:
                logger.exception("scheduler pass failed")
                sleep = 1.0
            bell.wait(sleep)
    finally:
        bell.close()
        connection.close()  # this thread's own connection


def start_scheduler_thread() -> bool:
    """Start this process's scheduler thread (once); True if it was started now."""
    global _thread
    with _thread_lock:
        if _thread is not None and _thread.is_alive():
            return False
        _thread = threading.Thread(target=run_loop, name="baton-scheduler", daemon=True)
        _thread.start()
    return True
