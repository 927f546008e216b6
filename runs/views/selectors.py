"""Org-scoped reads that only dashboard pages need (each a fixed number of queries, whatever the rows)."""

import base64
import binascii
import json
from collections import namedtuple
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from runs.choices import RunStatus, StepStatus
from runs.models import Run, StepRun
from runs.services import is_approver
from workflows.models import Workflow

PERSON_WAITS = (RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_INPUT)
# What the inbox, the overview and the navigation badge read of a waiting run and step (the rest, such as
# inputs and results, can be large JSON that every page would otherwise decode for the badge).
WAITING_RUN_FIELDS = (
    "id", "organization", "workflow", "status", "env", "pause_signal", "created_at", "triggered_by",
    "workflow__id", "workflow__name", "workflow__slug",
)  # fmt: skip
WAITING_STEP_FIELDS = (
    "id", "run", "parent", "step_id", "name", "type", "status", "input_data", "state", "queued_at",
)  # fmt: skip
INBOX_MAX = 200


def runs_by_status_since(*, organization, since: datetime) -> dict[str, int]:
    """{status: count} of the organisation's runs created since `since` (one grouped query)."""
    rows = (
        Run.objects.filter(organization=organization, created_at__gte=since)
        .order_by()
        .values("status")
        .annotate(n=Count("pk"))
    )
    return {row["status"]: row["n"] for row in rows}


def recent_runs(*, organization, statuses, limit: int = 5) -> list[Run]:
    """The newest runs in these statuses, with their workflow's name (one query)."""
    return list(
        Run.objects.filter(organization=organization, status__in=list(statuses))
        .select_related("workflow")
        .only("id", "status", "created_at", "completed_at", "error", "workflow__name", "workflow__slug")
        .order_by("-created_at", "-id")[:limit]
    )


def workflows_listed(*, organization, search: str = "", status: str = "", tag: str = "") -> QuerySet:
    """The organisation's workflows (archived ones only when asked for by status), by name."""
    queryset = Workflow.objects.filter(organization=organization)
    queryset = queryset.filter(status=status) if status else queryset.exclude(status="archived")
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    if tag:
        queryset = queryset.filter(tag_rows__name=tag)
    return queryset.order_by("name", "id")


def last_runs_attach(workflows: list[Workflow]) -> list[Workflow]:
    """Set `last_run_id` and `last_run_status` (None when it never ran) on each of these workflows (a page,
    not the whole list): one query, whose subquery finds each workflow's newest run with one probe of the
    (workflow, created_at) index, so it costs the same whatever the number of runs."""
    for workflow in workflows:
        workflow.last_run_id = workflow.last_run_status = None
    if not workflows:
        return workflows
    newest = Run.objects.filter(workflow_id=OuterRef("pk")).order_by("-created_at", "-id").values("id")[:1]
    newest_ids = Workflow.objects.filter(pk__in=[w.pk for w in workflows]).values(run_id=Subquery(newest))
    rows = Run.objects.filter(pk__in=newest_ids).order_by().values_list("workflow_id", "id", "status")
    by_workflow = {workflow_id: (run_id, status) for workflow_id, run_id, status in rows}
    for workflow in workflows:
        workflow.last_run_id, workflow.last_run_status = by_workflow.get(workflow.pk, (None, None))
    return workflows


@dataclass
class Waiting:
    """A run waiting for a person: `kind` approval, input or gate (the environment gate)."""

    run: Run
    kind: str
    step: StepRun | None = None

    @property
    def message(self) -> str:
        if self.step is None:
            return f"Run in environment '{self.run.env}' needs an approval before it starts."
        return (self.step.input_data or {}).get("message") or ""

    @property
    def schema(self) -> dict | None:
        return (self.step.input_data or {}).get("schema") if self.step is not None else None


# The badge's light rows: the same attributes the checks below read, without model instances.
RunRow = namedtuple("RunRow", "id status pause_signal created_at")
StepRow = namedtuple("StepRow", "id run_id parent_id step_id status input_data state queued_at")


