"""The broker of the embedded setup (SQLite, no Redis): django-q2's ORM broker, without its habit of
closing the database connection before each of its queries.

django-q2's ORM broker calls `close_old_connections()` whenever it is outside a transaction. Without a
CONN_MAX_AGE (the web process must not keep connections, see config/env.py) that closes the connection
every time, and the next query opens a new one: the pusher reconnected at every poll, and a trigger's
enqueue after its commit opened a second connection (docs/performance.md). Here the pusher's poll reuses
its connection and refreshes it once a minute, and an enqueue uses the caller's connection, which the
caller's own lifecycle (request end, worker CONN_MAX_AGE) closes. An empty poll is one plain read of a
statement written once: no transaction (on SQLite no write lock) and no queryset built. Acknowledging and
the rest are django-q2's.

The pusher does not wait for its next poll to see a new task: an enqueue rings the doorbell
(config/doorbell.py, channel `tasks`: a Unix datagram socket per listening pusher on this machine) and
an idle pusher sleeps on it, polling the table only every IDLE_POLL_SECONDS as a safety net (a lost
ring, a task whose lock expired). A trigger's first step starts a few milliseconds after its commit
instead of up to 0.2 s later, and the idle pusher reads the table less often (docs/engine.md).

With Redis, `RedisBroker` is django-q2's Redis broker whose enqueue (the one Redis command of a trigger, and
of every engine transaction that readies steps) runs on a connection of the calling thread's own.
"""

import os
import threading
import time
from contextlib import contextmanager

from django import db
from django.db import DEFAULT_DB_ALIAS, transaction
from django.db import connections as db_connections
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.brokers.redis_broker import Redis
from django_q.conf import Conf
from django_q.models import OrmQ
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from config import doorbell, sql
from runs.apps import WORKER_CONN_MAX_AGE

# Seconds the pusher keeps one connection: as long as worker processes keep theirs.
REFRESH_SECONDS = WORKER_CONN_MAX_AGE
# Is a task due? Asked by every poll before it locks anything (config/sql.py: written once).
_DUE_TASK = sql.Select(OrmQ, ("id",), "{key} = %s AND {lock} < %s", limit=1)


def _insert_message(key: str, payload: str, lock) -> int:
    """`OrmQ.objects.create(key=…, payload=…, lock=…).pk`, the statement written once: the ORM's create was a
    tenth of a trigger's CPU on SQLite (docs/performance.md)."""
    db = db_connections[Conf.ORM or DEFAULT_DB_ALIAS]
    if not db.features.can_return_columns_from_insert:
        return OrmQ.objects.using(Conf.ORM).create(key=key, payload=payload, lock=lock).pk
    quote = db.ops.quote_name
    statement = "INSERT INTO {} ({}, {}, {}) VALUES (%s, %s, %s) RETURNING {}".format(
        *map(quote, (OrmQ._meta.db_table, "key", "payload", "lock", "id"))
    )
    with db.cursor() as cursor:
        cursor.execute(statement, [key, payload, db.ops.adapt_datetimefield_value(lock)])
        return cursor.fetchone()[0]


# The doorbell's channel, and how often an idle pusher reads the table even though nothing rang.
CHANNEL = "tasks"
IDLE_POLL_SECONDS = 1.0


