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

Its cursors convert a statement's `%s` placeholders to SQLite's `?` once per distinct statement: Django's
cursor runs a regular expression over the whole text at every execution, and Baton's statements are built
once and run many times; and a None is bound without a failed attribute lookup (docs/performance.md).
"""

import fcntl
import functools
import os

from django.db.backends.sqlite3 import base

# A NULL parameter without an adapter of its own sent sqlite3 looking for an `__adapt__` attribute that is
# not there: an AttributeError made and dropped for every None bound (a trigger binds about 65).
base.Database.register_adapter(type(None), lambda value: value)

# Longer statements (a bulk insert of thousands of rows) are rarely run twice: converted each time, not kept.
_CACHED_QUERY_LENGTH = 8192


@functools.lru_cache(maxsize=512)
def _qmark(query: str) -> str:
    return base.FORMAT_QMARK_REGEX.sub("?", query).replace("%%", "%")


class SQLiteCursorWrapper(base.SQLiteCursorWrapper):
    def convert_query(self, query, *, param_names=None):
        if param_names is None and len(query) <= _CACHED_QUERY_LENGTH:
            return _qmark(query)
        return super().convert_query(query, param_names=param_names)


class DatabaseWrapper(base.DatabaseWrapper):
    _writer_fd: int | None = None
    _writer_pid: int | None = None

    def create_cursor(self, name=None):
        return self.connection.cursor(factory=SQLiteCursorWrapper)

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
