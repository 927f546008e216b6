"""The reconciler: repairs what a lost message or a dead worker left behind. Every few seconds it
re-dispatches steps `queued` for too long (django-q2's Redis broker pops without acknowledgement),
reclaims `running` steps whose lease expired, wakes `waiting` steps whose timer is due (and settles
steps waiting for a person past their timeout: docs/approvals.md), and fails runs
past their deadline (`run_timeout`), and — the safety net of admission — starts queued runs that fit their
concurrency limits now (runs/concurrency.py; normally a finishing run's own admission request does that).

Any number of reconcilers may run at once (one thread in each django-q2 worker process): each repair is a
compare-and-set under the run's row lock, so exactly one of them acts on a row. Scans are plain indexed
SELECTs outside any transaction, so an idle reconciler takes no write lock (SQLite). Every repair acts on a
run that is not terminal or on a step that is queued, running or waiting; when there is none (an idle
installation), a pass is two reads of statements written once instead of the scans' querysets.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from datetime import timedelta

from django.conf import settings
from django.db import close_old_connections
from django.utils import timezone

from config import sql
from runs.choices import RUN_ACTIVE, StepStatus
from runs.engine.control import run_fail_timeout
from runs.engine.dispatch import backlog, enqueue
from runs.engine.execute import step_reclaim
from runs.engine.waits import step_wake
from runs.models import Run, StepRun
from runs.retention import maybe_prune

logger = logging.getLogger("baton.reconciler")

BATCH = 200
BACKLOG_PATIENCE = 10  # × BATON_REDISPATCH_AFTER_SECONDS while the queue has a backlog
WAKE_STATUSES = (StepStatus.WAITING, StepStatus.AWAITING_APPROVAL, StepStatus.AWAITING_INPUT)
# The rows a pass may act on (the scans below, admission's and the sub-workflows' included).
_ACTIVE_RUNS = sorted(RUN_ACTIVE)
_ACTIVE_STEPS = sorted({StepStatus.QUEUED, StepStatus.RUNNING, *WAKE_STATUSES})
_ANY_ACTIVE_RUN = sql.Select(
    Run, ("id",), f"{{status}} IN ({', '.join(['%s'] * len(_ACTIVE_RUNS))})", limit=1
)
_ANY_ACTIVE_STEP = sql.Select(
    StepRun, ("id",), f"{{status}} IN ({', '.join(['%s'] * len(_ACTIVE_STEPS))})", limit=1
)
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def _nothing_to_repair() -> bool:
    return not _ANY_ACTIVE_STEP.rows(*_ACTIVE_STEPS) and not _ANY_ACTIVE_RUN.rows(*_ACTIVE_RUNS)


def reconcile_once(now=None) -> dict[str, int]:
    """One pass over the repairs; returns how many rows each one acted on."""
    now = now or timezone.now()
    counts = {
        "redispatched": 0,
        "reclaimed": 0,
        "woken": 0,
        "timed_out": 0,
        "admitted": 0,
        "sub_workflows": 0,
    }
    if _nothing_to_repair():
        return counts

    stale = now - timedelta(seconds=settings.BATON_REDISPATCH_AFTER_SECONDS)
    lost = list(
        StepRun.objects.filter(status=StepStatus.QUEUED, dispatched_at__lt=stale)
        .order_by("dispatched_at")
        .values_list("pk", "dispatched_at")[:BATCH]
    )
    if lost and backlog():
        # Messages still wait in the queue: a step queued that long is most likely one of them, and ringing
        # again would only add duplicates to the backlog (docs/performance.md). Only very old ones go again.
        patience = now - timedelta(seconds=settings.BATON_REDISPATCH_AFTER_SECONDS * BACKLOG_PATIENCE)
        lost = [(step_run_id, at) for step_run_id, at in lost if at < patience]
    for step_run_id, dispatched_at in lost:
        # Compare-and-set on dispatched_at: of several reconcilers, one rings the doorbell again.
        if StepRun.objects.filter(
            pk=step_run_id, status=StepStatus.QUEUED, dispatched_at=dispatched_at
        ).update(dispatched_at=now):
            redispatch(step_run_id)
            counts["redispatched"] += 1

    expired = StepRun.objects.filter(status=StepStatus.RUNNING, lease_expires_at__lt=now).values_list(
        "pk", flat=True
    )[:BATCH]
    for step_run_id in list(expired):
        counts["reclaimed"] += step_reclaim(step_run_id)

    # A paused run's timers wait for its resume (docs/runs-api.md "Pause, resume and rerun").
    # Also steps waiting for a person past their timeout (approval on_timeout, input_timeout).
    due = StepRun.objects.filter(
        status__in=WAKE_STATUSES, wake_at__lte=now, run__pause_requested_at__isnull=True
    ).values_list("pk", flat=True)[:BATCH]
    for step_run_id in list(due):
        counts["woken"] += step_wake(step_run_id)

    late = Run.objects.filter(status__in=RUN_ACTIVE, deadline_at__lt=now).values_list("pk", flat=True)[:BATCH]
    for run_id in list(late):
        counts["timed_out"] += run_fail_timeout(run_id)

    from runs.concurrency import admit_pending

    counts["admitted"] = admit_pending()

    from runs.engine.subworkflows import reconcile as reconcile_sub_workflows

    # Lost sub-workflow follow-ups: parents whose child finished, children whose parent stopped.
    counts["sub_workflows"] = reconcile_sub_workflows()

    if any(counts.values()):
        logger.info("reconciler: %s", counts)
    return counts


def redispatch(step_run_id: str) -> None:
    """Ring the doorbell again for a step that is already committed as `queued`."""
    if settings.BATON_ENGINE_DISPATCH == "queue":
        enqueue([step_run_id])
    else:
        from runs.engine.dispatch import dispatch

        dispatch([step_run_id])


def _loop(interval: float) -> None:
    while True:
        # Jitter spreads the reconcilers of many workers over the interval.
        time.sleep(interval * random.uniform(0.75, 1.25))
        try:
            close_old_connections()
            reconcile_once()
            maybe_prune()  # retention: at most once per BATON_RETENTION_INTERVAL_SECONDS, cluster-wide
        except Exception:
            logger.exception("reconciler pass failed")


def start_reconciler_thread() -> bool:
    """Start this process's reconciler thread (once); True if it was started now."""
    global _thread
    with _thread_lock:
        if _thread is not None and _thread.is_alive():
            return False
        interval = settings.BATON_RECONCILE_INTERVAL_MS / 1000
        _thread = threading.Thread(target=_loop, args=(interval,), name="baton-reconciler", daemon=True)
        _thread.start()
    return True
