"""The engine: advance a run under its row lock, execute one step run with a lease, record outcomes.

Invariants (docs/engine.md):
- every change to a run or its step runs happens in a transaction that first locks the run row
  (`SELECT … FOR UPDATE`; on SQLite the IMMEDIATE transaction serializes writers), so a run has one
  writer at a time and `RunEvent.seq` stays gapless;
- a worker owns a step run only through its lease token (`lease_owner`); a result recorded with a stale
  token (the step was reclaimed meanwhile) is discarded;
- handlers run outside any transaction, except those of instant steps (pure and quick: transform,
  condition, end), which run under the run lock in the transaction that found them ready, for at most
  BATON_INSTANT_STEPS_MS; `advance` is idempotent.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F
from django.db.models.functions import Coalesce
from django.utils import timezone

from config import sql
from runs.choices import (
    RUN_TERMINAL_EVENTS,
    STEP_FINISHED,
    EventType,
    RunStatus,
    SkipReason,
    StepStatus,
)
from runs.engine import monitor, subworkflows
from runs.engine import secrets as engine_secrets
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.dispatch import dispatch, request_admission
from runs.engine.templating import evaluate_expression, render_value
from runs.models import Run, RunEvent, StepRun
from workflows.steps import get_step_type

logger = logging.getLogger("baton.engine")

LEASE_GRACE_SECONDS = 30
# A worker continues straight into the next ready step, but not forever: after this long it rings the
# doorbell instead, so one django-q2 task stays well below the cluster's task timeout.
INLINE_CONTINUE_SECONDS = 30.0
_HOST = f"{socket.gethostname()}:{os.getpid()}"
# Steps waiting for a person (approval, input): not started work either, so a run that ends cancels them.
_PERSON_WAIT = (StepStatus.AWAITING_APPROVAL, StepStatus.AWAITING_INPUT)
_UNSTARTED = (StepStatus.PENDING, StepStatus.QUEUED, StepStatus.WAITING, *_PERSON_WAIT)


# ---------------------------------------------------------------------------------------------
# The pinned definition, prepared once per workflow version (versions are immutable).


@dataclass(frozen=True)
class Plan:
    version: int
    steps: dict[str, dict]
    order: list[str]  # topological
    deps: dict[str, list[str]]
    output: Any
    has_output: bool


def plan_for(run: Run) -> Plan:
    """The prepared definition of the run's pinned version."""
    return _plan(run.workflow_version_id, run.definition_hash)


def plan_for_version(version) -> Plan:
    return _plan(version.pk, version.content_hash)


@lru_cache(maxsize=512)
def _plan(version_pk: int, content_hash: str) -> Plan:
    from workflows.definition import dependency_graph, topological_order
    from workflows.models import WorkflowVersion

    version = WorkflowVersion.objects.only("number", "definition").get(
        pk=version_pk, content_hash=content_hash
    )
    definition = version.definition
    return Plan(
        version=version.number,
        steps={step["id"]: step for step in definition["steps"]},
        order=topological_order(definition),
        deps=dependency_graph(definition),
        output=definition.get("output"),
        has_output="output" in definition,
    )


def _step_definition(plan: Plan, step_run: StepRun) -> tuple[dict, dict]:
    """(the step as written, the policy step: the loop step for an iteration, else the step itself)."""
    step = plan.steps[step_run.step_id]
    if step_run.parent_id is None:
        return step, step
    inline = step["config"]["step"]
    return {"id": step["id"], **inline, "config": inline.get("config", {})}, step


# ---------------------------------------------------------------------------------------------
# Small helpers


def _now():
    return timezone.now()


def _iso(moment) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


_LOCK_RUN = sql.Select(Run, None, "{pk} = %s", for_update=True)


def _lock_run(run_id: str) -> Run:
    run = _LOCK_RUN.first(run_id)
    if run is None:
        raise Run.DoesNotExist(f"run {run_id} does not exist")
    return run


def emit(run: Run, event_type: str, step_id: str = "", data: dict | None = None) -> None:
    """Append an event to the run's log; the caller holds the run lock and calls `save_run`, which writes
    the transaction's events in one INSERT with `run.event_seq`. Kept as the row's values (in
    `_INSERT_EVENTS`' order), not as a `RunEvent`: a run of transform steps emits a dozen."""
    run.event_seq += 1
    run.__dict__.setdefault("_pending_events", []).append(
        (run.id, run.event_seq, event_type, step_id, data or {}, timezone.now())
    )


_RUN_FIELDS = [
    "status",
    "started_at",
    "completed_at",
    "deadline_at",
    "result",
    "error",
    "event_seq",
    "cancel_requested_at",
    "terminate_requested_at",
    "pause_requested_at",
    "pause_signal",
    "total_tokens",
    "cost_usd",
]


_SAVE_RUN = sql.Update(Run, _RUN_FIELDS, must_exist=True)  # as run.save(update_fields=…) was
_INSERT_EVENTS = sql.Insert(RunEvent, ("run", "seq", "type", "step_id", "data", "created_at"))


def save_run(run: Run, *, last: bool = False) -> None:
    """Write what the transaction changed on the locked run: the step rows whose save was deferred, the
    buffered events (one INSERT), the run itself, then the audit events of its outcome (`_finish_run`).
    `last`: nothing follows in the outermost transaction, whose COMMIT goes with these writes."""
    from audit.services import audit_record

    # One pipeline (config/sql.py): on PostgreSQL these writes, the audit append (one statement there) and,
    # when `last`, the COMMIT cost one round trip, and the audit chain's head stays locked only while the
    # server runs the append and the commit.
    with sql.pipeline(commit=last):
        flush_rows(run)
        events = run.__dict__.pop("_pending_events", None)
        if events:
            _INSERT_EVENTS.add_values(events)
        _SAVE_RUN.save(run)
        for entry in run.__dict__.pop("_pending_audit", ()):
            audit_record(**entry, defer=True)


# What executing an instant step changes on its row (`_execute_instant`, `_complete_step`).
_INSTANT_FIELDS = ("status", "output_data", "error", "input_data", "attempt", "attempts", "state",
                   "queued_at", "started_at", "completed_at", "dispatched_at", "wake_at")  # fmt: skip
_SAVE_INSTANT_ROWS = sql.Update(StepRun, _INSTANT_FIELDS)


def flush_rows(run: Run) -> None:
    """Save the completed instant steps whose save `_complete_step(defer=True)` left for later: one statement
    for all of them (executemany, the values prepared by the fields themselves), instead of a Model.save()
    each. Called before anything in the transaction reads step rows from the database again."""
    rows = run.__dict__.pop("_unsaved_rows", None)
    if rows:
        _SAVE_INSTANT_ROWS.save_many(rows)


