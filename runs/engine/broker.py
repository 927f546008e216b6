"""The broker of the embedded setup (SQLite, no Redis): django-q2's ORM broker with a pusher that keeps
its database connection between polls.

django-q2's ORM broker calls `close_old_connections()` before each of its queries. Without a
CONN_MAX_AGE (the web process must not keep connections, see config/env.py), the pusher therefore opened a
new SQLite connection, with Django's connection setup and our PRAGMAs, five times a second: the largest
share of an idle cluster's CPU (docs/performance.md). Here the pusher's poll reuses its connection and
refreshes it once a minute; everything else (enqueueing from the web process included) is django-q2's.
"""

import time

from django import db
from django.utils import timezone
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from django_q.models import OrmQ

# Seconds the pusher keeps one connection (as runs.apps.WORKER_CONN_MAX_AGE for worker processes).
REFRESH_SECONDS = 60


class OrmBroker(ORM):
    _refreshed_at = float("-inf")

    def dequeue(self):
        now = time.monotonic()
        if now - self._refreshed_at >= REFRESH_SECONDS:
            db.close_old_connections()
            self._refreshed_at = now
        queue = OrmQ.objects.using(Conf.ORM)
        tasks = list(queue.filter(key=self.list_key, lock__lt=timezone.now())[: Conf.BULK])
        if not tasks:
            time.sleep(Conf.POLL)  # an empty queue: spare the CPU
            return None
        # Another cluster polling the same queue may lock a task first: only what this one locked is taken.
        return [
            (task.pk, task.payload)
            for task in tasks
            if queue.filter(id=task.id, lock=task.lock).update(lock=self.timeout(task))
        ]
