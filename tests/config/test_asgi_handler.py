"""config/asgi_handler.py: synchronous requests run whole on the pool's long-lived threads, which keep their
database connections; async views (the event stream) go through Django's own handler."""

import asyncio

import pytest
from django.db import connections

from config.asgi_handler import PooledASGIHandler, _async_view


def _call(app, path: str, method: str = "GET", body: bytes = b"") -> tuple[int, bytes]:
    scope = {
        "type": "http", "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
        "headers": [(b"host", b"127.0.0.1")], "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 9),
    }  # fmt: skip
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    status = sent[0]["status"]
    return status, b"".join(m.get("body", b"") for m in sent[1:])


def _pool_connection(app):
    """The database connection the pool's (only) thread holds, or None."""
    return app._pool.submit(lambda: connections["default"].connection).result()


@pytest.mark.django_db(transaction=True)
def test_sync_requests_run_on_the_pool_and_keep_its_connection():
    app = PooledASGIHandler(threads=1, conn_max_age=60)
    try:
        assert _call(app, "/readyz")[0] == 200  # SELECT 1 and the broker's table
        first = _pool_connection(app)
        assert first is not None
        assert _call(app, "/readyz")[0] == 200
        assert _pool_connection(app) is first
        status, body = _call(app, "/api/v1/runs")
        assert status == 401 and b'"unauthorized"' in body
    finally:
        app._pool.submit(connections.close_all).result()
        app._pool.shutdown()


@pytest.mark.django_db(transaction=True)
def test_without_conn_max_age_each_request_closes_its_connection():
    app = PooledASGIHandler(threads=1, conn_max_age=0)
    try:
        assert _call(app, "/readyz")[0] == 200
        assert _pool_connection(app) is None
    finally:
        app._pool.shutdown()


def test_only_the_event_stream_is_routed_to_djangos_async_handler():
    assert _async_view("/api/v1/runs/run_0123/stream")
    assert not _async_view("/api/v1/runs/run_0123")
    assert not _async_view("/api/v1/workflows/wf_1/run")
    assert not _async_view("/no/such/path")