def variables_for(run: Run, plan: Plan, rows: list[StepRun] | None = None) -> dict:
    """The template variables of a run: inputs, steps.<id>.{output,status,error}, run, env, secrets."""
    if rows is None:
        rows = list(
            StepRun.objects.filter(run_id=run.id, parent__isnull=True, status__in=STEP_FINISHED).only(
                "step_id", "status", "output_data", "error"
            )
        )
    steps = {
        row.step_id: {"output": row.output_data, "status": row.status, "error": row.error}
        for row in rows
        if row.status in STEP_FINISHED
    }
    return {
        "inputs": run.input_data,
        "steps": steps,
        "run": {
            "id": run.id,
            "workflow_id": run.workflow_id,
            "workflow_version": plan.version,
            "trigger": run.trigger,
            "env": run.env,
            "dry_run": run.dry_run,
            "metadata": run.metadata,
            "created_at": _iso(run.created_at),
            "started_at": _iso(run.started_at),
        },
        "env": run.env,
        # Loaded on first use, once per step execution (runs/engine/secrets.py); unknown names are errors.
        "secrets": engine_secrets.lazy_secrets(run.organization_id),
    }


def _json_default(value):
    if isinstance(value, range | tuple | set | frozenset):
        return list(value)
    if isinstance(value, datetime):
        return _iso(value)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def as_json(value: Any, step_id: str, what: str) -> Any:
    """`value` as plain JSON (ranges and tuples become lists); StepError when it cannot be stored."""
    try:
        return json.loads(json.dumps(value, default=_json_default, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise StepError("invalid_output", f"Step '{step_id}' {what} cannot be stored as JSON: {exc}",
                        retryable=False) from None  # fmt: skip


def _template_error(step_id: str, where: str, exc: Exception) -> StepError:
    detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return StepError("template_error", f"Step '{step_id}' {where}: {detail}", retryable=False)


def resolve_config(step: dict, variables: dict) -> dict:
    """The step's config with templates rendered and expression fields evaluated (raises StepError)."""
    step_type = get_step_type(step["type"])
    config = step.get("config") or {}
    resolved = {}
    for key, value in config.items():
        if step_type is None or key in step_type.literal_fields or (step["type"] == "loop" and key == "step"):
            resolved[key] = value
            continue
        try:
            if key in step_type.expression_fields and isinstance(value, str):
                resolved[key] = evaluate_expression(value, variables)
            else:
                resolved[key] = render_value(value, variables)
        except Exception as exc:
            raise _template_error(step["id"], f"config.{key}", exc) from None
    return resolved


def has_side_effects(step_type_name: str, config: dict) -> bool:
    """Would executing this step change the world outside Baton? (dry runs skip such steps)"""
    step_type = get_step_type(step_type_name)
    if step_type is None or not step_type.has_side_effects:
        return False
    if step_type_name == "http_request":
        return str(config.get("method", "GET")).upper() not in ("GET", "HEAD")
    return True


# ---------------------------------------------------------------------------------------------
# Advancing a run


def advance(run_id: str) -> list[str]:
    """Decide what can happen next in the run and dispatch it; idempotent. Returns the dispatched ids."""
    with transaction.atomic():
        run = _lock_run(run_id)
        ready = advance_locked(run)
        save_run(run)
        dispatch(ready)
    return ready


def advance_locked(run: Run, *, admit: bool = False, rows: dict[str, StepRun] | None = None) -> list[str]:
    """The body of `advance` (the caller holds the run lock and saves the run); returns ready step ids.

    A `queued` run only starts with `admit=True`: admission (runs/concurrency.py) decides when a run fits
    its workflow's and organisation's concurrency limits. `rows`: the run's top-level rows in hand and
    current (see `_advance_rows`)."""
    return _queue_rows(_advance_rows(run, admit=admit, rows=rows))


_QUEUE_ROWS = sql.Update(StepRun, ("status", "queued_at", "dispatched_at"))


def _queue_rows(rows: list[StepRun]) -> list[str]:
    """Persist ready rows (already `queued` in memory); returns their ids. Every advance that readies a step
    runs this: a statement written once (config/sql.py), not an ORM update compiled anew (150-200 µs less
    per advance on PostgreSQL)."""
    if rows:
        _QUEUE_ROWS.save_many(rows)
    return [row.id for row in rows]


_ADVANCE_FIELDS = ("id", "run_id", "step_id", "type", "status", "skip_reason", "output_data", "error",
                   "parent_id", "iteration", "attempt", "attempts", "state", "queued_at",
                   "started_at")  # fmt: skip


def _advance_rows(run: Run, *, admit: bool = False, rows: dict[str, StepRun] | None = None) -> list[StepRun]:
    """advance_locked's decisions; the ready rows are returned `queued` in memory but not yet saved, and the
    run's top-level rows are kept on it (`_engine_rows`) for the next step's template variables. `rows`:
    the top-level rows in hand, current because every change of this transaction went through them (the
    instant steps' loop), instead of reading them again."""
    if run.is_terminal:
        return []
    now = _now()
    if run.cancel_requested_at is not None:
        _cancel_unstarted(run, now)
        if not StepRun.objects.filter(run_id=run.id, status=StepStatus.RUNNING).exists():
            _finish_run(run, RunStatus.CANCELLED, now=now)
        return []
    if run.status == RunStatus.QUEUED:
        if not admit:
            return []
        run.status = RunStatus.RUNNING
        run.started_at = run.started_at or now  # a resumed run keeps its first start
        # The security policy's max_run_duration_seconds (capped by the setting) and max_steps_per_run.
        limits = engine_secrets.run_limits(run)
        run.deadline_at = now + timedelta(seconds=limits.max_duration_seconds)
        emit(run, EventType.RUN_STARTED)
        if limits.violation is not None:
            _finish_run(run, RunStatus.FAILED, now=now, error=limits.violation)
            return []

    plan = plan_for(run)
    # Every top-level row, once per advance, with only the columns deciding (and claiming) needs: a long
    # chain does not decode every step's resolved config and attempts again at each step. Other fields load
    # on access in the rare paths that need them; saving such a row writes only its loaded fields.
    if rows is None:
        rows = _read_rows(run)
    run.__dict__["_engine_rows"] = rows
    if run.pause_requested_at is not None and any(row.status not in STEP_FINISHED for row in rows.values()):
        _settle_pause(run, now)  # nothing new starts; paused once no step runs
        return []
    variables = None
    ready: list[StepRun] = []
    for step_id in plan.order:
        row = rows[step_id]
        if row.status != StepStatus.PENDING:
            continue
        deps = plan.deps[step_id]
        if any(rows[dep].status not in STEP_FINISHED for dep in deps):
            continue
        blocking = [
            dep
            for dep in deps
            if rows[dep].status == StepStatus.FAILED and plan.steps[dep].get("on_failure") != "continue"
        ]
        if blocking:  # normally the run already failed when that step failed
            failed = rows[blocking[0]]
            _finish_run(run, RunStatus.FAILED, now=now, error=_run_error(failed))
            return []
        if deps and all(_skipped_branch(rows[dep]) for dep in deps):
            _skip(run, row, SkipReason.UPSTREAM_SKIPPED, now)
            continue
        if _branch_not_taken(plan, rows, step_id):
            _skip(run, row, SkipReason.BRANCH_NOT_TAKEN, now)
            continue
        when = plan.steps[step_id].get("when")
        if when is not None:
            if variables is None:
                variables = variables_for(run, plan, list(rows.values()))
            try:
                go = evaluate_expression(when, variables) if isinstance(when, str) else when
            except Exception as exc:
                # A Jinja message may quote a value (`steps[secrets.X]`): redacted like any stored error.
                error = engine_secrets.redact_when_error(
                    run.organization_id, _template_error(step_id, "when", exc)
                )
                row.attempts = [
                    *row.attempts,
                    _attempt_entry(row, "failed", error.as_dict(), _Attempt("", now)),
                ]
                if _step_failed(run, row, plan.steps[step_id], error.as_dict(), now):
                    return []
                variables = None
                continue
            if not go:
                _skip(run, row, SkipReason.WHEN_FALSE, now)
                variables = None
                continue
        row.status = StepStatus.QUEUED
        row.queued_at = row.dispatched_at = now
        ready.append(row)

    if ready:
        return ready
    if any(row.status not in STEP_FINISHED for row in rows.values()):
        return []
    # Every top-level step finished, so every iteration did too (a loop finishes after its iterations).
    _complete_run(run, plan, list(rows.values()), now, all_finished=True)
    return []


_READ_ROWS = sql.Select(
    StepRun, _ADVANCE_FIELDS, "{run_id} = %s AND {parent_id} IS NULL", order_by="{queued_at}, {id}"
)


def _read_rows(run: Run) -> dict[str, StepRun]:
    """The run's top-level step rows by step id, with the columns advancing and instant steps need."""
    return {row.step_id: row for row in _READ_ROWS.all(run.id)}


def _skipped_branch(row: StepRun) -> bool:
    """A dependency that did not happen. Dry-run skips count as done: the rest of the plan still runs."""
    if row.status == StepStatus.SKIPPED:
        return row.skip_reason != SkipReason.DRY_RUN
    return row.status == StepStatus.CANCELLED


def _branch_not_taken(plan: Plan, rows: dict[str, StepRun], step_id: str) -> bool:
    for dep in plan.deps[step_id]:
        step = plan.steps[dep]
        if step["type"] != "condition" or rows[dep].status != StepStatus.COMPLETED:
            continue
        taken = bool((rows[dep].output_data or {}).get("result"))
        other = step["config"].get("else" if taken else "then", [])
        if step_id in other:
            return True
    return False


def _skip(run: Run, row: StepRun, reason: str, now, input_data=None) -> None:
    row.status = StepStatus.SKIPPED
    row.skip_reason = reason
    row.completed_at = now
    fields = ["status", "skip_reason", "completed_at"]
    if input_data is not None:
        row.input_data = input_data
        fields.append("input_data")
    row.save(update_fields=fields)
    emit(run, EventType.STEP_SKIPPED, row.step_id, _event_data(row, reason=reason))


def _event_data(row: StepRun, **extra) -> dict:
    data = {"step_run_id": row.id, "type": row.type}
    if row.iteration is not None:
        data["iteration"] = row.iteration
    data.update(extra)
    return data


def _complete_run(run: Run, plan: Plan, rows: list[StepRun], now, *, all_finished=False) -> None:
    result = None
    if plan.has_output:
        try:
            result = render_value(plan.output, variables_for(run, plan, rows))
        except Exception as exc:
            detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            error = {
                "code": "output_error",
                "message": f"The workflow output could not be rendered: {detail}",
            }
            _finish_run(run, RunStatus.FAILED, now=now, error={**error, "step_id": None})
            return
    _finish_run(run, RunStatus.COMPLETED, now=now, result=result, all_finished=all_finished)


def _run_error(row: StepRun) -> dict:
    error = row.error or {}
    return {
        "code": error.get("code", "step_failed"),
        "message": error.get("message", f"Step '{row.step_id}' failed."),
        "step_id": row.step_id,
    }


def _cancel_unstarted(run: Run, now) -> None:
    StepRun.objects.filter(run_id=run.id, status__in=_UNSTARTED).update(
        status=StepStatus.CANCELLED, completed_at=now, wake_at=None
    )


def _finish_run(run: Run, status: str, *, now, result=None, error=None, all_finished=False) -> None:
    """Make the run terminal: unstarted steps are cancelled, running ones may still record their outcome.
    `all_finished`: the caller knows every step finished (no UPDATE to cancel the unstarted ones)."""
    from accounts.principal import SYSTEM

    if not all_finished:
        _cancel_unstarted(run, now)
    result, error = engine_secrets.redact_run_outcome(run.organization_id, result, error)
    run.status = status
    run.completed_at = now
    run.pause_signal = None  # nobody is asked anything any more
    run.result = result
    run.error = error
    data = {"status": status}
    if error:
        data["error"] = error
    if status == RunStatus.CANCELLED and run.terminate_requested_at is not None:
        data["terminated"] = True
    emit(run, RUN_TERMINAL_EVENTS[status], data=data)
    # A slot is free: admit queued runs in a transaction of its own after this one commits (never here:
    # admission locks the organisation first, and this transaction already holds a run lock).
    request_admission(run.organization_id)
    # Sub-workflows: wake the parent step waiting for this run, cancel children (after commit, see there).
    subworkflows.on_run_finished(run, status)
    if status in (RunStatus.COMPLETED, RunStatus.FAILED):
        # Appended by `save_run`, last: the append locks the organisation's audit chain until this
        # transaction commits, and every run's outcome of the organisation waits for that lock.
        run.__dict__.setdefault("_pending_audit", []).append(
            {
                "organization": run.organization_id,
                "event": f"run.{status}",
                "actor": SYSTEM,
                "target": ("run", run.id),
                "data": {"workflow_id": run.workflow_id, **({"error": error} if error else {})},
                "run_id": run.id,
            }
        )


# ---------------------------------------------------------------------------------------------
# Executing one step run


def step_execute(step_run_id: str) -> None:
    """Claim the step run, execute it, record the outcome, advance; continue into a single next step.
    An instant step is executed within its claim's transaction (and whatever instant steps it readies)."""
    deadline = time.monotonic() + INLINE_CONTINUE_SECONDS
    claimed = _claim(step_run_id, _now())
    while claimed is not None:
        claimed = _execute_one(claimed, may_continue=time.monotonic() < deadline)


Claimed = tuple[Run, StepRun, str]


def lease_seconds(policy: dict) -> int:
    """How long a claim (and each heartbeat, see monitor.py) holds a step: its timeout + grace, at most
    BATON_STEP_LEASE_SECONDS. The heartbeat keeps extending it while the worker lives, so a dead worker
    loses a long step after one lease instead of after its whole timeout."""
    timeout = policy.get("timeout_seconds")
    lease = settings.BATON_STEP_LEASE_SECONDS
    return min(timeout + LEASE_GRACE_SECONDS, lease) if timeout else lease


# The claim's first statements, by the step run's id: its run (locked), the step run, the run's top-level
# step rows (an instant step is executed from them, and they are its template variables and the advance's).
_RUN_OF_STEP = "(SELECT {run} FROM {table} WHERE {id} = %s)".format(
    run=StepRun._meta.get_field("run").column, table=StepRun._meta.db_table, id=StepRun._meta.pk.column
)
_LOCK_RUN_OF_STEP = sql.Select(Run, None, "{pk} = " + _RUN_OF_STEP, for_update=True)
_CLAIM_PEEK = sql.Select(StepRun, ("run_id", "status", "step_id", "type", "parent_id"), "{pk} = %s")
_READ_ROWS_OF_STEP = sql.Select(
    StepRun,
    _ADVANCE_FIELDS,
    f"{{run_id}} = {_RUN_OF_STEP} AND {{parent_id}} IS NULL",
    order_by="{queued_at}, {id}",
)


def _claim(step_run_id: str, now) -> Claimed | None:
    with transaction.atomic():
        # One round trip on PostgreSQL (a pipeline): the server runs the three statements in order, so the
        # step and the rows are read after the run's lock is granted, each with a snapshot of its own, and
        # are current. Reading the rows is wasted on a step that is not an instant top-level one: a read in
        # the same round trip costs less than a round trip of its own for the instant steps.
        with sql.pipeline():
            locked = _LOCK_RUN_OF_STEP.send(step_run_id)
            peek = _CLAIM_PEEK.send(step_run_id)
            top_level = _READ_ROWS_OF_STEP.send(step_run_id)
            run = locked.first()
            found = peek.values()
            rows = {step.step_id: step for step in top_level.all()}
        if run is None or not found or found[0]["status"] != StepStatus.QUEUED:
            return None  # a duplicate or stale message: nothing to do
        row = found[0]
        instant = _is_instant(row["type"])
        if row["parent_id"] is not None:
            rows = None
        if run.is_terminal or run.cancel_requested_at is not None:
            StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).update(
                status=StepStatus.CANCELLED, completed_at=now
            )
            ready = advance_locked(run)
            save_run(run)
            dispatch(ready)
            return None
        if run.pause_requested_at is not None:
            _unclaim_paused(run, step_run_id, now)
            save_run(run)
            return None
        if instant:
            # Executed here, under the lock this claim holds, and recorded in this same transaction.
            budget = _instant_budget()
            if rows is not None:
                step_run = rows[row["step_id"]]
                step_run = step_run if step_run.id == step_run_id else None
            else:
                step_run = StepRun.objects.filter(pk=step_run_id).first()
            if step_run is None or step_run.status != StepStatus.QUEUED:
                return None
            ready = _execute_instant(run, step_run, rows)
            return _go_on(run, ready, now, may_continue=True, budget=budget, rows=rows)
        step_run = StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).first()
        if step_run is None:
            return None
        claimed = _claim_row(run, step_run, now, StepStatus.QUEUED)
        save_run(run)
    return claimed


