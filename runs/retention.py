"""Retention (API.md "Retention"): finished, unpinned runs older than their retention are removed with
their steps, events and attachments (rows and stored bytes). The retention is the workflow's
`retention_days` when set, else the organisation's (default 90), counted from the run's `completed_at`.
Active runs are never touched, nor is the audit log: each organisation's chain records one
`runs.pruned` event per batch (system actor, the ids removed).

`prune_expired_runs()` does the work in batches, oldest runs first, each its own short transaction, and
rests after each batch for BATON_RETENTION_PAUSE_PERCENT of the time the batch took (100: as long again),
so a large backlog never holds locks for long nor takes the database and the CPU from triggers and steps
(docs/reliability.md "Scale"); `maybe_prune()` is the periodic hook (the reconciler loop calls it) and
runs the prune at most once per BATON_RETENTION_INTERVAL_SECONDS window across every process;
`manage.py prune_runs [--dry-run]` runs it by hand. See docs/operations.md "Retention".

Candidates are found with the runs' indexes, oldest first: per organisation on (organization, created_at)
and per workflow with an override on (workflow, organization, created_at), using `created_at < cutoff` (a
run cannot finish before it was created) to bound the scan, then `completed_at < cutoff`. Oldest first, a
batch's rows sit together on the table's pages (runs and steps are written in time order), so a batch
rewrites few pages and writes little WAL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, router, transaction
from django.utils import timezone

from accounts.models import Organization
from accounts.principal import SYSTEM
from audit.services import audit_record
from config.models import RateLimitCounter
from runs.choices import RUN_TERMINAL
from runs.models import Run, RunEvent, RunFile, StepRun
from workflows.models import Workflow

logger = logging.getLogger("baton.retention")

GUARD_KEY = "job:retention-prune"
TERMINAL = sorted(RUN_TERMINAL)
_checked_window: int | None = None  # the last interval window this process asked the shared guard about


@dataclass(frozen=True)
class Scope:
    """One retention period: the runs of an organisation whose workflow has no override, or the runs of
    one workflow with an override."""

    organization: Organization
    days: int
    workflow_id: str | None = None

    def candidates(self, now: datetime):
        cutoff = now - timedelta(days=self.days)
        queryset = Run.objects.filter(
            organization_id=self.organization.pk,
            status__in=TERMINAL,
            pinned=False,
            created_at__lt=cutoff,
            completed_at__lt=cutoff,
        )
        if self.workflow_id is None:  # not a join: the scan follows the runs' index in created_at order
            overridden = Workflow.objects.filter(
                organization_id=self.organization.pk, retention_days__isnull=False
            ).values("id")
            queryset = queryset.exclude(workflow_id__in=overridden)
        else:
            queryset = queryset.filter(workflow_id=self.workflow_id)
        return queryset.order_by("created_at"), cutoff


def scopes() -> Iterator[Scope]:
    organizations = {org.pk: org for org in Organization.objects.only("id", "retention_days")}
    for org in organizations.values():
        yield Scope(organization=org, days=org.retention_days)
    overrides = Workflow.objects.filter(retention_days__isnull=False).values_list(
        "id", "organization_id", "retention_days"
    )
    for workflow_id, organization_id, days in overrides:
        if organization_id in organizations:
            yield Scope(organization=organizations[organization_id], days=days, workflow_id=workflow_id)


def count_expired_runs(now: datetime | None = None) -> dict[str, int]:
    """What a prune would remove now: {organisation id: runs} (for `prune_runs --dry-run`)."""
    now = now or timezone.now()
    counts: dict[str, int] = {}
    for scope in scopes():
        queryset, _ = scope.candidates(now)
        found = queryset.count()
        if found:
            counts[scope.organization.pk] = counts.get(scope.organization.pk, 0) + found
    return counts


def prune_expired_runs(
    now: datetime | None = None, batch: int = 500, pause_percent: int | None = None
) -> int:
    """Delete every expired run (see the module docstring) in batches of `batch`, resting `pause_percent`
    (default BATON_RETENTION_PAUSE_PERCENT) of each batch's time after it; return how many went."""
    now = now or timezone.now()
    if pause_percent is None:
        pause_percent = settings.BATON_RETENTION_PAUSE_PERCENT
    total = 0
    for scope in scopes():
        queryset, cutoff = scope.candidates(now)
        while True:
            started = time.monotonic()
            ids = list(queryset.values_list("id", flat=True)[:batch])
            if not ids:
                break
            deleted = _delete_batch(scope, ids, cutoff)
            total += deleted
            if deleted == 0:  # every candidate changed under us (resumed, pinned): leave them
                break
            if pause_percent:
                time.sleep((time.monotonic() - started) * pause_percent / 100)
    if total:
        logger.info("Retention removed %d finished runs", total)
    return total


