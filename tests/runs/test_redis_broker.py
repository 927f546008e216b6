"""The Redis broker (runs/engine/broker.py `RedisBroker`): django-q2's, its enqueue on a connection of the
calling thread's own, against the Redis server of the PostgreSQL + Redis pass."""

import threading
import uuid

import pytest
import redis
from django.conf import settings

from runs.engine.broker import RedisBroker

pytestmark = pytest.mark.skipif(not settings.REDIS_URL, reason="needs the Redis server of the Redis pass")


@pytest.fixture
def broker():
    broker = RedisBroker(list_key=f"baton-broker-test-{uuid.uuid4().hex}")
    yield broker
    broker.delete_queue()


def _client_id(connection) -> int:
    connection.send_command("CLIENT", "ID")
    return connection.read_response()


def test_settings_choose_it_with_redis():
    assert settings.Q_CLUSTER["broker_class"] == "runs.engine.broker.RedisBroker"


def test_what_it_enqueues_is_what_the_cluster_dequeues_in_order(broker):
    broker.enqueue("task one")
    broker.enqueue("task two")
    assert broker.queue_size() == 2
    assert [broker.dequeue()[0][1] for _ in range(2)] == [b"task one", b"task two"]


def test_each_thread_pushes_on_a_connection_of_its_own_and_keeps_it(broker):
    broker.enqueue("a")
    first = broker._own.connection
    broker.enqueue("b")
    assert broker._own.connection is first
    seen = []

    def other_thread():
        broker.enqueue("c")
        seen.append(broker._own.connection)

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    assert seen[0] is not first and _client_id(seen[0]) != _client_id(first)
    assert broker.queue_size() == 3


def test_a_connection_the_server_closed_is_replaced_and_the_task_still_pushed(broker):
    broker.enqueue("before")
    connection = broker._own.connection
    killed = _client_id(connection)
    assert broker.connection.client_kill_filter(_id=killed) == 1
    broker.enqueue("after")
    assert _client_id(connection) != killed  # reconnected
    assert broker.queue_size() == 2


def test_an_unreachable_server_raises_a_connection_error(broker):
    reachable = broker.connection
    broker.connection = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=1)
    try:
        with pytest.raises(redis.ConnectionError):
            broker.enqueue("lost")
    finally:
        broker.connection = reachable
    assert broker.queue_size() == 0