def _claim_locked(run: Run, step_run_id: str, now) -> Claimed | None:
    """Compare-and-set a queued step to running with a fresh lease token (the caller holds the run lock)."""
    step_run = StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).first()
    if step_run is None:
        return None
    return _claim_row(run, step_run, now, StepStatus.QUEUED)


def _claim_row(run: Run, step_run: StepRun, now, expected: str) -> Claimed | None:
    """Claim a step run in hand whose stored status is `expected`: `queued`, or `pending` when `_record`
    continues straight into a step it just found ready (it is never stored as `queued` then)."""
    lease = lease_seconds(_step_definition(plan_for(run), step_run)[1])
    token = f"{_HOST}:{uuid.uuid4().hex[:12]}"
    changes = {"queued_at": now} if expected == StepStatus.PENDING else {}
    claimed = StepRun.objects.filter(pk=step_run.id, status=expected).update(
        status=StepStatus.RUNNING,
        lease_owner=token,
        lease_expires_at=now + timedelta(seconds=lease),
        attempt=F("attempt") + 1,
        started_at=Coalesce(F("started_at"), now),
        dispatched_at=None,
        wake_at=None,
        **changes,
    )
    if not claimed:
        return None
    step_run.status = StepStatus.RUNNING
    step_run.lease_owner = token
    step_run.attempt += 1
    step_run.started_at = step_run.started_at or now
    if not step_run.state.get("suspended"):
        emit(run, EventType.STEP_STARTED, step_run.step_id, _event_data(step_run, attempt=step_run.attempt))
    return run, step_run, token


