"""Locks between the processes of a django-q2 cluster that a SIGKILL cannot leave held.

A cluster's processes (the sentinel and the workers, pusher and monitor it forks) share multiprocessing
queues (tasks to the workers, results to the monitor) and a timer per worker, each guarded by a POSIX
semaphore. A semaphore is not released when the process holding it dies, and an idle worker holds the
task queue's read lock the whole time it waits for its next message: a SIGKILL of that worker (the OOM
killer, an operator, the crash soak) left the other workers and every worker started in its place waiting
for that lock forever, and the cluster executed no task again while its pusher kept taking messages from
the broker. The monitor holds the result queue's read lock the same way, and a worker holds its timer's
lock while it hands a result over, which the sentinel's guard loop waits for before it restarts anything.

`install()` makes the sentinel build those with `ProcessLock`s instead: an exclusive `flock` on an
anonymous file, which the kernel releases when the holder's descriptor closes, at its death too
(docs/engine.md "A SIGKILLed process of the cluster").
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import threading
import time
from multiprocessing import Value

_reopen_lock = threading.Lock()
os.register_at_fork(after_in_child=lambda: globals().update(_reopen_lock=threading.Lock()))


class ProcessLock:
    """A lock between processes forked after it is made (fork start method), released by the kernel when its
    holder dies. `reentrant=True` gives RLock semantics (a multiprocessing Value's lock needs them).

    flock belongs to an open file description, which a fork shares: each process therefore opens the file
    anew (`/proc/self/fd/<n>` of the descriptor inherited from the maker, a file that has no name) and locks
    its own description; threads of one process also take a thread lock first."""

    def __init__(self, reentrant: bool = False):
        fd, path = tempfile.mkstemp(prefix="baton-lock-")
        os.unlink(path)
        self._origin, self._maker = fd, os.getpid()  # never locked itself: only reopened
        self._reentrant = reentrant
        self._pid: int | None = None
        self._fd = -1
        self._threads: threading.Lock | threading.RLock | None = None
        self._depth = 0

    def _local(self) -> tuple[int, threading.Lock | threading.RLock]:
        pid = os.getpid()
        if self._pid != pid:
            with _reopen_lock:
                if self._pid != pid:
                    self._fd = os.open(f"/proc/self/fd/{self._origin}", os.O_RDWR | os.O_CLOEXEC)
                    self._threads = threading.RLock() if self._reentrant else threading.Lock()
                    self._depth = 0
                    self._pid = pid
        return self._fd, self._threads

    def acquire(self, block: bool = True, timeout: float | None = None) -> bool:
        fd, threads = self._local()
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        if not threads.acquire(block, -1 if deadline is None or not block else max(timeout, 0.0)):
            return False
        if self._depth:  # this thread holds it already (reentrant)
            self._depth += 1
            return True
        try:
            if block and deadline is None:
                fcntl.flock(fd, fcntl.LOCK_EX)
            else:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if not block or time.monotonic() >= deadline:
                            threads.release()
                            return False
                        time.sleep(0.001)
        except BaseException:
            threads.release()
            raise
        self._depth = 1
        return True

    def release(self) -> None:
        fd, threads = self._local()
        if self._depth == 0:
            raise ValueError("release of an unlocked ProcessLock")
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(fd, fcntl.LOCK_UN)
        threads.release()

    def __enter__(self) -> bool:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self):
        pid = os.getpid()
        if self._pid == pid and self._fd >= 0:
            os.close(self._fd)
        if self._maker == pid:
            os.close(self._origin)


def process_value(typecode: str, value):
    """`multiprocessing.Value` guarded by a ProcessLock (django-q2's worker timers, the queues' counters)."""
    return Value(typecode, value, lock=ProcessLock(reentrant=True))


def _crash_safe_queue_class():
    from django_q.queues import Queue

    class CrashSafeQueue(Queue):
        """django-q2's queue with ProcessLocks for reading, writing and its size counter."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._rlock = ProcessLock()
            self._wlock = ProcessLock()
            self.size.count = process_value("i", 0)

    return CrashSafeQueue


def install() -> None:
    """Make django-q2's sentinel (`manage.py qcluster`) build its queues and worker timers with ProcessLocks.
    Idempotent; call before the cluster starts."""
    from django_q import cluster

    if getattr(cluster, "_baton_crash_safe", False):
        return
    cluster.Queue = _crash_safe_queue_class()
    cluster.Value = process_value
    cluster._baton_crash_safe = True
