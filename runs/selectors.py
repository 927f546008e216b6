"""Organisation-scoped reads of runs. Another organisation's run or file is simply not found (404).
List filters are runs/filtersets.py's `RunFilterSet`."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce

from accounts.models import Organization
from config.errors import not_found
from runs import fastpaths
from runs.choices import STEP_IN_FLIGHT
from runs.engine.plan import plan_for
from runs.models import Run, RunEvent, RunFile, StepRun
from workflows.models import Workflow, WorkflowVersion


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


def run_list(*, organization: Organization, filters=None) -> QuerySet[Run]:
    """Runs for a list page, annotated with `workflow_name`, `version_number` and `step_count` (one query
    for the page, however many rows it holds), narrowed by `filters` (a validated RunFilterSet) if given."""
    queryset = runs_of(organization) if filters is None else run_filter(runs_of(organization), filters)
    # Correlated subqueries, not joins: the paginator's COUNT(*) drops unused annotations, so it stays an
    # index-only count of the runs table, and the subqueries run for the page's rows only.
    return queryset.annotate(
        workflow_name=Subquery(Workflow.objects.filter(pk=OuterRef("workflow_id")).order_by().values("name")),
        version_number=Subquery(
            WorkflowVersion.objects.filter(pk=OuterRef("workflow_version_id")).order_by().values("number")
        ),
        step_count=_step_count(),
    )


def run_filter(queryset: QuerySet[Run], filters) -> QuerySet[Run]:
    """`queryset` narrowed by `filters`, a validated runs.filtersets.RunFilterSet (a bulk action's
    `filter`)."""
    return filters.filter_queryset(queryset)


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
    return _with_iterations(run, fastpaths.top_level_steps(run.pk))


def run_shown(*, organization: Organization, run_id: str) -> tuple[fastpaths.Row, RunSteps]:
    """The organisation's run and its steps as the API shows them (runs/api/representation.py `run_detail`),
    or 404 run_not_found: `run_get(for_detail=True)` and `run_steps` reading only the columns the API
    shows, into rows rather than model instances (a loop's iterations are instances still)."""
    run = fastpaths.run_shown(organization.pk, run_id)
    if run is None:
        raise not_found("run", run_id)
    return run, _with_iterations(run, fastpaths.top_level_steps_shown(run.id))


def _with_iterations(run, steps: list) -> RunSteps:
    """`steps` (the run's top-level rows) in definition order, with the first iterations of its loops."""
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


def _definition_order(run) -> dict[str, int]:
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