@dataclass(frozen=True)
class _Attempt:
    token: str
    started_at: datetime | None
    duration_ms: int = 0


@dataclass(frozen=True)
class _Execution:
    """What one execution of a step's handler produced, redacted, ready to be recorded."""

    attempt: _Attempt
    outcome: StepOutcome | None
    error: StepError | None
    input_data: Any
    dry_run_skip: bool


def _execute_one(claimed: Claimed, *, may_continue: bool) -> Claimed | None:
    """Execute a claimed step and record it; returns the next step, already claimed, to continue into."""
    run, step_run, token = claimed
    rows = run.__dict__.pop("_engine_rows", None)  # the step rows read by the advance that readied this step
    policy = _step_definition(plan_for(run), step_run)[1]
    # Heartbeat and terminate signal while this thread works on the step (runs/engine/monitor.py).
    watch = monitor.watch(step_run.id, run.id, token, lease_seconds(policy))
    try:
        execution = _run_handler(run, step_run, rows, token, watch.should_stop)
    finally:
        monitor.unwatch(watch)
    return _record(run.id, step_run.id, execution, may_continue)


def _never_stop() -> bool:
    return False


def _run_handler(run: Run, step_run: StepRun, rows, token: str, should_stop=_never_stop) -> _Execution:
    """Resolve the step's config and execute its handler (outside any transaction, except for an instant
    step); errors become the execution's error, secrets are redacted from everything to be stored."""
    now = _now()
    plan = plan_for(run)
    step, policy = _step_definition(plan, step_run)
    started = time.monotonic()
    input_data = None
    outcome: StepOutcome | None = None
    error: StepError | None = None
    dry_run_skip = False
    security = engine_secrets.begin_execution(run.organization_id)  # secrets and policy, loaded once
    try:
        step_type = get_step_type(step_run.type)
        variables = variables_for(run, plan, list(rows.values()) if rows is not None else None)
        if step_run.parent_id is not None:
            variables = {**variables, "item": step_run.state.get("item"), "index": step_run.iteration}
        input_data = as_json(resolve_config(step, variables), step_run.step_id, "config")
        if run.dry_run and has_side_effects(step_run.type, input_data):
            dry_run_skip = True
        else:
            if step_type is None or step_type.execute is None:
                raise StepError(
                    "step_type_not_available",
                    f"Step '{step_run.step_id}' has type '{step_run.type}', which this Baton version cannot "
                    "execute yet.",
                    retryable=False,
                )
            timeout = policy.get("timeout_seconds")
            deadline = now + timedelta(seconds=timeout or settings.BATON_STEP_LEASE_SECONDS)
            context = StepContext(
                run_id=run.id,
                step_run_id=step_run.id,
                step_id=step_run.step_id,
                step_type=step_run.type,
                config=input_data,
                step=step,
                attempt=step_run.attempt,
                deadline=deadline,
                now=now,
                dry_run=run.dry_run,
                variables=variables,
                state=dict(step_run.state),
                organization_id=run.organization_id,
                render=lambda value, variables=variables: render_value(value, variables),
                run_model=run.model,
                should_stop=should_stop,
            )
            outcome = step_type.execute(context)
            if timeout and _now() > deadline:
                raise StepError(
                    "step_timeout", f"Step '{step_run.step_id}' took longer than its {timeout} s timeout."
                )
            if not isinstance(outcome, StepOutcome):
                outcome = StepOutcome.completed(outcome)
            if outcome.output is not None:
                outcome = replace(outcome, output=as_json(outcome.output, step_run.step_id, "output"))
    except StepError as exc:
        error = exc
    except Exception as exc:
        logger.exception("step %s (%s) raised", step_run.id, step_run.type)
        error = StepError("step_error", f"Step '{step_run.step_id}' raised {type(exc).__name__}: {exc}")
    # What the handler resolved itself (an agent step's prompt and model) is stored with the resolved config.
    extra = getattr(error, "input_extra", None) or (outcome.input_extra if outcome is not None else None)
    if extra and isinstance(input_data, dict):
        input_data = {**input_data, **as_json(extra, step_run.step_id, "input")}
    # Secret values and redact_patterns matches become *** in everything stored; the loop step cap.
    input_data, outcome, error = engine_secrets.finish_execution(security, run, input_data, outcome, error)
    duration_ms = int((time.monotonic() - started) * 1000)
    attempt = _Attempt(token=token, started_at=now, duration_ms=duration_ms)
    return _Execution(attempt, outcome, error, input_data, dry_run_skip)


