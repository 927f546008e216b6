"""Ringing the doorbell: hand ready step runs to workers (the rows already say `queued`).

`settings.BATON_ENGINE_DISPATCH` chooses how:
- "queue" (production): one django-q2 task per step run, enqueued after the transaction commits, or, when
  the broker's messages are rows of the same SQLite database (the embedded setup's ORM broker), written
  with the transaction itself (one commit where there were two, and no message without its rows);
- "inline": after commit, this process executes the steps itself (a drain loop, no recursion);
- "manual": ids are appended to `MANUAL_QUEUE` at once for a test driver to execute with `drain()`.
Losing a message is harmless: the reconciler re-dispatches steps left `queued` for too long.

Admission (runs/concurrency.py) is requested the same way when a run finishes: after commit in its own
transaction ("queue", "inline"), or collected in `MANUAL_ADMISSIONS` for `drain()` ("manual"). A lost
request is harmless too: the reconciler runs admission for every organisation with queued runs.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from contextlib import nullcontext

from django.conf import settings
from django.db import transaction

logger = logging.getLogger("baton.engine")

MANUAL_QUEUE: deque[str] = deque()
MANUAL_ADMISSIONS: deque[str] = deque()
MANUAL_CALLBACKS: deque = deque()  # `after_commit` work collected in manual mode
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
    elif _messages_are_rows():
        enqueue(ids)  # visible to the pusher when this transaction commits, gone with it if it rolls back
    else:
        transaction.on_commit(lambda: enqueue(ids))


def request_admission(organization_id: str) -> None:
    """Admit the organisation's queued runs that now fit, once the current transaction commits (never
    inside it: admission locks the organisation row first, see docs/engine.md "Lock order")."""
    if settings.BATON_ENGINE_DISPATCH == "manual":
        if organization_id not in MANUAL_ADMISSIONS:
            MANUAL_ADMISSIONS.append(organization_id)
    else:
        transaction.on_commit(lambda: _admit(organization_id))


def after_commit(callback) -> None:
    """Call `callback()` (which opens its own transactions) once the current transaction commits; in
    manual mode it is collected in `MANUAL_CALLBACKS` for `drain()`. For follow-up work that must not run
    under this transaction's run lock (sub-workflows: waking a parent's step, cancelling child runs)."""
    if settings.BATON_ENGINE_DISPATCH == "manual":
        MANUAL_CALLBACKS.append(callback)
    else:
        transaction.on_commit(lambda: _call_safely(callback))


def _call_safely(callback) -> None:
    try:
        callback()
    except Exception:  # the reconciler repairs what a lost follow-up leaves behind
        logger.exception("after-commit follow-up %r failed", callback)


def _admit(organization_id: str) -> None:
    from runs.concurrency import admit

    try:
        admit(organization_id)
    except Exception:  # the reconciler's admission pass repairs whatever this missed
        logger.exception("admission for %s failed", organization_id)


_broker_cache: dict = {}


def broker():
    """This process's django-q2 broker, made once (django-q2 makes a new one, with a new Redis connection,
    for every task enqueued without one; a worker enqueueing the next steps would connect per step)."""
    import os

    from django_q.brokers import get_broker

    pid = os.getpid()  # a forked worker makes its own (a connection is not shared across a fork)
    cached = _broker_cache.get("broker")
    if cached is None or _broker_cache.get("pid") != pid:
        cached = get_broker()
        _broker_cache.update(broker=cached, pid=pid)
    return cached


def _messages_are_rows() -> bool:
    """Whether the broker's messages are rows of this process's SQLite database (the embedded setup's ORM
    broker): written in the transaction that readies the steps, which holds SQLite's one write lock anyway.
    With the ORM broker on PostgreSQL (no Redis) a message is still written after the commit, so that no row
    lock is held across its round trip."""
    from django.db import DEFAULT_DB_ALIAS, connections
    from django_q.conf import Conf

    from runs.engine.broker import OrmBroker

    alias = Conf.ORM or DEFAULT_DB_ALIAS
    return (
        alias == DEFAULT_DB_ALIAS
        and connections[alias].vendor == "sqlite"
        and isinstance(broker(), OrmBroker)
    )


def backlog() -> int:
    """Messages waiting in the queue (0 when unknown or not dispatching through the queue)."""
    if settings.BATON_ENGINE_DISPATCH != "queue":
        return 0
    try:
        return broker().queue_size() or 0
    except Exception:
        logger.warning("could not read the queue's length", exc_info=True)
        return 0


def enqueue(step_run_ids: list[str]) -> None:
    """Enqueue one django-q2 task per id now (callers make sure the rows are committed, or, for the ORM
    broker on SQLite, are written in the same transaction)."""
    from django_q.tasks import async_task

    from runs.engine.broker import OrmBroker

    queue = broker()
    # The ORM broker's messages are rows: many of them (an admission starting hundreds of runs) go in one
    # INSERT instead of one write each, every one of which waited for SQLite's write lock.
    batch = queue.batch() if len(step_run_ids) > 1 and isinstance(queue, OrmBroker) else nullcontext()
    with batch:
        for step_run_id in step_run_ids:
            # Successful step tasks are not stored: the StepRun row is the record.
            async_task("runs.tasks.step_execute", step_run_id, save=False, broker=queue)


def _run_inline(ids: list[str]) -> None:
    from runs.engine.execute import step_execute

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
    """Execute every step run id collected in manual mode (and those they make ready), running the
    admissions requested meanwhile; returns the number of steps executed."""
    from runs.concurrency import admit
    from runs.engine.execute import step_execute

    count = 0
    while (MANUAL_QUEUE or MANUAL_ADMISSIONS or MANUAL_CALLBACKS) and count < limit:
        if MANUAL_QUEUE:
            step_execute(MANUAL_QUEUE.popleft())
            count += 1
        elif MANUAL_ADMISSIONS:
            admit(MANUAL_ADMISSIONS.popleft())
        else:
            MANUAL_CALLBACKS.popleft()()
    return count
