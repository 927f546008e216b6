"""Django's SQLite backend, with writers queued on a lock file instead of in SQLite's busy handler.

Baton's processes (web server, workers, the cluster's pusher and monitor) share one SQLite file, and SQLite
lets one writer in at a time. A writer that finds the database locked waits in SQLite's busy handler,
which sleeps 1, 2, 5, 10, 15, 20, 25 … ms between tries: it wakes late when the lock is held for a few
milliseconds, and a busy writer can win it again and again. Each write transaction here (Django's
`BEGIN IMMEDIATE`, see config/settings.py) first takes an exclusive `flock` on `<database>.writer-lock`:
waiting writers sleep in the kernel and the next one wakes as soon as the lock is released. The benchmark
of 500 runs through a 2-worker cluster (and raw django-q2 tasks alike) went about a third faster
(docs/performance.md). Like a PostgreSQL row lock, the wait has no timeout. Single statements outside a
transaction still wait in SQLite's busy handler (`busy_timeout`).
"""

import fcntl
import os

from django.db.backends.sqlite3 import base


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_fd: int | None = None
    _writer_pid: int | None = None

    def _writer_lock(self) -> int | None:
        """This connection's descriptor of the lock file (None for an in-memory database). Its own open file
        description, so connections of one process exclude each other too; a forked process opens another
        rather than share its parent's lock."""
        if self.is_in_memory_db():
            return None
        if self._writer_fd is None or self._writer_pid != os.getpid():
            path = f"{self.settings_dict['NAME']}.writer-lock"
            self._writer_fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._writer_pid = os.getpid()
        return self._writer_fd

    def _start_transaction_under_autocommit(self):
        fd = self._writer_lock()
        if fd is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            super()._start_transaction_under_autocommit()
        except BaseException:
            self._release_writer()
            raise

    def _release_writer(self):
        if self._writer_fd is not None and self._writer_pid == os.getpid():
            fcntl.flock(self._writer_fd, fcntl.LOCK_UN)

    def _commit(self):
        try:
            return super()._commit()
        finally:
            self._release_writer()

    def _rollback(self):
        try:
            return super()._rollback()
        finally:
            self._release_writer()

    def _close(self):
        try:
            return super()._close()
        finally:
            if self._writer_fd is not None and self._writer_pid == os.getpid():
                os.close(self._writer_fd)
            self._writer_fd = self._writer_pid = None