def _attempt_entry(row: StepRun, status: str, error, attempt: _Attempt | None = None) -> dict:
    started_at = attempt.started_at if attempt else (row.started_at if row.attempt <= 1 else None)
    return {
        "attempt": row.attempt,
        "status": status,
        "error": error,
        "duration_ms": attempt.duration_ms if attempt else 0,
        "started_at": _iso(started_at),
    }


def _record(run_id, step_run_id, execution: _Execution, may_continue=False) -> Claimed | None:
    """Store the outcome of an attempt and advance. When exactly one step became ready (and `may_continue`),
    claim it in the same transaction and return it, saving this worker a queue round trip; instant steps
    that became ready are executed here first."""
    outcome, error, attempt = execution.outcome, execution.error, execution.attempt
    with transaction.atomic():
        run = _lock_run(run_id)
        row = (
            StepRun.objects.select_for_update()
            .filter(pk=step_run_id, status=StepStatus.RUNNING, lease_owner=attempt.token)
            .first()
        )
        if row is None:
            logger.info("step run %s was reclaimed; its late result is discarded", step_run_id)
            return None
        now = _now()
        row.lease_owner = ""
        row.lease_expires_at = None
        if execution.input_data is not None:
            row.input_data = execution.input_data
        if run.is_terminal:
            # The run ended while this step ran (failed elsewhere, ended, timed out): keep the outcome for
            # the record, but start nothing and write no event after the run's terminal one.
            charged = _charge(run, row, outcome, error)  # tokens spent count even so (docs/quotas.md)
            _close_quietly(row, outcome, error, attempt, now)
            if charged:
                save_run(run)
            return None
        if run.terminate_requested_at is not None:
            # Terminated while running (the handler was told to stop, a script was killed): whatever it
            # returned, the step ends cancelled; the run is cancelled once no step is running.
            _charge(run, row, outcome, error)
            _terminate_step(row, now, attempt)
            ready = advance_locked(run)
            save_run(run)
            dispatch(ready)
            return None
        budget = _instant_budget()
        ready = _apply_outcome(run, row, execution, now)
        return _go_on(run, ready, now, may_continue=may_continue, budget=budget)


def _apply_outcome(run: Run, row: StepRun, execution: _Execution, now, *, instant=False) -> list[str]:
    """Store an execution's outcome on its locked step row (finished, retrying, suspended, or spawning a
    loop's iterations; the run may end); returns the step run ids it queued. `instant`: an instant step's,
    whose row may be saved later with the others (a completed top-level step: nothing in this transaction
    reads it from the database before `save_run`, except `_end_run`, which flushes first)."""
    plan = plan_for(run)
    step, policy = _step_definition(plan, row)
    outcome, error, attempt = execution.outcome, execution.error, execution.attempt
    ready: list[str] = []
    if error is not None:
        row.attempts = [*row.attempts, _attempt_entry(row, "failed", error.as_dict(), attempt)]
        _charge(run, row, outcome, error)  # a failed attempt's tokens (error details.tokens) count too
        ready += _attempt_failed(run, row, policy, error, now)
    elif execution.dry_run_skip:
        row.save()
        _skip(run, row, SkipReason.DRY_RUN, now)
        ready += _after_step_finished(run, row, plan, now)
    elif outcome.kind == "suspended":
        # approval and input steps wait for a person (state "awaiting"), anything else for a timer or
        # the engine; wake_at is then the person's deadline (docs/approvals.md).
        awaiting = outcome.state.get("awaiting")
        row.status = _AWAITING_STATUS[awaiting] if awaiting else StepStatus.WAITING
        row.wake_at = outcome.wake_at
        row.state = {**outcome.state, "suspended": True}
        # The resumed execution continues this attempt, so the claim's increment is given back.
        row.attempt = max(row.attempt - 1, 0)
        row.save()
        if awaiting:
            _await_person(run, row, now)
    elif outcome.kind == "spawn_iterations":
        ready += _spawn_iterations(run, row, step, outcome.items, now)
    else:
        defer = instant and row.parent_id is None and outcome.kind == "completed"
        _complete_step(run, row, outcome, now, attempt, defer=defer)
        if outcome.kind == "end_run":
            _end_run(run, plan, row, outcome, now)
        else:
            ready += _after_step_finished(run, row, plan, now)
    return ready


def _instant_budget() -> float:
    """The time.monotonic() until which this transaction may execute instant steps (transform, condition,
    end) that become ready, under the run lock, before the ones left are queued or continued into as usual
    (settings.BATON_INSTANT_STEPS_MS; 0: never). On SQLite the transaction holds the one write lock."""
    return time.monotonic() + settings.BATON_INSTANT_STEPS_MS / 1000


def _is_instant(type_name: str) -> bool:
    step_type = get_step_type(type_name)
    return step_type is not None and step_type.instant and settings.BATON_INSTANT_STEPS_MS > 0


def _execute_instant(run: Run, row: StepRun, rows: dict[str, StepRun] | None) -> list[str]:
    """Execute an instant step under the run lock the caller holds and record its outcome in the caller's
    transaction: no lease, no claim of its own (nothing else can see the step until this commits). `row`
    is stored as pending or queued; `rows` are the run's top-level rows in hand, for its variables."""
    now = _now()
    row.status = StepStatus.RUNNING
    row.attempt += 1
    row.started_at = row.started_at or now
    row.queued_at = row.queued_at or now
    row.dispatched_at = None
    row.wake_at = None
    emit(run, EventType.STEP_STARTED, row.step_id, _event_data(row, attempt=row.attempt))
    execution = _run_handler(run, row, rows, token="")
    if execution.input_data is not None:
        row.input_data = execution.input_data
    return _apply_outcome(run, row, execution, _now(), instant=True)


