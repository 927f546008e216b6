"""The ASGI application `serve` runs: synchronous views on a pool of long-lived threads, async views (the run
event stream) on the event loop as Django does it.

Django's own ASGIHandler runs each request's synchronous part in a thread made for that request
(asgiref's ThreadSensitiveContext): a thread start per request and, because a connection belongs to its
thread, a new database connection per request (persistent connections would leak with the threads, so
CONN_MAX_AGE is 0 under ASGI). Here a request whose view is synchronous — every endpoint but the stream —
is handled whole (request_started, middleware, view, request_finished) by one of `BATON_WEB_THREADS`
threads, the way a WSGI server does it; each thread keeps its database connection for
`BATON_WEB_CONN_MAX_AGE` seconds, so a process holds at most that many connections. A request whose view is
async goes through Django's handler unchanged.

The threads do not all run at once: `_Gate` lets one request at a time into the pool, and another only when
the process has left its CPU mostly unused for `BATON_WEB_STALL_MS` (the requests in it wait: on a lock, the
database, a `wait`). Requests in one process that run together hand Python's GIL to each other at every
database call, which made each cost up to twice the CPU; short requests now run one after another on the
thread that ran the last one (`_Pool`), and a slow one does not hold up the rest. docs/operations.md "The web
server"; the measurements are in docs/performance.md.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import queue
import threading
import time
from concurrent.futures import Executor, Future

from asgiref.sync import ThreadSensitiveContext, iscoroutinefunction, sync_to_async
from django.conf import settings
from django.core import signals
from django.core.exceptions import RequestAborted
from django.core.handlers.asgi import ASGIHandler, get_script_prefix
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.urls import Resolver404, get_resolver, set_script_prefix


def _keep_connections(max_age: int) -> None:
    """Pool thread initializer: this thread's connections live `max_age` seconds. The settings dict is
    copied, since every thread's connection to an alias shares one dict."""
    for alias in connections:
        connection = connections[alias]
        connection.settings_dict = {**connection.settings_dict, "CONN_MAX_AGE": max_age}


class _SyncHandler(BaseHandler):
    """Django's middleware chain in its synchronous form (as under WSGI)."""


class _Gate:
    """Admission to the pool, on the event loop. A request enters at once when none is in; otherwise it queues
    (first come, first served) and enters when one leaves, or when the requests in are waiting rather than
    computing: every `stall` seconds while requests queue, the process's CPU time is looked at, and when it
    used less than half of that time, the requests in are all waiting (on a lock, the database, a `wait`) and
    one more enters. When a request leaves and every one still in was found waiting, the next enters at once.
    At most `limit` are in at once."""

    def __init__(self, limit: int, stall: float, cpu_clock=time.process_time):
        self.limit, self.stall, self._cpu_clock = limit, stall, cpu_clock
        self._entered: dict[object, bool] = {}  # a token per request in → whether a look found it waiting
        self._waiting: collections.deque[asyncio.Future] = collections.deque()
        self._timer: tuple[asyncio.AbstractEventLoop, asyncio.TimerHandle] | None = None
        self._since = (0.0, 0.0)  # (time, process CPU time) of the last look

    async def enter(self) -> object:
        """Wait for a place; returns the token to `leave` with."""
        if not self._entered and not self._waiting:
            token = object()
            self._entered[token] = False
            return token
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiting.append(waiter)
        if self._timer is None or self._timer[0] is not loop:  # (a loop of its own per test)
            self._since = (time.monotonic(), self._cpu_clock())
            self._timer = loop, loop.call_later(self.stall, self._look, loop)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # admitted as it was cancelled: give the place back
                self.leave(waiter.result())
            else:
                with contextlib.suppress(ValueError):  # already dropped by `_admit`
                    self._waiting.remove(waiter)
            raise

    @contextlib.asynccontextmanager
    async def place(self):
        """`async with gate.place():` — in the gate for the block."""
        token = await self.enter()
        try:
            yield
        finally:
            self.leave(token)

    def leave(self, token: object) -> None:
        self._entered.pop(token, None)
        if all(self._entered.values()):  # none left in, or every one left waits
            self._admit()

    def _admit(self) -> None:
        while self._waiting and len(self._entered) < self.limit:
            waiter = self._waiting.popleft()
            if not waiter.done():  # else cancelled while it waited
                token = object()
                self._entered[token] = False
                waiter.set_result(token)
                return

    def _look(self, loop) -> None:
        """Every `stall` while requests queue: when the process computed for less than half of the time since
        the last look, the requests in are waiting, and one more enters."""
        now, cpu = time.monotonic(), self._cpu_clock()
        then, cpu_then = self._since
        self._since = (now, cpu)
        if cpu - cpu_then < (now - then) / 2:
            for token in self._entered:
                self._entered[token] = True
            self._admit()
        self._timer = (loop, loop.call_later(self.stall, self._look, loop)) if self._waiting else None


