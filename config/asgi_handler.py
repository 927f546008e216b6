"""The ASGI application `serve` runs: synchronous views on a pool of long-lived threads, async views (the run
event stream) on the event loop as Django does it.

Django's own ASGIHandler runs each request's synchronous part in a thread made for that request
(asgiref's ThreadSensitiveContext): a thread start per request and, because a connection belongs to its
thread, a new database connection per request (persistent connections would leak with the threads, so
CONN_MAX_AGE is 0 under ASGI). Here a request whose view is synchronous — every endpoint but the stream —
is handled whole (request_started, middleware, view, request_finished) by one of `BATON_WEB_THREADS`
threads, the way a WSGI server does it; each thread keeps its database connection for
`BATON_WEB_CONN_MAX_AGE` seconds, so a process holds at most that many connections. A request whose view is
async goes through Django's handler unchanged. docs/operations.md "The web server"; the measurements are in
docs/performance.md.
"""

from __future__ import annotations

import asyncio
import functools
from concurrent.futures import ThreadPoolExecutor

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


class PooledASGIHandler(ASGIHandler):
    def __init__(self, threads: int | None = None, conn_max_age: int | None = None):
        super().__init__()
        self._sync = _SyncHandler()
        self._sync.load_middleware(is_async=False)
        max_age = settings.BATON_WEB_CONN_MAX_AGE if conn_max_age is None else conn_max_age
        self._pool = ThreadPoolExecutor(
            max_workers=threads or settings.BATON_WEB_THREADS,
            thread_name_prefix="baton-web",
            initializer=_keep_connections,
            initargs=(max_age,),
        )

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