def _go_on(
    run: Run, ready: list[str], now, *, may_continue: bool, budget: float, rows: dict | None = None
) -> Claimed | None:
    """After an outcome was stored on a locked run: advance it, execute the instant steps that became ready
    (until `budget`, a time.monotonic() deadline, passes), claim one step to continue into when exactly one
    is ready (and `may_continue`), queue the others; saves the run and dispatches after commit. `rows`: the
    run's top-level rows in hand, current (else they are read). The last database work of its caller's
    transaction, which commits with the run's writes (`save_run(last=True)`)."""
    may_continue = may_continue and run.pause_requested_at is None
    fresh = _advance_rows(run, rows=rows) if not run.is_terminal else []
    while may_continue and not run.is_terminal and time.monotonic() < budget:
        instant = [row for row in fresh if _is_instant(row.type)]
        if not instant:
            break
        fresh = [row for row in fresh if not _is_instant(row.type)]
        rows = run.__dict__["_engine_rows"]
        for row in instant:
            if run.is_terminal:
                break
            ready += _execute_instant(run, row, rows)
        if run.is_terminal:
            fresh = []  # still pending in the database, where finishing the run cancelled them
            break
        fresh += _advance_rows(run, rows=rows)
    following = None
    if may_continue and not ready and len(fresh) == 1 and not run.is_terminal:
        # Exactly one step became ready: claim it straight from pending (one UPDATE) and continue.
        following = _claim_row(run, fresh[0], now, StepStatus.PENDING)
    if following is None:
        ready += _queue_rows(fresh)
        if len(ready) == 1 and may_continue and not run.is_terminal:
            following = _claim_locked(run, ready[0], now)
    save_run(run, last=True)  # the callers return what this returns from their outermost transaction
    dispatch(ready if following is None else [])  # after commit (`on_commit`): no database work here
    return following


def _close_quietly(row: StepRun, outcome, error, attempt: _Attempt, now) -> None:
    if error is None and outcome is not None and outcome.kind == "completed":
        row.status = StepStatus.COMPLETED
        row.output_data = outcome.output
        row.attempts = [*row.attempts, _attempt_entry(row, "completed", None, attempt)]
    else:
        error_data = error.as_dict() if error else {"code": "run_ended", "message": "The run ended first."}
        row.status = StepStatus.FAILED if error else StepStatus.CANCELLED
        row.error = error_data if error else None
        row.attempts = [*row.attempts, _attempt_entry(row, row.status, error_data, attempt)]
    row.completed_at = now
    row.wake_at = None
    row.save()


def _terminate_step(row: StepRun, now, attempt: _Attempt | None = None) -> None:
    error = {"code": "terminated", "message": f"Step '{row.step_id}' was stopped: the run was terminated."}
    row.status = StepStatus.CANCELLED
    row.error = error
    row.completed_at = now
    row.wake_at = None
    row.attempts = [*row.attempts, _attempt_entry(row, "cancelled", error, attempt)]
    row.save()


def _token_counts(tokens) -> dict[str, int]:
    if not isinstance(tokens, dict):
        return {}
    return {k: v for k, v in tokens.items() if isinstance(v, int) and not isinstance(v, bool) and v >= 0}


def _charge(run: Run, row: StepRun, outcome: StepOutcome | None, error: StepError | None) -> bool:
    """Add an attempt's LLM tokens and cost to the step's and the run's totals (the step's `tokens` sum
    over its attempts): an outcome's, and a failed attempt's (its error's `details.tokens` and
    `details.cost_usd`, e.g. invalid_llm_output after two answers). True when anything was added."""
    details = (error.details or {}) if error is not None else {}
    sources = [(details.get("tokens"), details.get("cost_usd"))]
    if outcome is not None:
        sources.append((outcome.tokens, outcome.cost_usd))
    charged = False
    for tokens, cost in sources:
        counts = _token_counts(tokens)
        if counts:
            current = _token_counts(row.tokens)
            row.tokens = {**current, **{key: current.get(key, 0) + value for key, value in counts.items()}}
            run.total_tokens += counts.get("total", 0)
            charged = True
        if isinstance(cost, int | float | Decimal) and not isinstance(cost, bool) and cost > 0:
            amount = Decimal(str(cost))
            row.cost_usd += amount
            run.cost_usd += amount
            charged = True
    return charged


def _complete_step(
    run: Run, row: StepRun, outcome: StepOutcome, now, attempt: _Attempt | None = None, *, defer=False
) -> None:
    """Store a completed outcome on the row and emit `step_completed`. `defer`: an instant top-level step,
    whose row is saved with the others by `flush_rows` (see there) instead of now."""
    row.status = StepStatus.COMPLETED
    row.output_data = outcome.output
    row.error = None
    row.completed_at = now
    row.wake_at = None
    row.state = {}
    row.attempts = [*row.attempts, _attempt_entry(row, "completed", None, attempt)]
    duration_ms = attempt.duration_ms if attempt else 0
    _charge(run, row, outcome, None)
    if defer:
        run.__dict__.setdefault("_unsaved_rows", []).append(row)
    else:
        row.save()
    emit(
        run,
        EventType.STEP_COMPLETED,
        row.step_id,
        _event_data(row, attempt=row.attempt, duration_ms=duration_ms),
    )


def _attempt_failed(run: Run, row: StepRun, policy: dict, error: StepError, now) -> list[str]:
    """Retry per the step's policy (a `waiting` step with wake_at) or fail it; returns ids to dispatch."""
    retry = policy.get("retry") or {}
    max_attempts = retry.get("max_attempts", 1)
    row.error = error.as_dict()
    if error.retryable and row.attempt < max_attempts:
        delay = retry.get("backoff_seconds", 0) * retry.get("backoff_multiplier", 1) ** (row.attempt - 1)
        emit(
            run,
            EventType.STEP_RETRYING,
            row.step_id,
            _event_data(row, attempt=row.attempt, error=row.error, delay_seconds=delay),
        )
        if delay > 0:
            row.status = StepStatus.WAITING
            row.wake_at = now + timedelta(seconds=delay)
            row.save()
            return []
        row.status = StepStatus.QUEUED
        row.dispatched_at = now
        row.save()
        return [row.id]
    plan = plan_for(run)
    if _step_failed(run, row, policy, row.error, now):
        return []
    return _after_step_finished(run, row, plan, now)


def _step_failed(run: Run, row: StepRun, policy: dict, error: dict, now) -> bool:
    """Mark the step failed for good; True when that failed the run."""
    row.status = StepStatus.FAILED
    row.error = error
    row.completed_at = now
    row.wake_at = None
    row.save()
    emit(run, EventType.STEP_FAILED, row.step_id, _event_data(row, attempt=row.attempt, error=error))
    if row.parent_id is None and policy.get("on_failure") != "continue":
        _finish_run(run, RunStatus.FAILED, now=now, error=_run_error(row))
        return True
    return False


def _end_run(run: Run, plan: Plan, row: StepRun, outcome: StepOutcome, now) -> None:
    if outcome.run_status == RunStatus.FAILED:
        error = {"code": "run_ended", "message": outcome.message, "step_id": row.step_id}
        _finish_run(run, RunStatus.FAILED, now=now, error=error, result=outcome.output)
        return
    if outcome.output is not None or not plan.has_output:
        _finish_run(run, RunStatus.COMPLETED, now=now, result=outcome.output)
        return
    flush_rows(run)
    rows = list(StepRun.objects.filter(run_id=run.id, parent__isnull=True))
    _complete_run(run, plan, rows, now)


