"""Organisation-scoped reads of runs. Another organisation's run or file is simply not found (404).

List filters arrive already parsed (runs.api.serializers.RunFilterSerializer checks their shape) as a
`RunFilters`; `run_filter` turns them into index-friendly conditions. Metadata filters use JSON
containment on PostgreSQL (served by the GIN index `run_metadata_gin`, jsonb_path_ops) and key
transforms elsewhere (SQLite scans the organisation's rows; the embedded setup is not for millions)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime

from django.db import connection
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.fields.json import KeyTransform
from django.db.models.functions import Coalesce

from accounts.models import Organization
from config.errors import not_found
from runs import fastpaths
from runs.choices import STEP_IN_FLIGHT
from runs.engine.plan import plan_for
from runs.models import Run, RunEvent, RunFile, StepRun
from workflows.models import Workflow, WorkflowVersion


@dataclass(frozen=True)
class RunFilters:
    workflow: str | None = None  # id or slug
    workflow_id: str | None = None  # already resolved (GET /workflows/{ref}/runs)
    statuses: tuple[str, ...] = ()
    trigger: str | None = None
    env: str | None = None
    version: int | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    metadata: tuple[tuple[str, str], ...] = field(default_factory=tuple)


def _step_count():
    top_level = (
        StepRun.objects.filter(run=OuterRef("pk"), parent__isnull=True)
        .order_by()
        .values("run")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(top_level, output_field=IntegerField()), Value(0))


def runs_of(organization: Organization) -> QuerySet[Run]:
    """The organisation's runs, newest first, without the heavy joined rows (names come as annotations)."""
    return Run.objects.filter(organization=organization).order_by("-created_at", "-id")


def run_list(*, organization: Organization, filters: RunFilters | None = None) -> QuerySet[Run]:
    """Filtered runs for a list page, annotated with `workflow_name`, `version_number` and `step_count`
    (one query for the page, however many rows it holds)."""
    queryset = run_filter(runs_of(organization), filters or RunFilters())
    # Correlated subqueries, not joins: the paginator's COUNT(*) drops unused annotations, so it stays an
    # index-only count of the runs table, and the subqueries run for the page's rows only.
    return queryset.annotate(
        workflow_name=Subquery(Workflow.objects.filter(pk=OuterRef("workflow_id")).order_by().values("name")),
        version_number=Subquery(
            WorkflowVersion.objects.filter(pk=OuterRef("workflow_version_id")).order_by().values("number")
        ),
        step_count=_step_count(),
    )


def _metadata_candidates(raw: str) -> list:
    """A query value matches the stored string, or the JSON scalar it spells (`42`, `true`)."""
    candidates: list = [raw]
    try:
        parsed = json.loads(raw)
    except ValueError:
        return candidates
    if isinstance(parsed, bool | int) or (isinstance(parsed, float) and math.isfinite(parsed)):
        candidates.append(parsed)
    return candidates


def _metadata_condition(key: str, raw: str, alias: str) -> tuple[Q, dict]:
    candidates = _metadata_candidates(raw)
    if connection.vendor == "postgresql":
        condition = Q()
        for value in candidates:
            condition |= Q(metadata__contains={key: value})
        return condition, {}
    # KeyTransform addresses the key literally (a `__` in a key is not a path separator here).
    condition = Q()
    for value in candidates:
        condition |= Q(**{alias: value})
    return condition, {alias: KeyTransform(key, "metadata")}


def run_filter(queryset: QuerySet[Run], filters: RunFilters) -> QuerySet[Run]:
    """Apply parsed list filters (all of them AND)."""
    if filters.workflow_id:
        queryset = queryset.filter(workflow_id=filters.workflow_id)
    if filters.workflow:
        ref = filters.workflow
        queryset = (
            queryset.filter(workflow_id=ref) if ref.startswith("wf_") else queryset.filter(workflow__slug=ref)
        )
    if filters.statuses:
        statuses = sorted(set(filters.statuses))
        queryset = (
            queryset.filter(status=statuses[0])
            if len(statuses) == 1
            else queryset.filter(status__in=statuses)
        )
    if filters.trigger:
        queryset = queryset.filter(trigger=filters.trigger)
    if filters.env:
        queryset = queryset.filter(env=filters.env)
    if filters.version is not None:
        queryset = queryset.filter(workflow_version__number=filters.version)
    if filters.created_after is not None:
        queryset = queryset.filter(created_at__gte=filters.created_after)
    if filters.created_before is not None:
        queryset = queryset.filter(created_at__lt=filters.created_before)
    for index, (key, raw) in enumerate(filters.metadata):
        condition, aliases = _metadata_condition(key, raw, f"_meta_{index}")
        if aliases:
            queryset = queryset.alias(**aliases)
        queryset = queryset.filter(condition)
    return queryset


