"""Writes for schedules (docs/schedules.md). Each runs in a transaction with its audit event and rings the
scheduler's doorbell after commit, so a sleeping scheduler re-reads its next fire time at once. Firing and
backfill create runs, so they live in the runs app (runs/scheduling.py)."""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from accounts.models import Organization
from audit.services import audit_record
from config import doorbell
from config.errors import Conflict, InvalidRequest, QuotaExceeded, not_found
from workflows import cron
from workflows.choices import ScheduleCatchup, ScheduleOverlap, WorkflowStatus
from workflows.definition import input_schema
from workflows.models import Schedule, Workflow
from workflows.selectors import workflow_version_get

# The doorbell channel the scheduler loops listen on (runs/scheduling.py).
SCHEDULES_CHANNEL = "schedules"
MAX_CATCHUP_WINDOW_SECONDS = 7 * 86_400
FIELDS = (
    "cron_expression",
    "timezone",
    "input_data",
    "enabled",
    "catchup",
    "catchup_window_seconds",
    "overlap",
)


def _field_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", f"{field}: {message}", details={"fields": {field: [message]}})


def clean_schedule(values: dict, *, now) -> dict:
    """The schedule fields of `values`, checked: a cron expression in its five-field form, a known time zone,
    fire times at least BATON_SCHEDULE_MIN_INTERVAL_SECONDS apart, and the enums and bounds. A problem → 400
    invalid_request whose message says what is wrong."""
    cleaned = dict(values)
    try:
        if "cron_expression" in cleaned:
            cleaned["cron_expression"] = cron.normalize(cleaned["cron_expression"])
    except cron.CronError as exc:
        raise _field_error("cron_expression", str(exc)) from None
    try:
        if "timezone" in cleaned:
            cron.zone(cleaned["timezone"])
    except cron.CronError as exc:
        raise _field_error("timezone", str(exc)) from None
    if "input_data" in cleaned and not isinstance(cleaned["input_data"], dict):
        raise _field_error("input_data", "Must be an object.")
    if "enabled" in cleaned and not isinstance(cleaned["enabled"], bool):
        raise _field_error("enabled", "Must be true or false.")
    if "catchup" in cleaned and cleaned["catchup"] not in ScheduleCatchup.values:
        raise _field_error("catchup", f"Must be one of {', '.join(ScheduleCatchup.values)}.")
    if "overlap" in cleaned and cleaned["overlap"] not in ScheduleOverlap.values:
        raise _field_error("overlap", f"Must be one of {', '.join(ScheduleOverlap.values)}.")
    window = cleaned.get("catchup_window_seconds")
    if "catchup_window_seconds" in cleaned and (
        isinstance(window, bool)
        or not isinstance(window, int)
        or not 0 <= window <= MAX_CATCHUP_WINDOW_SECONDS
    ):
        raise _field_error(
            "catchup_window_seconds", f"Must be an integer from 0 to {MAX_CATCHUP_WINDOW_SECONDS}."
        )
    return cleaned


def _check_timing(schedule: Schedule, now, organization) -> None:
    """Fire times at least the minimum interval apart: the plan's `min_schedule_interval_seconds`, never
    below BATON_SCHEDULE_MIN_INTERVAL_SECONDS (the server's floor, unlimited plans included)."""
    floor = settings.BATON_SCHEDULE_MIN_INTERVAL_SECONDS
    plan = organization.min_schedule_interval_seconds or 0
    minimum = max(floor, plan)
    shortest = cron.shortest_interval(schedule.cron_expression, schedule.timezone, now)
    if shortest is None:
        raise _field_error("cron_expression", "The cron expression never fires.")
    if shortest < minimum:
        whose = "the organisation's plan allows" if plan > floor else "this server allows"
        raise _field_error(
            "cron_expression",
            f"The schedule fires {int(shortest)} s apart at times; {whose} fire times at least {minimum} s "
            "apart.",
        )


def _check_input(schedule: Schedule, workflow: Workflow) -> None:
    """The schedule's input against the input schema of the version its runs use (the published one, else
    the latest): a mismatch → 400 invalid_request naming the first problem, each one in `details.fields`
    (`input_data.<path>`). The schema may change afterwards: the fire then fails and says why
    (runs/scheduling.py `fire_error`)."""
    spec = "published" if workflow.published_version else "latest"
    version = workflow_version_get(workflow=workflow, spec=spec)
    validator = Draft202012Validator(input_schema(version.definition))
    problems = sorted(validator.iter_errors(schedule.input_data), key=lambda e: list(e.absolute_path))
    if not problems:
        return
    fields: dict[str, list[str]] = {}
    for problem in problems:
        at = ["input_data", *map(str, problem.absolute_path)]
        if problem.validator == "required" and isinstance(problem.instance, dict):
            for name in [n for n in problem.validator_value if n not in problem.instance]:
                fields.setdefault(".".join([*at, name]), []).append("This field is required.")
        else:
            fields.setdefault(".".join(at), []).append(problem.message)
    where, messages = next(iter(fields.items()))
    raise InvalidRequest(
        "invalid_request",
        f"input_data does not match the input schema of workflow {workflow.id} (version {version.number}): "
        f"{where}: {messages[0]}",
        details={"fields": fields},
    )


def next_run_at(schedule: Schedule, *, now) -> object:
    """The schedule's next fire time after `now`, or None when it is disabled."""
    if not schedule.enabled:
        return None
    return cron.next_fire_time(schedule.cron_expression, schedule.timezone, now)


