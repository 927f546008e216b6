"""Ringing the doorbell: hand ready step runs to workers (the rows already say `queued`).

`settings.BATON_ENGINE_DISPATCH` chooses how:
- "queue" (production): one django-q2 task per step run, enqueued after the transaction commits;
- "inline": after commit, this process executes the steps itself (a drain loop, no recursion);
- "manual": ids are appended to `MANUAL_QUEUE` at once for a test driver to execute with `drain()`.
Losing a message is harmless: the reconciler re-dispatches steps left `queued` for too long.
"""

from __future__ import annotations

import threading
from collections import deque

from django.conf import settings
from django.db import transaction

MANUAL_QUEUE: deque[str] = deque()
_inline = threading.local()


def dispatch(step_run_ids: list[str]) -> None:
    """Deliver these step run ids to workers once the current transaction commits."""
    ids = list(step_run_ids)
    if not ids:
        return
    mode = settings.BATON_ENGINE_DISPATCH
    if mode == "manual":
        MANUAL_QUEUE.extend(ids)
    elif mode == "inline":
        transaction.on_commit(lambda: _run_inline(ids))
    else:
        transaction.on_commit(lambda: enqueue(ids))


def enqueue(step_run_ids: list[str]) -> None:
    """Enqueue one django-q2 task per id now (callers make sure the rows are committed)."""
    from django_q.tasks import async_task

    for step_run_id in step_run_ids:
        # Successful step tasks are not stored: the StepRun row is the record.
        async_task("runs.tasks.step_execute", step_run_id, save=False)


def _run_inline(ids: list[str]) -> None:
    from runs.engine.core import step_execute

    pending = getattr(_inline, "pending", None)
    if pending is not None:  # already draining further up this thread's stack
        pending.extend(ids)
        return
    _inline.pending = pending = deque(ids)
    try:
        while pending:
            step_execute(pending.popleft())
    finally:
        _inline.pending = None


def drain(limit: int = 100_000) -> int:
    """Execute every step run id collected in manual mode (and those they make ready); returns the count."""
    from runs.engine.core import step_execute

    count = 0
    while MANUAL_QUEUE and count < limit:
        step_execute(MANUAL_QUEUE.popleft())
        count += 1
    return count
