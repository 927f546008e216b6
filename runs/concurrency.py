"""Concurrency limits and admission: when a `queued` run may start (docs/engine.md "Concurrency").

A run holds a *slot* from its admission (the first advance: `queued` → `running`) until it is terminal,
including while it waits for a timer or a person. A run waiting at the environment gate for the approval
that lets it start (runs/services/approvals.py) holds none: it is not admitted yet. Two limits apply:

- the workflow's `concurrency` `{"limit", "key", "on_limit"}`: at most `limit` admitted runs per workflow
  and rendered key (`Run.concurrency_key`; a null key template means one group for the whole workflow).
  `reject` refuses a trigger when `limit` runs of the group are not terminal yet (queued and gated included);
  `queue` leaves the new run queued; `cancel_running` cancels the oldest non-terminal runs of the group
  (cooperatively) so the new one fits — it starts as soon as their running steps have finished;
- the organisation's `max_concurrent_runs` (default BATON_MAX_CONCURRENT_RUNS; null = unlimited). A
  sub-workflow's child run is outside this cap: it runs inside its parent's slot.

Admission is FIFO per organisation (by `created_at`, `id`): a queued run is admitted when both its group
and the organisation have a free slot; a run blocked by its group does not block runs of other groups.
Limits are read at admission, so lowering one applies to runs still queued.

Correctness with many web and worker processes: every admission decision (run_create's and `admit`'s) is
taken under the organisation's row lock (`SELECT … FOR UPDATE`; on SQLite the IMMEDIATE transaction
serializes writers), and only admission moves a run out of `queued`, so counts read under that lock are
exact or too high (a run finishing concurrently), never too low: a limit is never exceeded.
Nothing is stranded: a run that finishes requests admission after its commit (`dispatch.request_admission`),
and the reconciler calls `admit_pending()` every pass as a safety net.

Lock order (no deadlocks): organisation → runs (each transaction's run locks are taken, in one ordered
statement, before its first audit append) → step runs → audit chain head. The engine's transactions lock a
run and never the organisation; they request admission for after their commit instead.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter

from django.db import transaction
from django.db.models import Count

from accounts.models import Organization
from config import sql
from config.errors import Unprocessable
from runs.choices import RUN_ACTIVE, RunStatus
from runs.engine.advance import advance_locked
from runs.engine.dispatch import dispatch, request_admission
from runs.engine.templating import render_value
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, StepRun
from workflows.models import Workflow

ACTIVE = RUN_ACTIVE  # not terminal (queued included)
# Runs holding a slot: admitted and not terminal. Admission sets `started_at`, so a run in one of these
# statuses without it was never admitted and holds no slot: a run waiting at the environment gate
# (`awaiting_approval` before its start, runs/services/approvals.py) or one paused before it was admitted.
ADMITTED = frozenset(RUN_ACTIVE - {RunStatus.QUEUED})
# How many queued runs one admission pass looks at (oldest first).
ADMISSION_BATCH = 1000
KEY_MAX_CHARS = 255


def policy(concurrency) -> dict | None:
    """The workflow's stored `concurrency` with defaults (on_limit queue, key null), or None for none."""
    if not isinstance(concurrency, dict) or not isinstance(concurrency.get("limit"), int):
        return None
    return {
        "limit": max(concurrency["limit"], 1),
        "key": concurrency.get("key"),
        "on_limit": concurrency.get("on_limit") or "queue",
    }


def concurrency_key(concurrency: dict | None, *, input_data: dict, env, metadata: dict, trigger: str):
    """The run's `concurrency_key`: None without a workflow limit, "" for a null key template, else the
    rendered template (JSON for non-strings; a SHA-256 when longer than 255 characters). A template that
    cannot be rendered with this input → Unprocessable invalid_input naming the template."""
    if not concurrency:
        return None
    template = concurrency.get("key")
    if template is None:
        return ""
    variables = {
        "inputs": input_data,
        "env": env,
        "run": {"metadata": metadata, "trigger": trigger, "env": env},
    }
    try:
        value = render_value(template, variables)
    except Exception as exc:
        detail = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        message = f"The workflow's concurrency key {template!r} cannot be rendered with this input: {detail}"
        raise Unprocessable("invalid_input", message, details={"errors": [message]}) from None
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > KEY_MAX_CHARS:
        text = "sha256:" + hashlib.sha256(text.encode()).hexdigest()
    return text


