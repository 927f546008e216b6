"""A doorbell across processes: a loop that sleeps until its next deadline (the scheduler) is woken at once
when something it waits for changes (a schedule created, edited or deleted), instead of polling the
database. A ring carries no data: the woken loop re-reads the database, so a lost ring only delays the
loop until its own deadline or its safety-net timeout (docs/schedules.md "How the scheduler wakes").

    from config import doorbell

    doorbell.ring_on_commit("schedules")            # a writer, inside its transaction
    bell = doorbell.listen("schedules")             # a sleeper, once
    bell.wait(timeout=seconds)                      # True when rung (or when a ring is pending)

With REDIS_URL: Redis pub/sub (every process of every machine). Without it (the embedded SQLite setup, one
machine): a Unix datagram socket per listener in a directory of the temporary folder named after the
data directory; a ring sends one byte to each socket there.
"""

from __future__ import annotations

import abc
import hashlib
import logging
import os
import select
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings
from django.db import transaction

logger = logging.getLogger("baton.doorbell")


def _namespace() -> str:
    """Keeps installations (and test runs) sharing one Redis server or one machine apart."""
    db = settings.DATABASES["default"]
    source = f"{settings.REDIS_URL or ''}|{db.get('HOST', '')}|{db.get('NAME', '')}|{settings.DATA_DIR}"
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def ring(channel: str) -> None:
    """Wake every listener of `channel` now. Never raises: a ring that cannot be sent is only logged."""
    try:
        if settings.REDIS_URL:
            _redis().publish(f"baton:{_namespace()}:doorbell:{channel}", b"1")
        else:
            _ring_sockets(channel)
    except Exception:
        logger.warning("doorbell %s could not ring", channel, exc_info=True)


def ring_on_commit(channel: str) -> None:
    """Ring once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: ring(channel))


def listen(channel: str) -> Listener:
    """A listener for this thread's loop. Close it when the loop ends."""
    return RedisListener(channel) if settings.REDIS_URL else SocketListener(channel)


class Listener(abc.ABC):
    @abc.abstractmethod
    def wait(self, timeout: float) -> bool:
        """Block until the bell rings (True) or `timeout` seconds pass (False)."""

    def close(self) -> None:
        return None


# ---------------------------------------------------------------------------------------------- Redis

_client = None
_client_lock = threading.Lock()


def _redis():
    global _client
    with _client_lock:
        if _client is None:
            import redis

            _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        return _client


class RedisListener(Listener):
    def __init__(self, channel: str):
        self.name = f"baton:{_namespace()}:doorbell:{channel}"
        self.pubsub = None

    def _subscribed(self):
        if self.pubsub is None:
            import redis

            client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2)
            self.pubsub = client.pubsub(ignore_subscribe_messages=True)
            self.pubsub.subscribe(self.name)
        return self.pubsub

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout)
        try:
            pubsub = self._subscribed()
            rung = False
            while True:
                left = deadline - time.monotonic()
                message = pubsub.get_message(timeout=max(0.0, left) if not rung else 0.0)
                if message is not None:
                    rung = True  # drain whatever else is pending: one wake-up for a burst of rings
                    continue
                if rung or left <= 0:
                    return rung
        except Exception:
            # Redis unreachable: sleep out the timeout (the caller's deadline still holds), reconnect later.
            logger.warning("doorbell listener lost Redis", exc_info=True)
            self.close()
            time.sleep(max(0.0, min(deadline - time.monotonic(), 1.0)))
            return False

    def close(self) -> None:
        if self.pubsub is not None:
            try:
                self.pubsub.close()
            except Exception:
                logger.debug("doorbell pubsub close failed", exc_info=True)
            self.pubsub = None


# -------------------------------------------------------------------------------------- Unix sockets


def _socket_dir(channel: str) -> Path:
    # The temporary folder, not the data directory: a socket path must stay under ~100 bytes.
    path = _socket_path(channel)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _socket_path(channel: str) -> Path:
    return Path(tempfile.gettempdir()) / f"baton-{_namespace()}" / channel


# A ring reads the listeners' directory again only when it changed: {directory: (its mtime, when it was
# listed, the sockets)}. A listing is trusted while the directory's mtime is the one it had then, and only
# when that mtime was older than the listing by STABLE_NS: a directory's mtime has a clock tick's granularity,
# so a socket bound in the tick of a listing could leave the mtime as it was.
_listings: dict[str, tuple[int, int, list[str]]] = {}
_listings_lock = threading.Lock()
STABLE_NS = 100_000_000


def _listeners(directory: str) -> list[str]:
    """The listeners' sockets in `directory` (none when it does not exist: nobody listens)."""
    try:
        mtime = os.stat(directory).st_mtime_ns
    except FileNotFoundError:
        return []
    with _listings_lock:
        cached = _listings.get(directory)
    if cached is not None and cached[0] == mtime and cached[1] - mtime > STABLE_NS:
        return cached[2]
    listed_at = time.time_ns()
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    sockets = [os.path.join(directory, name) for name in names if name.endswith(".sock")]
    with _listings_lock:
        _listings[directory] = (mtime, listed_at, sockets)
    return sockets


def _ring_sockets(channel: str) -> None:
    sockets = _listeners(str(_socket_path(channel)))
    if not sockets:
        return
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
        sender.setblocking(False)
        for path in sockets:
            try:
                sender.sendto(b"1", path)
            except (ConnectionRefusedError, FileNotFoundError):
                Path(path).unlink(missing_ok=True)  # its listener is gone
            except BlockingIOError:
                pass  # its buffer is full of rings already: it will wake


class SocketListener(Listener):
    def __init__(self, channel: str):
        self.path = _socket_dir(channel) / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.path))
        self.sock.setblocking(False)

    def wait(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not ready:
            return False
        while True:  # drain: one wake-up for a burst of rings
            try:
                self.sock.recv(64)
            except BlockingIOError:
                return True

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)
