"""The trigger's writes and the run read's queries, written once (config/sql.py) because every trigger and
every `GET /runs/{id}` runs them. Each returns or writes what its ORM form would; tests/runs/test_fastpaths.py
runs both and compares."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef

from audit.services import audit_record
from config import sql
from runs.models import Run, RunEvent, StepRun
from workflows.models import Workflow

_INSERT_RUN = sql.Insert(Run)
_INSERT_STEPS = sql.Insert(StepRun)
_SAVE_LAST_RUN = sql.Update(Workflow, ("last_run_at",))
_RUN_DETAIL = sql.Prepared(
    Run,
    lambda organization_id, run_id: Run.objects.filter(organization_id=organization_id, pk=run_id).annotate(
        workflow_name=F("workflow__name"),
        version_number=F("workflow_version__number"),
        has_children=Exists(Run.objects.filter(parent_run_id=OuterRef("pk"))),
    ),
    arity=2,
)
_TOP_LEVEL_STEPS = sql.Prepared(
    StepRun,
    lambda run_id: StepRun.objects.filter(run_id=run_id, parent__isnull=True).order_by("queued_at", "id"),
    arity=1,
)


Row = sql.Row  # the rows of the run read, as the API layer names them

# What the API shows of a run (runs/api/representation.py) and what ordering its steps needs; the engine's
# columns (leases, deadlines, requests, the step's `state`) are not read.
RUN_SHOWN = (
    "id", "workflow_id", "workflow_version_id", "definition_hash", "status", "trigger", "input_data",
    "metadata", "env", "dry_run", "model", "result", "error", "parent_run_id", "pinned", "pause_signal",
    "triggered_by", "triggered_by_type", "created_at", "started_at", "completed_at", "total_tokens",
    "cost_usd",
)  # fmt: skip
STEP_SHOWN = (
    "id", "step_id", "type", "name", "status", "attempt", "attempts", "input_data", "output_data", "error",
    "skip_reason", "started_at", "completed_at", "tokens", "cost_usd",
)  # fmt: skip
_RUN_SHOWN = sql.Rows(
    lambda organization_id, run_id: (
        Run.objects.filter(organization_id=organization_id, pk=run_id)
        .annotate(
            workflow_name=F("workflow__name"),
            version_number=F("workflow_version__number"),
            has_children=Exists(Run.objects.filter(parent_run_id=OuterRef("pk"))),
        )
        .values_list(*RUN_SHOWN, "workflow_name", "version_number", "has_children")
    ),
    arity=2,
)
_STEPS_SHOWN = sql.Rows(
    lambda run_id: (
        StepRun.objects.filter(run_id=run_id, parent__isnull=True)
        .order_by("queued_at", "id")
        .values_list(*STEP_SHOWN)
    ),
    arity=1,
)


def run_shown(organization_id: str, run_id: str) -> Row | None:
    """The organisation's run: the columns of RUN_SHOWN with `workflow_name`, `version_number` and
    `has_children` (as `run_for_detail`), or None."""
    return _RUN_SHOWN.first(organization_id, run_id)


def top_level_steps_shown(run_id: str) -> list[Row]:
    """The columns of STEP_SHOWN of the run's top-level step rows, by `queued_at` then id."""
    return _STEPS_SHOWN.all(run_id)


def insert_run(run: Run, step_rows: list[StepRun]) -> None:
    """Insert a new run and its step rows (as `bulk_create` would)."""
    _INSERT_RUN.add([run])
    _INSERT_STEPS.add(step_rows)


def insert_started_run(run: Run, step_rows: list[StepRun], events: list[tuple]) -> None:
    """Insert a new run as its first advance left it in memory (runs/engine/advance.py `first_advance`),
    its step rows and its first events (rows of `UnitOfWork.events`): what `insert_run`, then the advance's
    UPDATEs of the run and the ready rows and its events' INSERT leave, on PostgreSQL in one statement."""
    sql.insert_together((_INSERT_RUN, [run]), (_INSERT_STEPS, step_rows), (_INSERT_EVENTS, events))


def save_workflow_last_run(workflow: Workflow) -> None:
    """Save `workflow.last_run_at` (as `workflow.save(update_fields=["last_run_at"])` would)."""
    _SAVE_LAST_RUN.save(workflow)


def run_for_detail(organization_id: str, run_id: str) -> Run | None:
    """The organisation's run with `workflow_name`, `version_number` and `has_children`, or None."""
    return _RUN_DETAIL.first(organization_id, run_id)


def top_level_steps(run_id: str) -> list[StepRun]:
    """The run's top-level step rows, by `queued_at` then id."""
    return _TOP_LEVEL_STEPS.all(run_id)


# Many runs created at once (runs/services/batch.py): their rows, first events and audit appends.
_INSERT_EVENTS = sql.Insert(RunEvent, ("run", "seq", "type", "step_id", "data", "created_at"))


def insert_runs(runs: list[Run], step_rows: list[StepRun], events: list[tuple]) -> None:
    """Insert new runs, their step rows and their first events (rows of `UnitOfWork.events`), one
    statement per table (as `bulk_create` would)."""
    _INSERT_RUN.add(runs)
    _INSERT_STEPS.add(step_rows)
    if events:
        _INSERT_EVENTS.add_values(events)


# What a run's first advance changes on its row, unless the advance also finished it (runs/engine/advance.py
# `ready_rows`: the status, the start, the deadline, the events' numbering); tests/runs/test_batch.py checks
# that the rows written are the ones `run_create` writes.
_SAVE_STARTED_RUNS = sql.Update(Run, ("status", "started_at", "deadline_at", "event_seq"))


def save_started_runs(runs: list[Run], events: list[tuple]) -> None:
    """Write runs just started by their first advance (and not finished by it) and their new events (rows
    of `UnitOfWork.events`), one statement each."""
    if runs:
        _SAVE_STARTED_RUNS.save_many(runs)
    if events:
        _INSERT_EVENTS.add_values(events)


def audit_many(entries: list[dict]) -> None:
    """`audit_record(**entry)` for each entry, in order; on PostgreSQL the appends are sent together and
    waited for once."""
    with sql.pipeline():
        for entry in entries:
            audit_record(**entry, defer=True)
