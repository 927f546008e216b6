"""The step monitor: one daemon thread per worker process watching the step runs this process executes.

While a handler runs (outside any transaction, see execute._execute_claimed) the monitor
- extends the step's lease (the heartbeat): every lease/3 it moves `lease_expires_at` to now + lease with a
  compare-and-set on the lease token, so a long script, LLM call or HTTP request is not reclaimed while its
  worker is alive; a dead worker stops beating and the reconciler reclaims the step after one lease. A
  heartbeat that matches no row means the step was reclaimed meanwhile: the handler is told to stop (its
  result would be discarded anyway).
- polls for `terminate`: once a handler has run for POLL_AFTER seconds, one indexed query per pass
  (`Run.terminate_requested_at` of the watched runs, by primary key) at most every POLL_INTERVAL seconds;
  a terminated run sets the watch's stop flag, which `StepContext.should_stop()` reads (the script
  handler's waiting loop checks it every 50 ms and kills the process group).

Handlers never touch the database for this, and steps that finish within POLL_AFTER cost no query at all.
While nothing is watched the thread looks again every IDLE_SECONDS (no database work), holding no
database connection.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import connection
from django.utils import timezone

logger = logging.getLogger("baton.engine")

TICK_SECONDS = 0.1
POLL_AFTER_SECONDS = 0.5
POLL_INTERVAL_SECONDS = 0.5
# How often the thread looks for watches while it has none. Waking it for each new watch cost a thread
# switch per step, most of them for steps finished before it ran (docs/performance.md); a watch needs it
# POLL_AFTER_SECONDS after its start at the earliest, and the leases' heartbeats much later.
IDLE_SECONDS = POLL_AFTER_SECONDS


@dataclass(eq=False)
class Watch:
    step_run_id: str
    run_id: str
    token: str
    lease_seconds: float
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    next_poll: float = 0.0
    next_beat: float = 0.0
    lost: bool = False  # the lease was taken away (reclaimed): the result will be discarded
    beats: int = 0

    def __post_init__(self):
        self.next_poll = self.started + POLL_AFTER_SECONDS
        self.next_beat = self.started + self.lease_seconds / 3

    def should_stop(self) -> bool:
        return self.stop.is_set()


class _Monitor:
    def __init__(self):
        self.pid = os.getpid()
        self.lock = threading.Lock()
        self.watches: dict[int, Watch] = {}
        self.thread: threading.Thread | None = None

    def add(self, watch: Watch) -> None:
        # The thread is not woken: an idle one looks again within IDLE_SECONDS, before any watch needs it.
        with self.lock:
            self.watches[id(watch)] = watch
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self.loop, name="baton-step-monitor", daemon=True)
                self.thread.start()

    def remove(self, watch: Watch) -> None:
        with self.lock:
            self.watches.pop(id(watch), None)

    def loop(self) -> None:
        connected = False
        while True:
            with self.lock:
                idle = not self.watches
            if idle:
                if connected:
                    connected = False
                    self._close()  # idle: hold no database connection
                time.sleep(IDLE_SECONDS)
                continue
            time.sleep(TICK_SECONDS)
            with self.lock:  # the watches after the sleep: a finished step is not touched again
                watches = list(self.watches.values())
            if not watches:
                continue
            try:
                connected |= self.check(watches)
            except Exception as exc:  # a database hiccup must not kill the monitor
                logger.warning("step monitor pass failed: %s", exc)
                connected = False
                self._close()

    @staticmethod
    def _close() -> None:
        try:
            connection.close()
        except Exception:  # closing a broken connection may fail too; the next pass reconnects
            logger.debug("step monitor could not close its connection", exc_info=True)

    def check(self, watches: list[Watch]) -> bool:
        """One pass; True when it used the database."""
        from runs.choices import StepStatus
        from runs.models import Run, StepRun

        now = time.monotonic()
        used = False
        polled = [w for w in watches if now >= w.next_poll and not w.stop.is_set()]
        if polled:
            used = True
            for w in polled:
                w.next_poll = now + POLL_INTERVAL_SECONDS
            terminated = set(
                Run.objects.filter(
                    pk__in={w.run_id for w in polled}, terminate_requested_at__isnull=False
                ).values_list("pk", flat=True)
            )
            for w in polled:
                if w.run_id in terminated:
                    w.stop.set()
        for w in watches:
            if now < w.next_beat or w.lost:
                continue
            used = True
            w.next_beat = now + w.lease_seconds / 3
            extended = StepRun.objects.filter(
                pk=w.step_run_id, status=StepStatus.RUNNING, lease_owner=w.token
            ).update(lease_expires_at=timezone.now() + timedelta(seconds=w.lease_seconds))
            if extended:
                w.beats += 1
            else:
                w.lost = True
                w.stop.set()
                logger.info("step run %s lost its lease while running; asking it to stop", w.step_run_id)
        return used


_monitor: _Monitor | None = None
_monitor_guard = threading.Lock()


def _get() -> _Monitor:
    global _monitor
    monitor = _monitor
    if monitor is None or monitor.pid != os.getpid():  # first use, or a forked child (fresh thread and locks)
        with _monitor_guard:
            if _monitor is None or _monitor.pid != os.getpid():
                _monitor = _Monitor()
            monitor = _monitor
    return monitor


def watch(step_run_id: str, run_id: str, token: str, lease_seconds: float) -> Watch:
    """Start watching a step this thread is about to execute; pair with `unwatch` in a finally."""
    watch_ = Watch(step_run_id=step_run_id, run_id=run_id, token=token, lease_seconds=lease_seconds)
    _get().add(watch_)
    return watch_


def unwatch(watch_: Watch) -> None:
    _get().remove(watch_)