def _delete_batch(scope: Scope, ids: list[str], cutoff: datetime) -> int:
    """One short transaction: lock the candidates that still qualify, delete them and their rows, audit;
    their files' bytes are removed after the commit."""
    from runs.services import remove_files

    connection = transaction.get_connection(router.db_for_write(Run))
    with transaction.atomic(using=connection.alias):
        if connection.vendor == "postgresql":
            # The commit does not wait for its WAL to reach the disk (PostgreSQL flushes it within a
            # fraction of a second, and before any later commit that depends on it, such as the next
            # audit append): the audit chain's head, locked from the append to the commit, is released at
            # once instead of after the flush of the whole batch's deletions, which held up every trigger
            # of the organisation meanwhile. A crash may undo the last batches, deletions and audit
            # events together (never one without the other); the next prune removes those runs again.
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        # Re-checked under the run locks: a run resumed or pinned since the scan is not removed.
        ids = list(
            Run.objects.select_for_update()
            .filter(pk__in=ids, status__in=TERMINAL, pinned=False, completed_at__lt=cutoff)
            .values_list("id", flat=True)
        )
        if not ids:
            return 0
        paths = list(RunFile.objects.filter(run_id__in=ids).values_list("storage_path", flat=True))
        # One statement a table, without Django's collector (it would load every row to cascade): what
        # refers to these runs and their steps is deleted first, or unlinked as on_delete=SET_NULL does.
        using = connection.alias
        RunEvent.objects.filter(run_id__in=ids)._raw_delete(using)
        RunFile.objects.filter(run_id__in=ids)._raw_delete(using)
        # Reruns of these runs and the sub-workflow runs their steps started (both name the run as their
        # parent_run; a sub-workflow run also its step, parent_step_run) outlive them without the links.
        outliving = Run.objects.filter(parent_run_id__in=ids).exclude(pk__in=ids)
        outliving.update(parent_run=None, parent_step_run=None)
        StepRun.objects.filter(run_id__in=ids, parent__isnull=False)._raw_delete(using)  # loop iterations
        StepRun.objects.filter(run_id__in=ids)._raw_delete(using)
        Run.objects.filter(pk__in=ids)._raw_delete(using)
        if connection.vendor == "postgresql":
            # The foreign keys' checks of these deletions, deferred to the commit (thousands of index
            # probes a batch; docs/reliability.md "Scale"), run now (SET CONSTRAINTS ALL IMMEDIATE, then
            # DEFERRED again), before the audit append locks the chain's head until the commit.
            connection.check_constraints()
        audit_record(
            organization=scope.organization,
            event="runs.pruned",
            actor=SYSTEM,
            target=("organization", scope.organization.pk),
            data={
                "count": len(ids),
                "retention_days": scope.days,
                "workflow_id": scope.workflow_id,
                "completed_before": cutoff.isoformat(),
                "run_ids": sorted(ids),
            },
        )
        if paths:
            transaction.on_commit(lambda: remove_files(paths))
    return len(ids)


def maybe_prune(now: datetime | None = None) -> int | None:
    """The periodic hook: prune unless some process already did in the current
    BATON_RETENTION_INTERVAL_SECONDS window (windows are aligned to the Unix epoch). Returns the number of
    runs removed, or None when it was not this call's turn. Cheap to call often: each process asks the
    shared guard once per window (an INSERT that exactly one process wins, on the unique (key, window) of
    the RateLimitCounter table; expired rows are pruned with the rate-limit counters), and nothing else.
    Errors are logged, not raised (the next window tries again). Imports nothing from the HTTP layer, so
    the engine's reconciler may call it."""
    global _checked_window
    now = now or timezone.now()
    interval = settings.BATON_RETENTION_INTERVAL_SECONDS
    window = int(now.timestamp() // interval)
    if _checked_window == window:
        return None
    try:
        start = window * interval
        try:
            with transaction.atomic():
                RateLimitCounter.objects.create(
                    key=GUARD_KEY, window=start, count=1, expires_at=start + 2 * interval
                )
        except IntegrityError:
            _checked_window = window
            return None  # another process has this window
        _checked_window = window
        return prune_expired_runs(now=now)
    except Exception:
        logger.exception("The retention prune failed; the next window tries again")
        return None