class _Pool(Executor):
    """Up to `size` long-lived threads, started as needed; a task goes to the thread that finished last. Under
    the gate one thread runs nearly every request, so its caches stay warm — the CPU's, and on SQLite the
    connection's page cache, which another connection's write empties (a thread per connection)."""

    def __init__(self, size: int, initializer=None, initargs=(), name: str = "baton-web"):
        self.size, self.name = size, name
        self._initializer, self._initargs = initializer, initargs
        self._lock = threading.Lock()
        self._idle: list[queue.SimpleQueue] = []  # the idle threads' inboxes, the last to finish on top
        self._threads: list[threading.Thread] = []
        self._backlog: collections.deque = collections.deque()  # tasks submitted while every thread was busy
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        task = (future, fn, args, kwargs)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._idle:
                self._idle.pop().put(task)
            elif len(self._threads) < self.size:
                inbox = queue.SimpleQueue()
                inbox.put(task)
                thread = threading.Thread(
                    target=self._work, args=(inbox,), name=f"{self.name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            else:
                self._backlog.append(task)
        return future

    def _work(self, inbox: queue.SimpleQueue) -> None:
        if self._initializer is not None:
            self._initializer(*self._initargs)
        while (task := inbox.get()) is not None:
            future, fn, args, kwargs = task
            result = error = None
            if future.set_running_or_notify_cancel():
                try:
                    result = fn(*args, **kwargs)
                except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
                    error = exc
            # Idle (or on to the next queued task) before the caller hears of the result, so that the task it
            # submits next finds this thread, not a new one.
            with self._lock:
                if self._backlog:
                    inbox.put(self._backlog.popleft())
                    closing = False
                else:
                    closing = self._closed
                    if not closing:
                        self._idle.append(inbox)
            if future.cancelled():
                pass
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
            del task, future, fn, args, kwargs, result, error
            if closing:
                return

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            threads = list(self._threads)
            if cancel_futures:
                for future, *_ in self._backlog:
                    future.cancel()
        for inbox in idle:
            inbox.put(None)
        if wait:
            for thread in threads:
                thread.join()


class PooledASGIHandler(ASGIHandler):
    def __init__(
        self, threads: int | None = None, conn_max_age: int | None = None, stall_ms: int | None = None
    ):
        super().__init__()
        self._sync = _SyncHandler()
        self._sync.load_middleware(is_async=False)
        max_age = settings.BATON_WEB_CONN_MAX_AGE if conn_max_age is None else conn_max_age
        threads = threads or settings.BATON_WEB_THREADS
        self._pool = _Pool(threads, initializer=_keep_connections, initargs=(max_age,))
        stall = settings.BATON_WEB_STALL_MS if stall_ms is None else stall_ms
        self._gate = _Gate(threads, stall / 1000) if stall else None  # 0: every thread at once

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or _async_view(scope["path"]):
            await super().__call__(scope, receive, send)
            return
        try:
            body_file = await self.read_body(receive)
        except RequestAborted:
            return
        try:
            loop = asyncio.get_running_loop()
            async with self._gate.place() if self._gate else contextlib.nullcontext():
                response = await loop.run_in_executor(self._pool, self._respond, scope, body_file)
            if not response.streaming:
                await self.send_response(response, send)
                return
            # A streamed body (an export, a file) is read on the loop; its own database work, if any, and
            # the end of the request run in a thread of this request, as in Django's handler.
            async with ThreadSensitiveContext():
                try:
                    await self.send_response(response, send)
                finally:
                    await sync_to_async(response.close)()
        finally:
            body_file.close()

    def _respond(self, scope, body_file):
        """In a pool thread: the whole request, as a WSGI server runs it; a complete response is closed
        (request_finished: the thread's connections are kept or closed per CONN_MAX_AGE) before it is sent."""
        set_script_prefix(get_script_prefix(scope))
        signals.request_started.send(sender=self.__class__, scope=scope)
        request, response = self.create_request(scope, body_file)
        if request is not None:
            response = self._sync.get_response(request)
        response._handler_class = self.__class__
        if not response.streaming:
            response.close()
        return response


@functools.lru_cache(maxsize=1024)
def _async_view(path: str) -> bool:
    try:
        match = get_resolver().resolve(path)
    except Resolver404:
        return False
    return iscoroutinefunction(match.func)
