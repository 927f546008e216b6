"""Acting on many runs at once: by ids or by the list filters, in bounded calls the client repeats."""

from __future__ import annotations

import time
from dataclasses import dataclass

from django.db import transaction

from config.errors import Conflict
from runs.choices import RUN_ACTIVE, RUN_TERMINAL
from runs.models import Run
from runs.selectors import run_filter, runs_of
from runs.services.control import delete_locked, run_cancel

# One bulk call acts on at most this many runs, and stops starting new work after this many seconds, so
# a request stays well inside proxy timeouts; the answer's `remaining` says how many eligible runs are
# left, and the client repeats the call until it is 0.
BULK_FILTER_MAX = 1_000
BULK_TIME_BUDGET_SECONDS = 10.0
_BULK_CHUNK = 100


@dataclass(frozen=True)
class BulkResult:
    matched: int
    affected: int
    remaining: int

    def as_dict(self) -> dict:
        return {"matched": self.matched, "affected": self.affected, "remaining": self.remaining}


def _bulk_queryset(organization, ids, filters):
    queryset = runs_of(organization)
    if ids is not None:
        return queryset.filter(pk__in=list(dict.fromkeys(ids)))
    return run_filter(queryset, filters)


def runs_bulk_cancel(
    *, organization, actor, ids: list[str] | None = None, filters=None, reason: str = ""
) -> BulkResult:
    """Cancel the active runs among `ids` (or matching `filters`; at most BULK_FILTER_MAX per call, and
    no new ones after BULK_TIME_BUDGET_SECONDS).
    `matched` counts every run found, `affected` those this call asked to stop, `remaining` the active
    runs still to do (repeat the call while it is above 0). Each cancel is audited as run.cancelled."""
    queryset = _bulk_queryset(organization, ids, filters)
    matched = queryset.count()
    eligible = queryset.filter(status__in=sorted(RUN_ACTIVE), cancel_requested_at__isnull=True)
    affected = 0
    deadline = time.monotonic() + BULK_TIME_BUDGET_SECONDS
    for run in eligible.order_by("-created_at", "-id")[:BULK_FILTER_MAX]:
        if time.monotonic() > deadline:
            break
        try:
            run_cancel(run=run, actor=actor, reason=reason)
        except Conflict:
            continue  # finished in the meantime
        affected += 1
    return BulkResult(matched=matched, affected=affected, remaining=eligible.count())


def runs_bulk_delete(*, organization, actor, ids: list[str] | None = None, filters=None) -> BulkResult:
    """Delete the terminal runs among `ids` (or matching `filters`; at most BULK_FILTER_MAX per call, and
    no new chunk after BULK_TIME_BUDGET_SECONDS);
    active runs are skipped (`matched` counts them, `affected` does not). `remaining` is the number of
    terminal matching runs left for another call. Each deletion is audited as run.deleted."""
    queryset = _bulk_queryset(organization, ids, filters)
    matched = queryset.count()
    eligible = queryset.filter(status__in=sorted(RUN_TERMINAL))
    candidates = list(eligible.order_by("-created_at", "-id").values_list("pk", flat=True)[:BULK_FILTER_MAX])
    affected = 0
    deadline = time.monotonic() + BULK_TIME_BUDGET_SECONDS
    for start in range(0, len(candidates), _BULK_CHUNK):
        if time.monotonic() > deadline:
            break
        chunk = candidates[start : start + _BULK_CHUNK]
        with transaction.atomic():
            locked = list(
                Run.objects.select_for_update()
                .filter(pk__in=chunk, status__in=sorted(RUN_TERMINAL))
                .order_by("pk")
            )
            if locked:
                delete_locked(organization, locked, actor, bulk=True)
            affected += len(locked)
    return BulkResult(matched=matched, affected=affected, remaining=eligible.count())
