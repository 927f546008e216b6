"""Creating many runs of one organisation at once: a schedule fire pass (runs/scheduling.py).

`runs_create_many` makes the same checks and writes as `run_create` (runs/services/trigger.py) for each run,
but once for the whole batch where `run_create` makes them per run: one organisation lock, one quota count,
one admission decision, one INSERT for the runs, one for their step rows, one for their first events, the
audit appends sent together (one round trip on PostgreSQL) and one dispatch after the commit. Runs of one
organisation are created one after another under its row lock whatever the number of processes
(runs/concurrency.py), so per-run round trips are what bounds how fast 200 schedules due at once start.

What the batch form does not cover is left to `run_create`, one run at a time in the same transaction: a
workflow whose concurrency limit rejects or cancels (`on_limit` `reject` / `cancel_running`), and a batch
the monthly quota cannot hold whole (each run is then checked, so exactly the runs left are created).
Neither environments nor dry runs are taken: scheduled runs have neither.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

from django.db import transaction

from config.errors import ApplicationError, Unprocessable
from runs import concurrency as admission
from runs import fastpaths, quotas
from runs.choices import EventType, RunStatus
from runs.engine.advance import ready_rows
from runs.engine.dispatch import dispatch
from runs.engine.unit_of_work import UnitOfWork, queue_rows
from runs.models import Run, StepRun
from runs.services.trigger import input_errors, run_create, uses_agents
from workflows.models import Workflow, WorkflowVersion


@dataclass
class NewRun:
    """One run to create: what `run_create` takes for it."""

    workflow: Workflow
    version: WorkflowVersion
    actor: object
    input_data: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    audit_data: dict = field(default_factory=dict)


@transaction.atomic
def runs_create_many(items: list[NewRun], *, trigger: str) -> list[Run | ApplicationError]:
    """Create a run for each item (all of one organisation); returns, item by item, its Run or the
    ApplicationError `run_create` would have raised for it (invalid_input, quota_exceeded,
    workflow_already_running): one refused run does not hold the others back. The caller holds no run lock
    (lock order: organisation first)."""
    if not items:
        return []
    organization_ids = {item.workflow.organization_id for item in items}
    if len(organization_ids) != 1:
        raise ValueError("runs_create_many takes the runs of one organisation")
    results: list[Run | ApplicationError | None] = [None] * len(items)
    batch: list[tuple[int, str | None]] = []  # (item index, concurrency key)
    alone: list[int] = []  # left to run_create
    for index, item in enumerate(items):
        limit = admission.policy(item.workflow.concurrency)
        if limit and limit["on_limit"] != "queue":
            alone.append(index)
            continue
        errors = input_errors(item.version.definition, item.input_data)
        if errors:
            results[index] = Unprocessable(
                "invalid_input",
                "The run input does not match the workflow's input schema.",
                details={"errors": errors},
            )
            continue
        try:
            key = admission.concurrency_key(
                limit, input_data=item.input_data, env=None, metadata=item.metadata, trigger=trigger
            )
        except Unprocessable as exc:
            results[index] = exc
            continue
        batch.append((index, key))

    organization = admission.lock_organization(organization_ids.pop())  # the first lock (lock order)
    agents = any(uses_agents(items[index].version.definition.get("steps")) for index, _key in batch)
    if batch and not quotas.batch_fits(organization, len(batch), uses_agents=agents):
        alone += [index for index, _key in batch]
        batch = []
    if batch:
        runs = _create(items, batch, organization, trigger)
        for (index, _key), run in zip(batch, runs, strict=True):
            results[index] = run
    for index in sorted(alone):
        arguments = {f.name: getattr(items[index], f.name) for f in fields(NewRun)}
        try:
            results[index] = run_create(trigger=trigger, **arguments)
        except ApplicationError as exc:
            results[index] = exc
    return results


def _create(items: list[NewRun], batch: list[tuple[int, str | None]], organization, trigger) -> list[Run]:
    """The batch's runs, written (the caller holds the organisation lock and checked the quota)."""
    works: list[UnitOfWork] = []
    rows_of: dict[str, dict[str, StepRun]] = {}
    for index, key in batch:
        item = items[index]
        run = Run(
            organization_id=item.workflow.organization_id,
            workflow=item.workflow,
            workflow_version=item.version,
            definition_hash=item.version.content_hash,
            trigger=trigger,
            input_data=item.input_data,
            metadata=item.metadata,
            env=None,
            dry_run=False,
            model="",
            concurrency_key=key,
            triggered_by=item.actor.actor_id,
            triggered_by_type=item.actor.actor_type,
            status=RunStatus.QUEUED,
        )
        rows_of[run.id] = {
            step["id"]: StepRun(run=run, step_id=step["id"], type=step["type"], name=step.get("name", ""))
            for step in item.version.definition["steps"]
        }
        work = UnitOfWork(run)
        work.emit(EventType.RUN_QUEUED, data={"workflow_version": item.version.number})
        works.append(work)
    runs = [work.run for work in works]
    # Asked before the batch's own runs are written (they would count as queued): FIFO, the cap.
    grouped = any(work.run.concurrency_key is not None for work in works)
    at_once = organization is None or (not grouped and admission.admits_at_once(organization, len(works)))
    queued_events = [event for work in works for event in work.events]
    for work in works:
        work.events = []
    fastpaths.insert_runs(runs, [row for run in runs for row in rows_of[run.id].values()], queued_events)
    for workflow in {work.run.workflow_id: work.run.workflow for work in works}.values():
        workflow.last_run_at = max(run.created_at for run in runs if run.workflow_id == workflow.id)
        fastpaths.save_workflow_last_run(workflow)
    ready: list[StepRun] = []
    alone: list[UnitOfWork] = []  # saved one by one: their start also finished them (or recorded more)
    admitted: list[UnitOfWork] = []  # to be started by admission (limits apply)
    if at_once:
        # Every run starts now: the first advances are made here and written together (the runs' UPDATE,
        # the ready rows', the events') instead of one `UnitOfWork.save` per run.
        plain = []
        for work in works:
            ready += ready_rows(work, admit=True, rows=rows_of[work.run.id])
            (alone if work.audit or work.run.is_terminal else plain).append(work)
        queue_rows(ready)
        for work in plain:
            work.flush_rows()
        fastpaths.save_started_runs([work.run for work in plain], [e for work in plain for e in work.events])
        for work in plain:
            work.events = []
    else:
        # Limits apply: admission decides, FIFO with the organisation's queued runs (runs/concurrency.py).
        admitted = admission.select_admissions_many(organization, works)
    fastpaths.audit_many(
        [
            {
                "organization": items[index].workflow.organization_id,
                "event": "run.triggered",
                "actor": items[index].actor,
                "target": ("run", work.run.id),
                "data": {
                    "workflow_id": work.run.workflow_id,
                    "version": items[index].version.number,
                    "trigger": trigger,
                    "dry_run": False,
                    **items[index].audit_data,
                },
                "run_id": work.run.id,
            }
            for (index, _key), work in zip(batch, works, strict=True)
        ]
    )
    for work in alone:
        work.save()  # its outcome's audit record comes after its run.triggered
    admission.start_admitted(admitted, created_rows=rows_of)
    dispatch([row.id for row in ready])  # one wake-up of the workers for the whole batch
    for run in runs:
        run.created_steps = list(rows_of[run.id].values())
    return runs