def group_runs(workflow_id: str, concurrency: dict, key):
    """The runs of the workflow's concurrency group for `key`."""
    runs = Run.objects.filter(workflow_id=workflow_id)
    if concurrency.get("key") is not None:
        runs = runs.filter(concurrency_key=key)
    return runs


def lock_organization(organization_id: str) -> Organization | None:
    """The organisation row, locked: the first lock of every admission decision. FOR NO KEY UPDATE, not FOR
    UPDATE: inserts referencing the organisation (runs, audit events) take FOR KEY SHARE on it for their
    foreign-key check, which FOR UPDATE would block (a deadlock with an engine transaction holding a run
    lock and appending to the audit chain)."""
    return _LOCK_ORGANIZATION.first(organization_id)


# Written once (config/sql.py): every trigger and every admission takes this lock.
_LOCK_ORGANIZATION = sql.Select(
    Organization,
    ("id", "max_concurrent_runs", "monthly_run_limit", "monthly_token_quota"),  # runs/quotas.py
    "{pk} = %s",
    for_update="FOR NO KEY UPDATE",
)
_QUEUED_COLUMNS = ("id", "workflow_id", "concurrency_key", "parent_step_run_id")
_QUEUED_RUNS = sql.Select(
    Run,
    _QUEUED_COLUMNS,
    "{organization_id} = %s AND {status} = %s AND {cancel_requested_at} IS NULL",
    order_by="{created_at}, {id}",
    limit=ADMISSION_BATCH,
)


def admit(organization_id: str) -> list[str]:
    """Admit the organisation's queued runs that fit now (its own transaction); returns their ids.

    A plain read comes first, outside any transaction: an admission locks the organisation (on SQLite it
    takes the database's one write lock), not worth doing when nothing is queued, as after most finished
    runs. That read cannot strand a run: a run is left queued only by a transaction that also requests an
    admission after its own commit (`select_admissions`). If this read, made after the finishing run
    committed, does not see the queued run, that run's transaction committed after the read began, so its
    own admission starts later still and sees the finished run's slot free. The reconciler's
    `admit_pending()` remains the safety net."""
    if not _has_queued(organization_id):
        return []
    with transaction.atomic():
        organization = lock_organization(organization_id)
        if organization is None:
            return []
        return start_admitted(select_admissions(organization))


# Asked after most finished runs: written once (config/sql.py).
_QUEUED_RUN = sql.Select(Run, ("id",), "{organization_id} = %s AND {status} = %s", limit=1)


def _has_queued(organization_id: str) -> bool:
    return bool(_QUEUED_RUN.rows(organization_id, RunStatus.QUEUED))


def admit_pending() -> int:
    """The reconciler's safety net: run admission for every organisation with queued runs."""
    organizations = list(
        Run.objects.filter(status=RunStatus.QUEUED)
        .order_by()
        .values_list("organization_id", flat=True)
        .distinct()[:ADMISSION_BATCH]
    )
    return sum(len(admit(organization_id)) for organization_id in organizations)


def select_admissions(organization: Organization, this_run: UnitOfWork | None = None) -> list[UnitOfWork]:
    """Decide which queued runs start now and lock them (the caller holds the organisation lock and must
    not have appended to the audit chain yet); FIFO, both limits. `this_run`: the run this transaction
    already holds (one it just created, resumed or approved), used as it is.

    `this_run` left queued gets an admission after this transaction commits: a run finishing meanwhile
    may have looked for queued runs before this one was visible (`admit`)."""
    this_transaction = {this_run.run.id: this_run} if this_run is not None else {}
    chosen = _select_admissions(organization, this_transaction)
    if this_run is not None and all(work is not this_run for work in chosen):
        request_admission(organization.id)
    return chosen


def admits_at_once(organization: Organization, count: int) -> bool:
    """Whether `count` new runs outside any workflow's concurrency group would all be admitted now: none of
    the organisation's runs is queued (admission is FIFO) and its cap has room for them all. The caller
    holds the organisation lock (runs/services/batch.py)."""
    if _has_queued(organization.id):
        return False
    if organization.max_concurrent_runs is None:
        return True
    held = Run.objects.filter(
        organization_id=organization.id,
        status__in=ADMITTED,
        started_at__isnull=False,
        parent_step_run__isnull=True,
    ).count()
    return held + count <= organization.max_concurrent_runs