class OrmBroker(ORM):
    _refreshed_at = float("-inf")
    _bell = None
    _bell_pid = None
    _batches = threading.local()  # the messages of this thread's open `batch()`

    def enqueue(self, task):
        batch = getattr(self._batches, "tasks", None)
        if batch is not None:
            batch.append(task)
            return None
        # list_key may be empty (tests that make a broker by hand): OrmQ.key is not nullable.
        key = self.list_key or Conf.CLUSTER_NAME
        pk = _insert_message(key, task, timezone.now())
        doorbell.ring_on_commit(CHANNEL)  # when the transaction that wrote the message commits
        return pk

    @contextmanager
    def batch(self):
        """The messages this thread enqueues in the block go in one INSERT at its end, with one ring: an
        admission starting hundreds of runs wrote (and rang for) each on its own, every write waiting for
        SQLite's one write lock. An error in the block enqueues none of them."""
        self._batches.tasks = tasks = []
        try:
            yield
        finally:
            self._batches.tasks = None
        if tasks:
            key, now = self.list_key or Conf.CLUSTER_NAME, timezone.now()
            messages = [OrmQ(key=key, payload=task, lock=now) for task in tasks]
            OrmQ.objects.using(Conf.ORM).bulk_create(messages)
            doorbell.ring_on_commit(CHANNEL)

    def _sleep(self) -> None:
        """An empty queue: sleep until an enqueue rings (or the safety-net poll), sparing the CPU."""
        if self._bell is None or self._bell_pid != os.getpid():
            self._bell, self._bell_pid = doorbell.listen(CHANNEL), os.getpid()
        self._bell.wait(IDLE_POLL_SECONDS)

    def dequeue(self):
        now = time.monotonic()
        if now - self._refreshed_at >= REFRESH_SECONDS:
            db.close_old_connections()
            self._refreshed_at = now
        if self._nothing_due():
            self._sleep()
            return None
        queue = OrmQ.objects.using(Conf.ORM)
        # Up to Conf.BULK tasks locked in one write (the settings ask for one per worker): on SQLite every
        # write waits for the database's one write lock, which busy workers hold most of the time, and a
        # pusher taking one task per write left them waiting for work (docs/performance.md). In one
        # transaction (SQLite's writers are serialized; PostgreSQL skips rows another cluster holds), so
        # every task read here is this cluster's.
        with transaction.atomic(using=Conf.ORM):
            tasks = list(
                queue.select_for_update(skip_locked=True)
                .filter(key=self.list_key, lock__lt=timezone.now())
                .order_by("id")[: Conf.BULK]
            )
            if tasks:
                queue.filter(id__in=[task.id for task in tasks]).update(lock=self.timeout(tasks[0]))
        if not tasks:
            self._sleep()
            return None
        return [(task.pk, task.payload) for task in tasks]

    def _nothing_due(self) -> bool:
        """No task of this queue is due: one plain read, no transaction (the statement is written for the
        default database, the broker's in Baton's settings)."""
        if (Conf.ORM or DEFAULT_DB_ALIAS) != DEFAULT_DB_ALIAS:
            return False
        now = db.connection.ops.adapt_datetimefield_value(timezone.now())  # as the ORM compares it
        return not _DUE_TASK.rows(self.list_key, now)


class RedisBroker(Redis):
    """django-q2's Redis broker; `enqueue` sends its RPUSH on a connection of the calling thread's own. The
    client's own path takes a connection from its pool and gives it back around every command, asking the
    socket whether it has anything to read (a `poll`) and recording pool metrics each time: 75–80 µs of CPU
    for a command whose system calls take 13 (docs/performance.md). The connection is made with the pool's
    class and settings (address, database, credentials, TLS), one per thread that enqueues, again after a
    fork. A connection error is retried once on a new connection, as the client's default retry does; a
    push whose reply was lost may then be pushed twice, which a step task tolerates (it re-reads its row)."""

    def __init__(self, list_key: str | None = None):
        super().__init__(list_key=list_key)
        self._own = threading.local()

    def enqueue(self, task):
        for attempt in (1, 2):
            connection = self._own_connection()
            try:
                connection.send_command("RPUSH", self.list_key, task, check_health=False)
                return connection.read_response()
            except (RedisConnectionError, RedisTimeoutError):
                connection.disconnect()
                if attempt == 2:
                    raise
            except BaseException:
                connection.disconnect()  # whatever is left of a reply must not be read as the next one's
                raise

    def _own_connection(self):
        own = self._own
        if getattr(own, "pid", None) != os.getpid():  # a forked process connects again
            pool = self.connection.connection_pool
            own.connection = pool.connection_class(**pool.connection_kwargs)
            own.pid = os.getpid()
        return own.connection