# ---------------------------------------------------------------------------------------------
# Loops: one child step run per item; the loop step waits (holding no worker) until they finish.


def _spawn_iterations(run: Run, row: StepRun, step: dict, items: list, now) -> list[str]:
    inline = step["config"]["step"]
    if not items:
        _complete_step(run, row, StepOutcome.completed({"items": []}), now)
        return _after_step_finished(run, row, plan_for(run), now)
    StepRun.objects.bulk_create(
        [
            StepRun(
                run_id=run.id,
                step_id=row.step_id,
                type=inline["type"],
                name=inline.get("name", ""),
                parent=row,
                iteration=index,
                state={"item": item},
            )
            for index, item in enumerate(items)
        ]
    )
    row.status = StepStatus.WAITING
    row.wake_at = None
    row.state = {"iterations": len(items)}
    row.save()
    return _advance_loop(run, row, step, now)


def _after_step_finished(run: Run, row: StepRun, plan: Plan, now) -> list[str]:
    """An iteration finished: let its loop start more or finish. Top-level steps: nothing to do here."""
    if row.parent_id is None:
        return []
    parent = StepRun.objects.select_for_update().get(pk=row.parent_id)
    if parent.status != StepStatus.WAITING:
        return []  # the loop already failed or was cancelled
    return _advance_loop(run, parent, plan.steps[parent.step_id], now)


def _advance_loop(run: Run, parent: StepRun, step: dict, now) -> list[str]:
    """Fail, complete or top up a waiting loop; a few indexed queries, whatever the number of items."""
    children = StepRun.objects.filter(parent=parent)
    failed = children.filter(status=StepStatus.FAILED).order_by("iteration").first()
    if failed is not None:
        error = {
            "code": "loop_iteration_failed",
            "message": f"Iteration {failed.iteration} failed: {(failed.error or {}).get('message', '')}",
        }
        children.filter(status__in=_UNSTARTED).update(status=StepStatus.CANCELLED, completed_at=now)
        parent.attempts = [*parent.attempts, _attempt_entry(parent, "failed", error)]
        _step_failed(run, parent, step, error, now)
        return []
    counts = dict(children.values_list("status").annotate(count=Count("pk")).order_by())
    unfinished = sum(count for status, count in counts.items() if status not in STEP_FINISHED)
    if unfinished == 0:
        outputs = children.order_by("iteration").values_list("output_data", flat=True)
        _complete_step(run, parent, StepOutcome.completed({"items": list(outputs)}), now)
        return []
    in_flight = unfinished - counts.get(StepStatus.PENDING, 0)
    room = step["config"].get("max_concurrency", 1) - in_flight
    if room <= 0:
        return []
    ready = list(
        children.filter(status=StepStatus.PENDING).order_by("iteration").values_list("pk", flat=True)[:room]
    )
    if ready:
        StepRun.objects.filter(pk__in=ready).update(
            status=StepStatus.QUEUED, queued_at=now, dispatched_at=now
        )
    return ready


# ---------------------------------------------------------------------------------------------
# Reclaiming and waking (called by the reconciler, each under the run lock with a compare-and-set)


def step_reclaim(step_run_id: str) -> bool:
    """Fail the attempt of a running step whose lease expired (retrying per policy); True if reclaimed."""
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        run = _lock_run(run_id)
        now = _now()
        row = (
            StepRun.objects.select_for_update()
            .filter(pk=step_run_id, status=StepStatus.RUNNING, lease_expires_at__lt=now)
            .first()
        )
        if row is None:
            return False
        plan = plan_for(run)
        policy = _step_definition(plan, row)[1]
        error = StepError(
            "lease_expired",
            f"The worker running step '{row.step_id}' stopped responding (its lease expired).",
        )
        row.lease_owner = ""
        row.lease_expires_at = None
        if run.terminate_requested_at is not None and not run.is_terminal:
            _terminate_step(row, now)  # its worker died after the run was terminated: nothing to retry
            ready = advance_locked(run)
            save_run(run)
            dispatch(ready)
            return True
        row.attempts = [*row.attempts, _attempt_entry(row, "failed", error.as_dict())]
        if run.is_terminal:  # nothing to retry for: just close the step
            row.status = StepStatus.FAILED
            row.error = error.as_dict()
            row.completed_at = now
            row.save()
            return True
        ready = _attempt_failed(run, row, policy, error, now)
        if not run.is_terminal:
            ready += advance_locked(run)
        save_run(run)
        dispatch(ready)
    return True


def step_wake(step_run_id: str) -> bool:
    """Requeue a waiting step whose timer is due (wait step, retry backoff), or settle a step waiting for a
    person whose timeout passed (approval: its `on_timeout`; input: `input_timeout`); True if acted on."""
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        run = _lock_run(run_id)
        if run.pause_requested_at is not None:
            return False  # woken by the resume
        now = _now()
        woken = StepRun.objects.filter(pk=step_run_id, status=StepStatus.WAITING, wake_at__lte=now).update(
            status=StepStatus.QUEUED, wake_at=None, dispatched_at=now
        )
        if woken:
            dispatch([step_run_id])
        else:
            woken = _person_timeout(run, step_run_id, now)
    return bool(woken)


# ---------------------------------------------------------------------------------------------
# Steps waiting for a person: approval and input (docs/approvals.md; the rules are in runs/people.py)

_AWAITING_STATUS = {"approval": StepStatus.AWAITING_APPROVAL, "input": StepStatus.AWAITING_INPUT}
_AWAITING_EVENT = {"approval": EventType.RUN_AWAITING_APPROVAL, "input": EventType.RUN_AWAITING_INPUT}
_RUN_AWAITING = {
    StepStatus.AWAITING_APPROVAL: RunStatus.AWAITING_APPROVAL,
    StepStatus.AWAITING_INPUT: RunStatus.AWAITING_INPUT,
}


def _await_person(run: Run, row: StepRun, now) -> None:
    """A step started waiting for a person: `run_awaiting_*` event, and the run's status follows."""
    signal = row.state.get("signal") or {}
    emit(run, _AWAITING_EVENT[row.state["awaiting"]], row.step_id, _event_data(row, pause_signal=signal))
    sync_awaiting(run, now)


def sync_awaiting(run: Run, now) -> None:
    """Make a locked run's status and `pause_signal` follow its steps waiting for a person: awaiting_approval
    or awaiting_input with the signal of the step named so far (else the first waiting one in plan order),
    or `running` again when none waits. Time spent waiting does not count against the run's duration limit:
    the deadline is cleared while waiting and starts anew afterwards (as after a resume). Runs queued,
    paused or finished are left alone. The caller saves the run."""
    if run.status not in (RunStatus.RUNNING, RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_INPUT):
        return
    waiting = {
        row.step_id: row
        for row in StepRun.objects.filter(run_id=run.id, parent__isnull=True, status__in=_PERSON_WAIT).only(
            "id", "step_id", "status", "state"
        )
    }
    if not waiting:
        if run.status != RunStatus.RUNNING:
            run.status = RunStatus.RUNNING
            run.pause_signal = None
            run.deadline_at = now + timedelta(seconds=engine_secrets.run_limits(run).max_duration_seconds)
        return
    named = (run.pause_signal or {}).get("step_id")
    if named not in waiting:
        named = next(step_id for step_id in plan_for(run).order if step_id in waiting)
    row = waiting[named]
    run.status = _RUN_AWAITING[row.status]
    run.pause_signal = row.state.get("signal")
    run.deadline_at = None