def run_get(*, organization: Organization, run_id: str, for_detail: bool = False) -> Run:
    """The organisation's run `run_id`, or 404 run_not_found. `for_detail` also loads the workflow's
    name, the version number (one query, without the version's definition) and whether any run names it
    as its parent (`has_children`: most runs have none, and the detail then skips reading them)."""
    if for_detail:
        run = fastpaths.run_for_detail(organization.pk, run_id)
    else:
        run = runs_of(organization).filter(pk=run_id).first()
    if run is None:
        raise not_found("run", run_id)
    return run


# A loop's detail lists at most this many iterations (a loop may have up to 10,000); the step carries
# `iteration_count` with the true number.
MAX_DETAIL_ITERATIONS = 1000


@dataclass
class RunSteps:
    steps: list[StepRun]
    iterations: dict[str, list[StepRun]]  # parent step run id → its first iterations, by index
    iteration_counts: dict[str, int]


def run_steps(*, run: Run) -> RunSteps:
    """The run's top-level steps in definition order, and the iterations of its loop steps (3 queries
    at most, whatever the number of steps)."""
    steps = fastpaths.top_level_steps(run.pk)
    order = _definition_order(run)
    if order:
        steps.sort(key=lambda row: order.get(row.step_id, len(order)))
    loops = [row.id for row in steps if row.type == "loop"]
    iterations: dict[str, list[StepRun]] = {row_id: [] for row_id in loops}
    counts: dict[str, int] = dict.fromkeys(loops, 0)
    if loops:
        for row in (
            StepRun.objects.filter(parent_id__in=loops).order_by().values("parent_id").annotate(n=Count("*"))
        ):
            counts[row["parent_id"]] = row["n"]
        children = StepRun.objects.filter(parent_id__in=loops, iteration__lt=MAX_DETAIL_ITERATIONS)
        for child in children.order_by("parent_id", "iteration"):
            iterations[child.parent_id].append(child)
    return RunSteps(steps=steps, iterations=iterations, iteration_counts=counts)


def _definition_order(run: Run) -> dict[str, int]:
    """Step id → position in the definition, from the engine's per-process cache of prepared versions
    (no query once the version was seen); a run without a content hash reads the definition."""
    if run.definition_hash:
        return {step_id: index for index, step_id in enumerate(plan_for(run).steps)}
    definition = (
        WorkflowVersion.objects.filter(pk=run.workflow_version_id)
        .values_list("definition", flat=True)
        .first()
    )
    steps = (definition or {}).get("steps") or []
    return {step.get("id"): index for index, step in enumerate(steps) if isinstance(step, dict)}


def current_step_ids(run_ids: list[str]) -> dict[str, list[str]]:
    """For each run, the step ids of its top-level steps that are in flight (queued, running, waiting
    or waiting for a person). One query for any number of runs."""
    found: dict[str, list[str]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    rows = (
        StepRun.objects.filter(run_id__in=run_ids, parent__isnull=True, status__in=sorted(STEP_IN_FLIGHT))
        .order_by("run_id", "queued_at", "id")
        .values_list("run_id", "step_id")
    )
    for run_id, step_id in rows:
        found[run_id].append(step_id)
    return found


def run_events(*, run: Run, after_seq: int | None = None) -> QuerySet[RunEvent]:
    """The run's event log in sequence order (from `after_seq` + 1 when given)."""
    queryset = RunEvent.objects.filter(run=run).order_by("seq")
    if after_seq is not None:
        queryset = queryset.filter(seq__gt=after_seq)
    return queryset


def run_file_get(*, run: Run, file_id: str) -> RunFile:
    """An attachment of this run (the run is already org-scoped), or 404 file_not_found."""
    found = RunFile.objects.filter(run=run, organization_id=run.organization_id, pk=file_id).first()
    if found is None:
        raise not_found("file", file_id)
    return found
