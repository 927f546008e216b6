"""config/doorbell.py without Redis: a ring reaches every listener of its channel on this machine."""

import time

import pytest

from config import doorbell


@pytest.fixture
def sockets(settings):
    settings.REDIS_URL = ""
    listeners = []

    def listen(channel):
        listener = doorbell.listen(channel)
        listeners.append(listener)
        return listener

    yield listen
    for listener in listeners:
        listener.close()


def test_a_ring_reaches_a_listener_that_came_after_the_last_listing(sockets):
    channel = f"listing-{time.monotonic_ns()}"
    doorbell.ring(channel)  # nobody listens: nothing to do
    first = sockets(channel)
    time.sleep(doorbell.STABLE_NS / 1e9 + 0.05)  # the directory unchanged since: its listing is kept
    doorbell.ring(channel)
    assert first.wait(1)
    second = sockets(channel)  # binds a socket: the directory changed
    doorbell.ring(channel)
    assert second.wait(1) and first.wait(1)
    assert not first.wait(0)


def test_a_listener_gone_without_closing_is_forgotten(sockets):
    channel = f"gone-{time.monotonic_ns()}"
    gone, staying = sockets(channel), sockets(channel)
    gone.sock.close()  # its process died: the socket file stays behind
    doorbell.ring(channel)
    assert staying.wait(1)
    assert not gone.path.exists()
    doorbell.ring(channel)
    assert staying.wait(1)
