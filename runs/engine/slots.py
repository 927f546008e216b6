"""I/O slots: many network-bound steps at once in one django-q2 worker process.

A step whose type is I/O-bound (`StepType.io_bound`: http_request, webhook, agent_task) spends its time
waiting on another server. The worker's main thread claims it as usual (a lease), then hands it to one of
this process's slots — a bounded thread pool of BATON_WORKER_CONCURRENCY threads — and goes back to
django-q2 for the next message. The slot runs the handler, records the outcome and continues into the next
step when that one is I/O-bound too (docs/engine.md "I/O slots").

Database connections stay bounded: the slots share BATON_WORKER_DB_CONNECTIONS connections, lent to a slot
for its database work and taken back while it waits on the network (`network_wait`, used by the outbound
client). On SQLite the default is one: the slots' writes go one at a time, next to the main thread's.

A worker drains its slots before it exits: on django-q2's stop and recycle (the process's exit waits for
them) and on SIGTERM (`enable` installs the handler). While draining, a slot does not continue into a next
step (it is dispatched for another worker) and no new step is handed to the slots.

`stats()` gives this process's gauges (slots used, steps started and finished); `cluster_gauges()` the
whole installation's, from the database, for metrics served by any process.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Count

from runs.choices import StepStatus
from runs.models import StepRun
from workflows.steps import get_step_type

logger = logging.getLogger("baton.engine")

# How long the main thread waits for a free slot before it executes the step itself (the process model):
# far below django-q2's task timeout, which would kill the process with its slots.
SLOT_WAIT_SECONDS = 30.0

_local = threading.local()


class _Lender:
    """A few database connections shared by the slots: a slot borrows one (it becomes the thread's
    connection for the default alias) and gives it back before a network wait and when it is done."""

    def __init__(self, size: int):
        self.size = size
        self.available = threading.BoundedSemaphore(size)
        self.idle: queue.LifoQueue = queue.LifoQueue()
        self.made = 0

    def borrow(self) -> None:
        self.available.acquire()
        try:
            wrapper = self.idle.get_nowait()
        except queue.Empty:
            wrapper = connections.create_connection(DEFAULT_DB_ALIAS)
            wrapper.inc_thread_sharing()  # used by whichever slot borrows it
            self.made += 1
        connections[DEFAULT_DB_ALIAS] = wrapper

    def give_back(self) -> None:
        wrapper = connections[DEFAULT_DB_ALIAS]
        try:
            del connections[DEFAULT_DB_ALIAS]
            if wrapper.in_atomic_block:  # never expected: a transaction is not left open across a wait
                logger.error("a slot gave back its connection inside a transaction; rolling back")
                wrapper.close()
            else:
                wrapper.close_if_unusable_or_obsolete()
        finally:
            self.idle.put(wrapper)
            self.available.release()

    def close_all(self) -> None:
        while True:
            try:
                wrapper = self.idle.get_nowait()
            except queue.Empty:
                return
            try:
                wrapper.close()
            except Exception:  # closing a broken connection may fail too
                logger.debug("closing a slot connection failed", exc_info=True)


class Slots:
    def __init__(self, size: int, db_connections: int):
        self.pid = os.getpid()
        self.size = size
        self.free = threading.BoundedSemaphore(size)
        self.executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix="baton-io")
        self.lender = _Lender(db_connections)
        self.lock = threading.Lock()
        self.quiet = threading.Condition(self.lock)
        self.in_flight = 0
        self.started = 0
        self.finished = 0
        self.draining = False

    def submit(self, work: Callable[[], None], timeout: float = SLOT_WAIT_SECONDS) -> bool:
        """Run `work` in a slot (with a borrowed connection); False when draining or no slot came free."""
        waited = 0.0
        while not self.free.acquire(timeout=0.5):
            waited += 0.5
            if self.draining or waited >= timeout:
                return False
        with self.lock:
            if self.draining:
                self.free.release()
                return False
            self.in_flight += 1
            self.started += 1
        self.executor.submit(self._run, work)
        return True

    def _run(self, work: Callable[[], None]) -> None:
        _local.slots = self
        try:
            self.lender.borrow()
            try:
                work()
            finally:
                self.lender.give_back()
        except BaseException:
            # The step keeps its lease: the reconciler reclaims it if nothing recorded it (as for a crash).
            logger.exception("a step in an I/O slot failed")
        finally:
            _local.slots = None
            with self.lock:
                self.in_flight -= 1
                self.finished += 1
                if not self.in_flight:
                    self.quiet.notify_all()
            self.free.release()

    def drain(self, timeout: float | None = None) -> bool:
        """Stop taking steps and wait for those in flight to be recorded; True when none is left."""
        with self.lock:
            self.draining = True
            done = self.quiet.wait_for(lambda: not self.in_flight, timeout)
        if done:
            self.lender.close_all()
        return done


_slots: Slots | None = None
_exit_requested = threading.Event()


def current() -> Slots | None:
    """This process's slots, when it is a worker process that has them (see `enable`)."""
    slots = _slots
    return slots if slots is not None and slots.pid == os.getpid() else None