def _check_limits(workflow: Workflow, organization) -> None:
    """The plan's schedule limits (null = unlimited): over one → 402 quota_exceeded naming it. Exact: the
    caller holds the organisation's row lock."""
    limits = (
        ("max_schedules_per_workflow", organization.max_schedules_per_workflow, f"Workflow {workflow.id}",
         Schedule.objects.filter(workflow=workflow)),
        ("max_schedules", organization.max_schedules, "The organisation",
         Schedule.objects.filter(organization_id=organization.pk)),
    )  # fmt: skip
    for name, limit, who, schedules in limits:
        if limit is None:
            continue
        used = schedules.count()
        if used >= limit:
            raise QuotaExceeded(
                "quota_exceeded",
                f"{who} already has {used} schedules, its plan's limit ({name} {limit}): delete one or "
                "raise the limit.",
                details={"quota": name, "limit": limit, "used": used},
            )


def _audit_data(schedule: Schedule) -> dict:
    return {
        "workflow_id": schedule.workflow_id,
        "cron_expression": schedule.cron_expression,
        "timezone": schedule.timezone,
        "enabled": schedule.enabled,
    }


@transaction.atomic
def schedule_create(*, workflow: Workflow, actor, values: dict) -> Schedule:
    """A new schedule of `workflow` with its first `next_run_at`. An archived workflow → 404; over the
    plan's schedule limits → 402 quota_exceeded; a bad field, fire times closer than the minimum interval or
    an input the workflow's input schema refuses → 400 invalid_request. Audited."""
    now = timezone.now()
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise not_found("workflow", workflow.id)
    if "cron_expression" not in values:
        raise _field_error("cron_expression", "This field is required.")
    cleaned = clean_schedule({"timezone": "UTC", **values}, now=now)
    # The organisation's row lock serializes concurrent creations, so the limits hold.
    organization = Organization.objects.select_for_update(no_key=True).get(pk=workflow.organization_id)
    _check_limits(workflow, organization)
    schedule = Schedule(
        organization_id=workflow.organization_id,
        workflow=workflow,
        created_by=actor.actor_id,
        **{name: cleaned[name] for name in FIELDS if name in cleaned},
    )
    _check_timing(schedule, now, organization)
    _check_input(schedule, workflow)
    schedule.next_run_at = next_run_at(schedule, now=now)
    schedule.created_at = schedule.updated_at = now
    schedule.save(force_insert=True)
    audit_record(
        organization=workflow.organization,
        event="schedule.created",
        actor=actor,
        target=("schedule", schedule.id),
        data=_audit_data(schedule),
    )
    doorbell.ring_on_commit(SCHEDULES_CHANNEL)
    return schedule


@transaction.atomic
def schedule_update(*, schedule: Schedule, actor, changes: dict) -> Schedule:
    """Change a schedule's fields; its next fire time is computed anew from now when its timing or
    `enabled` changes. The input is checked against the workflow's input schema when it changes or the
    schedule is enabled again (400 invalid_request). Enabling a schedule of an archived workflow → 409
    workflow_archived. Audited."""
    now = timezone.now()
    cleaned = clean_schedule(changes, now=now)
    locked = (
        Schedule.objects.select_for_update(of=("self",))
        .select_related("workflow", "organization")
        .get(pk=schedule.pk)
    )
    if cleaned.get("enabled") and locked.workflow.status == WorkflowStatus.ARCHIVED:
        raise Conflict(
            "workflow_archived", f"Workflow {locked.workflow_id} is archived: its schedules stay disabled."
        )
    changed = {
        name: cleaned[name] for name in FIELDS if name in cleaned and getattr(locked, name) != cleaned[name]
    }
    for name, value in changed.items():
        setattr(locked, name, value)
    if changed.keys() & {"cron_expression", "timezone"}:
        _check_timing(locked, now, locked.organization)
    if "input_data" in changed or (changed.get("enabled") and locked.enabled):
        _check_input(locked, locked.workflow)  # a schedule enabled again is checked against today's schema
    if changed.keys() & {"cron_expression", "timezone", "enabled"}:
        locked.next_run_at = next_run_at(locked, now=now)
    if changed:
        locked.updated_at = now
        locked.save()
        audit_record(
            organization=locked.organization,
            event="schedule.updated",
            actor=actor,
            target=("schedule", locked.id),
            data={"workflow_id": locked.workflow_id, "changed": sorted(changed)},
        )
        doorbell.ring_on_commit(SCHEDULES_CHANNEL)
    return locked


@transaction.atomic
def schedule_delete(*, schedule: Schedule, actor) -> None:
    """Delete a schedule and its record of fired times (its runs stay). Audited."""
    audit_record(
        organization=schedule.organization,
        event="schedule.deleted",
        actor=actor,
        target=("schedule", schedule.id),
        data=_audit_data(schedule),
    )
    Schedule.objects.filter(pk=schedule.pk).delete()
    doorbell.ring_on_commit(SCHEDULES_CHANNEL)


def schedules_disable_for_workflow(workflow: Workflow) -> None:
    """Disable every schedule of an archived workflow (unarchiving does not enable them again). Runs after
    the archive commits, as a statement of its own: the scheduler locks a schedule before the workflow, so
    an archive must not wait for schedule locks while it holds the workflow's (the scheduler also disables
    the schedules of an archived workflow it meets)."""

    def disable():
        count = Schedule.objects.filter(workflow_id=workflow.pk, enabled=True).update(
            enabled=False, next_run_at=None, updated_at=timezone.now()
        )
        if count:
            doorbell.ring(SCHEDULES_CHANNEL)

    transaction.on_commit(disable)