def _newest_waiting(organization, limit: int, *, rows: bool = False) -> list:
    """The newest `limit` runs waiting for a person: one query per status, each an index range of
    (organization, status, created_at) however many runs the organisation has (a single `status IN`
    query walks the organisation's runs by creation time instead), merged here. `rows`: RunRow tuples."""
    runs: list = []
    for status in PERSON_WAITS:
        queryset = Run.objects.filter(organization=organization, status=status).order_by("-created_at", "-id")
        if rows:
            runs += (RunRow(*row) for row in queryset.values_list(*RunRow._fields)[:limit])
        else:
            runs += queryset.select_related("workflow").only(*WAITING_RUN_FIELDS)[:limit]
    runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return runs[:limit]


def _waiting_steps(runs, *, rows: bool = False) -> dict[str, list]:
    """{run id: its top-level steps waiting for a person}. Loop iterations (`parent` set) are left out
    here, not in SQL: `parent_id IS NULL` would lead SQLite to walk the parent index over every top-level
    step of every run instead of these runs' steps."""
    queryset = StepRun.objects.filter(
        run_id__in=[run.id for run in runs],
        status__in=[StepStatus.AWAITING_APPROVAL, StepStatus.AWAITING_INPUT],
    ).order_by("queued_at", "id")
    steps = (
        (StepRow(*row) for row in queryset.values_list(*StepRow._fields))
        if rows
        else queryset.only(*WAITING_STEP_FIELDS)
    )
    by_run: dict[str, list] = {}
    for step in steps:
        if step.parent_id is None:
            by_run.setdefault(step.run_id, []).append(step)
    return by_run


def awaiting_person(*, principal, limit: int = INBOX_MAX, rows: bool = False) -> list[Waiting]:
    """What the person may decide or answer, newest run first: approval steps whose approvers include
    them, environment gates, and input requests (members and up). Three queries. `rows`: light tuples
    instead of model instances (enough to count them)."""
    if not principal.has_role("member"):  # viewers decide nothing
        return []
    runs = _newest_waiting(principal.organization, limit, rows=rows)
    if not runs:
        return []
    by_run = _waiting_steps(runs, rows=rows)
    items = []
    for run in runs:
        waiting = by_run.get(run.id, [])
        if not waiting and run.status == RunStatus.AWAITING_APPROVAL and run.pause_signal:
            if (run.pause_signal or {}).get("step_id") is None:
                items.append(Waiting(run=run, kind="gate"))
            continue
        for step in waiting:
            if step.status == StepStatus.AWAITING_INPUT:
                items.append(Waiting(run=run, kind="input", step=step))
            elif is_approver((step.input_data or {}).get("approvers"), principal) and not any(
                d.get("by") == principal.actor_id for d in (step.state or {}).get("decisions") or []
            ):
                items.append(Waiting(run=run, kind="approval", step=step))
    return items


def awaiting_person_preview(*, principal, count: int = 5, limit: int = 50) -> list[Waiting]:
    """The first `count` of awaiting_person (read as light rows), their runs loaded with the workflow's
    name for display: one query more, whatever `limit` is."""
    items = awaiting_person(principal=principal, limit=limit, rows=True)[:count]
    if items:
        loaded = Run.objects.select_related("workflow").only(*WAITING_RUN_FIELDS)
        runs = loaded.in_bulk([item.run.id for item in items])
        for item in items:
            item.run = runs[item.run.id]
    return items


def awaiting_person_count(*, principal) -> int:
    """The navigation badge (every page): awaiting_person's count, read as light rows."""
    return len(awaiting_person(principal=principal, rows=True))


# Keyset pagination over (created_at, id), newest first: a page costs the same at any depth.


def encode_cursor(run: Run) -> str:
    raw = json.dumps([run.created_at.isoformat(), run.id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, run_id = json.loads(raw)
        moment = parse_datetime(stamp)
    except (ValueError, TypeError, binascii.Error):
        return None
    if moment is None or not isinstance(run_id, str):
        return None
    return moment, run_id


def after_cursor(queryset: QuerySet[Run], cursor: str) -> QuerySet[Run]:
    decoded = decode_cursor(cursor) if cursor else None
    if decoded is None:
        return queryset
    moment, run_id = decoded
    return queryset.filter(Q(created_at__lt=moment) | Q(created_at=moment, id__lt=run_id))


def last_day(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(hours=24)
