"""Org-scoped reads that only dashboard pages need (each a fixed number of queries, whatever the rows)."""

import base64
import binascii
import json
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


def workflows_with_last_run(*, organization, search: str = "", status: str = "", tag: str = "") -> QuerySet:
    """The organisation's workflows (archived ones only when asked for by status), each annotated with
    its newest run's status and id; one query for the page."""
    queryset = Workflow.objects.filter(organization=organization)
    queryset = queryset.filter(status=status) if status else queryset.exclude(status="archived")
    if search:
        queryset = queryset.filter(Q(name__icontains=search) | Q(slug__icontains=search))
    if tag:
        queryset = queryset.filter(tag_rows__name=tag)
    newest = Run.objects.filter(workflow_id=OuterRef("pk")).order_by("-created_at", "-id")
    return queryset.annotate(
        last_run_status=Subquery(newest.values("status")[:1]),
        last_run_id=Subquery(newest.values("id")[:1]),
    ).order_by("name", "id")


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


def _newest_waiting(organization, limit: int) -> list[Run]:
    """The newest `limit` runs waiting for a person: one query per status, each an index range of
    (organization, status, created_at) however many runs the organisation has (a single `status IN`
    query walks the organisation's runs by creation time instead), merged here."""
    runs = []
    for status in PERSON_WAITS:
        runs += (
            Run.objects.filter(organization=organization, status=status)
            .select_related("workflow")
            .only(*WAITING_RUN_FIELDS)
            .order_by("-created_at", "-id")[:limit]
        )
    runs.sort(key=lambda run: (run.created_at, run.id), reverse=True)
    return runs[:limit]


def awaiting_person(*, principal, limit: int = INBOX_MAX) -> list[Waiting]:
    """What the person may decide or answer, newest run first: approval steps whose approvers include
    them, environment gates, and input requests (members and up). Three queries."""
    if not principal.has_role("member"):  # viewers decide nothing
        return []
    runs = _newest_waiting(principal.organization, limit)
    if not runs:
        return []
    # Loop iterations (`parent` set) are left out here, not in SQL: `parent_id IS NULL` would lead SQLite
    # to walk the parent index over every top-level step of every run instead of these runs' steps.
    steps = [
        step
        for step in StepRun.objects.filter(
            run_id__in=[run.id for run in runs],
            status__in=[StepStatus.AWAITING_APPROVAL, StepStatus.AWAITING_INPUT],
        )
        .only(*WAITING_STEP_FIELDS)
        .order_by("queued_at", "id")
        if step.parent_id is None
    ]
    by_run: dict[str, list[StepRun]] = {}
    for step in steps:
        by_run.setdefault(step.run_id, []).append(step)
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


def awaiting_person_count(*, principal) -> int:
    return len(awaiting_person(principal=principal))


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