def person_answered(run: Run, row: StepRun, now, *, state: dict, output=None) -> None:
    """A locked step waiting for a person has its answer (`state` holds it, with `outcome`): requeue it so
    its handler turns the answer into the step's outcome; the run's status follows the steps still waiting."""
    row.state = {**row.state, **state}
    fields = ["state", "status", "wake_at", "dispatched_at"]
    if output is not None:
        row.output_data = output
        fields.append("output_data")
    row.status = StepStatus.QUEUED
    row.wake_at = None
    row.dispatched_at = now
    row.save(update_fields=fields)
    sync_awaiting(run, now)
    dispatch([row.id])


def approval_record(run: Run, row: StepRun, decision: dict, now) -> str | None:
    """Add `decision` ({by, by_type, approved, note, at}) to a locked step awaiting approval. Returns the
    outcome it settles — "rejected" (any rejection), "approved" (`required_approvals` reached, or the
    system's timeout decision) — and then requeues the step; None while more approvals are needed. The
    decisions so far are the step's output meanwhile."""
    decisions = [*(row.state.get("decisions") or []), decision]
    required = (row.input_data or {}).get("required_approvals", 1)
    if not decision["approved"]:
        outcome = "rejected"
    elif decision.get("by_type") == "system" or sum(1 for d in decisions if d["approved"]) >= required:
        outcome = "approved"
    else:
        outcome = None
    output = {"approved": outcome == "approved", "decisions": decisions}
    if outcome is None:
        row.state = {**row.state, "decisions": decisions}
        row.output_data = output
        row.save(update_fields=["state", "output_data"])
    else:
        person_answered(run, row, now, state={"decisions": decisions, "outcome": outcome}, output=output)
    return outcome


def _person_timeout(run: Run, step_run_id: str, now) -> bool:
    """The reconciler's timeout of a step waiting for a person (the caller holds the run lock)."""
    from accounts.principal import SYSTEM
    from audit.services import audit_record

    if run.is_terminal or run.pause_requested_at is not None:
        return False
    row = (
        StepRun.objects.select_for_update()
        .filter(pk=step_run_id, status__in=_PERSON_WAIT, wake_at__lte=now)
        .first()
    )
    if row is None:
        return False
    config = row.input_data or {}
    if row.status == StepStatus.AWAITING_INPUT:
        person_answered(run, row, now, state={"outcome": "timed_out", "answered_at": _iso(now)})
        save_run(run)
        return True
    approve = config.get("on_timeout", "reject") == "approve"
    verb, policy = ("approved", "approve") if approve else ("rejected", "reject")
    seconds = config.get("timeout_seconds")
    note = f"No decision within {seconds} s: {verb} by the timeout (on_timeout: {policy})."
    decision = {"by": "system", "by_type": "system", "approved": approve, "note": note, "at": _iso(now)}
    approval_record(run, row, decision, now)
    audit_record(
        organization=run.organization,
        event="run.approved" if approve else "run.rejected",
        actor=SYSTEM,
        target=("run", run.id),
        data={"step_id": row.step_id, "step_run_id": row.id, "approved": approve, "timeout": True},
        note=note,
        run_id=run.id,
    )
    save_run(run)
    return True


def run_fail_timeout(run_id: str) -> bool:
    """Fail an active run past its deadline with `run_timeout`; True if it was failed here."""
    with transaction.atomic():
        run = _lock_run(run_id)
        now = _now()
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
        _finish_run(run, RunStatus.FAILED, now=now, error=error)
        save_run(run)
    return True


def run_request_cancel(run: Run, now) -> None:
    """Ask a locked run to stop: nothing new starts; it is cancelled once no step is running."""
    run.cancel_requested_at = now
    advance_locked(run)
    subworkflows.on_cancel_requested(run)


def run_request_terminate(run: Run, now) -> None:
    """Terminate a locked run: like a cancel request, and the workers running its steps are told to stop
    (the step monitor polls `terminate_requested_at`; scripts are killed). Each running step ends
    `cancelled` with error code `terminated`; the run is cancelled once no step is running."""
    run.terminate_requested_at = now
    run.cancel_requested_at = run.cancel_requested_at or now
    advance_locked(run)
    subworkflows.on_cancel_requested(run)


# ---------------------------------------------------------------------------------------------
# Pause and resume (runs/resume.py holds the services; docs/runs-api.md "Pause, resume and rerun")


def _settle_pause(run: Run, now) -> None:
    """A run asked to pause becomes `paused` once none of its steps is running or queued. Its duration
    limit stops with it (deadline cleared; a resume starts a new one)."""
    if run.status == RunStatus.PAUSED:
        return
    busy = StepRun.objects.filter(run_id=run.id, status__in=(StepStatus.RUNNING, StepStatus.QUEUED))
    if busy.exists():
        return
    run.status = RunStatus.PAUSED
    run.deadline_at = None
    emit(run, EventType.RUN_PAUSED)


def _unclaim_paused(run: Run, step_run_id: str, now) -> None:
    """A queued step's message arrived after the pause: it goes back to where it was (pending, or waiting
    and due at once for a step resumed from a suspension) and the run may now be paused."""
    row = StepRun.objects.filter(pk=step_run_id, status=StepStatus.QUEUED).only("id", "state").first()
    if row is not None:
        if row.state.get("suspended"):
            changes = {"status": StepStatus.WAITING, "wake_at": now, "dispatched_at": None}
        else:
            changes = {"status": StepStatus.PENDING, "queued_at": None, "dispatched_at": None}
        StepRun.objects.filter(pk=row.id, status=StepStatus.QUEUED).update(**changes)
    _advance_rows(run)


def run_request_pause(run: Run, now) -> None:
    """Ask a locked, active run to pause: no new step starts; paused at once when none is running."""
    run.pause_requested_at = run.pause_requested_at or now
    _advance_rows(run)


def run_continue(run: Run, now) -> list[str]:
    """Resume a locked `paused` run (or one asked to pause) where it stopped: timers that fell due meanwhile
    fire now, loops top up their iterations, ready steps start. Returns the dispatched step run ids."""
    run.pause_requested_at = None
    if run.status == RunStatus.PAUSED:
        run.status = RunStatus.RUNNING
        limits = engine_secrets.run_limits(run)
        run.deadline_at = now + timedelta(seconds=limits.max_duration_seconds)
        emit(run, EventType.RUN_STARTED, data={"resumed": True})
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
        ready += _advance_loop(run, loop, plan.steps[loop.step_id], now)
    ready += advance_locked(run)
    sync_awaiting(run, now)  # steps still waiting for a person: the run waits for them again
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
