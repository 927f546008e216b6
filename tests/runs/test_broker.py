"""The embedded setup's broker (runs/engine/broker.py): django-q2's ORM broker whose pusher keeps its
database connection between polls instead of reconnecting five times a second."""

import json
import subprocess
import sys
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import OrmQ

from runs.engine.broker import OrmBroker
from tests.runs.support.cluster import cluster_env

# In a process of its own on a database file (the in-memory test database is never really closed): how
# many connections five polls of an empty queue, then five enqueues, open with this broker and with
# django-q2's.
POLLS = """
import json
import django
django.setup()
from django.db.backends.signals import connection_created
from django_q.brokers.orm import ORM
from django_q.conf import Conf
from runs.engine.broker import OrmBroker

opened = []
connection_created.connect(lambda **kwargs: opened.append(1), weak=False)
Conf.POLL = 0.01
counts = {}
for name, broker_class in (("baton", OrmBroker), ("django_q2", ORM)):
    broker = broker_class(list_key="baton-poll-test")
    opened.clear()
    for _ in range(5):
        assert broker.dequeue() is None
    polls = len(opened)
    for n in range(5):
        broker.enqueue(f"task {n}")
    counts[name] = {"polls": polls, "enqueues": len(opened) - polls}
    broker.purge_queue()
print(json.dumps(counts))
"""


@pytest.fixture
def broker(monkeypatch):
    monkeypatch.setattr(Conf, "POLL", 0.01)
    queue = OrmBroker(list_key="baton-broker-test")
    yield queue
    queue.purge_queue()


@pytest.fixture(scope="module")
def _file_env(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        return cluster_env(tmp_path_factory.mktemp("broker"))


@pytest.mark.django_db(transaction=True)
def test_polls_and_enqueues_keep_their_connection(_file_env):
    process = subprocess.run(
        [sys.executable, "-c", POLLS], env=_file_env, cwd=settings.BASE_DIR, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert process.returncode == 0, process.stderr
    counts = json.loads(process.stdout)
    assert counts["baton"] == {"polls": 1, "enqueues": 0}
    # The same calls with django-q2's broker reconnect each time.
    assert counts["django_q2"]["polls"] >= 5 and counts["django_q2"]["enqueues"] >= 5


@pytest.mark.django_db(transaction=True)
def test_an_empty_poll_is_one_read_without_a_transaction(broker):
    """Five times a second in an idle cluster: no write lock taken (SQLite), no queryset built."""
    with CaptureQueriesContext(connection) as polls:
        assert broker.dequeue() is None
    assert [query["sql"].split()[0] for query in polls.captured_queries] == ["SELECT"]
    task = broker.enqueue("payload")
    OrmQ.objects.filter(pk=task).update(lock=timezone.now() + timedelta(minutes=1))  # taken, not due yet
    with CaptureQueriesContext(connection) as polls:
        assert broker.dequeue() is None
    assert len(polls.captured_queries) == 1


@pytest.mark.django_db(transaction=True)
def test_dequeue_takes_each_task_once_and_locks_it(broker):
    ids = [broker.enqueue(f"payload-{n}") for n in range(3)]
    taken = [task for _ in ids for task in broker.dequeue() or []]
    assert sorted(taken) == sorted((pk, f"payload-{n}") for n, pk in enumerate(ids))
    assert broker.dequeue() is None  # locked until the retry timeout: not handed out twice
    assert OrmQ.objects.filter(pk__in=ids).count() == 3  # still there until acknowledged
    for pk in ids:
        broker.acknowledge(pk)
    assert not OrmQ.objects.filter(pk__in=ids).exists()


@pytest.mark.django_db(transaction=True)
def test_dequeue_locks_up_to_bulk_tasks_in_one_write_oldest_first(broker, monkeypatch):
    monkeypatch.setattr(Conf, "BULK", 2)
    ids = [broker.enqueue(f"payload-{n}") for n in range(3)]
    with CaptureQueriesContext(connection) as first:
        assert broker.dequeue() == [(ids[0], "payload-0"), (ids[1], "payload-1")]
    writes = [query["sql"] for query in first.captured_queries if query["sql"].startswith("UPDATE")]
    assert len(writes) == 1
    assert broker.dequeue() == [(ids[2], "payload-2")]
    assert broker.dequeue() is None
    assert all(task.lock > timezone.now() for task in OrmQ.objects.filter(pk__in=ids))


@pytest.mark.django_db(transaction=True)
def test_steps_dispatched_in_a_transaction_are_written_with_it_on_sqlite(broker, monkeypatch, settings):
    """On SQLite the ORM broker's messages are written in the transaction that readies the steps (one commit,
    not a second one after it) and are gone with it when it rolls back. On PostgreSQL they are written after
    the commit (no row lock held across the round trip)."""
    from django.db import transaction

    from runs.engine import dispatch

    settings.BATON_ENGINE_DISPATCH = "queue"
    monkeypatch.setattr(dispatch, "broker", lambda: broker)
    in_transaction = connection.vendor == "sqlite"
    with pytest.raises(RuntimeError), transaction.atomic():
        dispatch.dispatch(["stp_rolled_back"])
        assert OrmQ.objects.filter(key=broker.list_key).exists() is in_transaction
        raise RuntimeError("the transaction fails")
    assert not OrmQ.objects.filter(key=broker.list_key).exists()

    with transaction.atomic():
        dispatch.dispatch(["stp_a", "stp_b"])
        assert OrmQ.objects.filter(key=broker.list_key).count() == (2 if in_transaction else 0)
    assert OrmQ.objects.filter(key=broker.list_key).count() == 2