def in_slot() -> bool:
    return getattr(_local, "slots", None) is not None


def enable() -> Slots | None:
    """Give this django-q2 worker process its slots (called in its main thread when it starts): a SIGTERM
    drains them, and the process's exit (django-q2's stop or recycle) waits for them."""
    global _slots
    size = settings.BATON_WORKER_CONCURRENCY
    if size <= 1:
        return None
    _slots = Slots(size, _db_connections())
    _exit_requested.clear()
    threading._register_atexit(_drain_at_exit)  # before the interpreter joins its threads
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    return _slots


def _db_connections() -> int:
    configured = settings.BATON_WORKER_DB_CONNECTIONS
    if configured:
        return configured
    return 1 if connections[DEFAULT_DB_ALIAS].vendor == "sqlite" else 4


def _drain_at_exit() -> None:
    slots = current()
    if slots is not None and (slots.in_flight or not slots.draining):
        if slots.in_flight:
            logger.info("worker %s: draining %d step(s) before it exits", os.getpid(), slots.in_flight)
        slots.drain()


_busy = threading.local()


def _on_sigterm(signum, frame) -> None:
    """Stop taking work and leave django-q2's task loop; the process's exit drains the slots. A step the
    main thread is executing is finished first (its task then ends the loop, see `exit_if_requested`)."""
    slots = current()
    if slots is not None:
        with slots.lock:
            slots.draining = True
    if getattr(_busy, "task", False):
        _exit_requested.set()
        return
    raise SystemExit(0)


@contextmanager
def main_task():
    """Around a task in the worker's main thread: a SIGTERM arriving meanwhile waits for its end."""
    _busy.task = True
    try:
        yield
    finally:
        _busy.task = False
    if _exit_requested.is_set():
        raise SystemExit(0)


def draining() -> bool:
    slots = current()
    return slots is not None and slots.draining


@contextmanager
def network_wait():
    """Around a wait on the network: a slot gives its database connection back meanwhile (and borrows one
    again after). Elsewhere (the main thread, the web tier, inside a transaction) it does nothing."""
    slots = getattr(_local, "slots", None)
    if slots is None or getattr(_local, "waiting", False) or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        yield
        return
    _local.waiting = True
    slots.lender.give_back()
    try:
        yield
    finally:
        slots.lender.borrow()
        _local.waiting = False


def stats() -> dict:
    """This process's slot gauges: capacity, used (steps in flight), started and finished so far, the
    database connections the slots hold at most and have opened."""
    slots = current()
    if slots is None:
        return {"capacity": 0, "used": 0, "started": 0, "finished": 0, "db_connections": 0, "db_opened": 0}
    return {
        "capacity": slots.size,
        "used": slots.in_flight,
        "started": slots.started,
        "finished": slots.finished,
        "db_connections": slots.lender.size,
        "db_opened": slots.lender.made,
    }


def cluster_gauges() -> dict:
    """Gauges of the whole installation, read from the database (any process may ask, e.g. the web tier's
    metrics): `steps_in_flight` (step runs `running`), `slots_used` (those of an I/O-bound type, which the
    workers execute in their slots) and `slots_capacity` (BATON_WORKERS × BATON_WORKER_CONCURRENCY, when
    the slots are on). One indexed count by status and type."""
    running = StepRun.objects.filter(status=StepStatus.RUNNING).values("type").annotate(n=Count("id"))
    by_type = {row["type"]: row["n"] for row in running}
    io_bound = sum(n for name, n in by_type.items() if (t := get_step_type(name)) is not None and t.io_bound)
    size = settings.BATON_WORKER_CONCURRENCY
    return {
        "steps_in_flight": sum(by_type.values()),
        "slots_used": io_bound,
        "slots_capacity": settings.BATON_WORKERS * size if size > 1 else 0,
    }