def select_admissions_many(organization: Organization, these_runs: list[UnitOfWork]) -> list[UnitOfWork]:
    """`select_admissions` for several runs this transaction created (runs/services/batch.py): those left
    queued get one admission after the commit."""
    this_transaction = {work.run.id: work for work in these_runs}
    chosen = _select_admissions(organization, this_transaction)
    if len([work for work in chosen if work.run.id in this_transaction]) < len(this_transaction):
        request_admission(organization.id)
    return chosen


def _select_admissions(
    organization: Organization, this_transaction: dict[str, UnitOfWork]
) -> list[UnitOfWork]:
    queued = [
        tuple(row[name] for name in _QUEUED_COLUMNS)
        for row in _QUEUED_RUNS.values(organization.id, RunStatus.QUEUED)
    ]
    if not queued:
        return []
    # A sub-workflow's child runs inside its parent's slot: it neither counts against nor waits for the
    # organisation's cap (a parent waiting for a child that waits for the parent's slot would never end).
    free = None
    if organization.max_concurrent_runs is not None:
        free = organization.max_concurrent_runs - (
            Run.objects.filter(
                organization_id=organization.id,
                status__in=ADMITTED,
                started_at__isnull=False,
                parent_step_run__isnull=True,
            ).count()
        )
        if free <= 0 and all(row[3] is None for row in queued):
            return []
    # The workflow of a run in hand is in hand too (run_create read its policy from it already).
    concurrencies = {
        work.run.workflow_id: work.run.workflow.concurrency
        for work in this_transaction.values()
        if Run.workflow.is_cached(work.run)
    }
    missing = {row[1] for row in queued} - concurrencies.keys()
    if missing:
        concurrencies.update(Workflow.objects.filter(pk__in=missing).values_list("id", "concurrency"))
    limits = {
        workflow_id: policy(concurrency)
        for workflow_id, concurrency in concurrencies.items()
        if policy(concurrency)
    }
    busy: Counter = Counter()
    if limits:
        held = (
            Run.objects.filter(workflow_id__in=list(limits), status__in=ADMITTED, started_at__isnull=False)
            .order_by()
            .values("workflow_id", "concurrency_key")
            .annotate(count=Count("pk"))
            .values_list("workflow_id", "concurrency_key", "count")
        )
        for workflow_id, key, count in held:
            busy[_group(limits[workflow_id], workflow_id, key)] += count
    chosen: list[str] = []
    for run_id, workflow_id, key, parent_step_run_id in queued:
        child = parent_step_run_id is not None
        if free is not None and free <= 0 and not child:
            continue
        concurrency = limits.get(workflow_id)
        if concurrency:
            group = _group(concurrency, workflow_id, key)
            if busy[group] >= concurrency["limit"]:
                continue
            busy[group] += 1
        chosen.append(run_id)
        if free is not None and not child:
            free -= 1
    if not chosen:
        return []
    others = [run_id for run_id in chosen if run_id not in this_transaction]
    locked = {run_id: work for run_id, work in this_transaction.items() if run_id in chosen}
    if others:
        # One ordered statement; re-checked after the lock (a run cancelled meanwhile is not admitted — its
        # finish requests another admission).
        locked.update(
            (run.id, UnitOfWork(run))
            for run in Run.objects.select_for_update()
            .filter(pk__in=others, status=RunStatus.QUEUED, cancel_requested_at=None)
            .order_by("created_at", "id")
        )
    return [locked[run_id] for run_id in chosen if run_id in locked]


def start_admitted(
    works: list[UnitOfWork], created_rows: dict[str, dict[str, StepRun]] | None = None
) -> list[str]:
    """Start runs chosen by `select_admissions` (their first advance); returns their ids. `created_rows`:
    run id → its top-level step rows by step id, for a run created in this transaction (not read back)."""
    ready: list[str] = []
    for work in works:
        ready += advance_locked(work, admit=True, rows=(created_rows or {}).get(work.run.id))
        work.save()
    dispatch(ready)  # one batch of messages for all of them, after the commit
    return [work.run.id for work in works]


def _group(concurrency: dict, workflow_id: str, key) -> tuple:
    return (workflow_id, key if concurrency.get("key") is not None else None)
