"""config/asgi_handler.py: synchronous requests run whole on the pool's long-lived threads, which keep their
database connections, one at a time unless the ones in wait; async views (the event stream) go through
Django's own handler."""

import asyncio
import threading
import time

import pytest
from django.db import connections

from config.asgi_handler import PooledASGIHandler, _async_view, _Gate, _Pool


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


# The pool and its gate -------------------------------------------------------------------------------------


def test_the_pool_gives_each_task_to_the_thread_that_finished_last():
    pool = _Pool(4)
    try:
        threads = {pool.submit(threading.get_ident).result() for _ in range(20)}
        assert len(threads) == 1 and len(pool._threads) == 1
        release = threading.Event()
        blocked = [pool.submit(release.wait, 5) for _ in range(3)]
        assert len(pool._threads) == 3  # a thread started for each task that found none idle
        release.set()
        assert all(future.result() for future in blocked)
    finally:
        pool.shutdown()


def test_the_pool_queues_what_its_threads_cannot_take_and_hands_errors_back():
    pool = _Pool(2)
    try:
        release = threading.Event()
        futures = [pool.submit(release.wait, 5) for _ in range(2)]
        futures += [pool.submit(lambda n=n: n) for n in range(5)]
        assert len(pool._threads) == 2 and not futures[2].done()
        release.set()
        # Every result, the two waits' too: a thread hands its result back once it is idle again, so both
        # threads are idle when the tasks below are submitted (one still finishing its wait would leave a
        # "busy" task in the backlog).
        assert [future.result(timeout=5) for future in futures] == [True, True, 0, 1, 2, 3, 4]
        with pytest.raises(ZeroDivisionError):
            pool.submit(lambda: 1 / 0).result()
        release.clear()
        busy = [pool.submit(release.wait, 5) for _ in range(2)]
        queued = pool.submit(int)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        release.set()
        pool.shutdown()
    assert queued.cancelled() and all(future.result() for future in busy)
    assert not any(thread.is_alive() for thread in pool._threads)
    with pytest.raises(RuntimeError):
        pool.submit(int)


def _through(gate: _Gate, pool: _Pool, fn, log: list, name: str):
    async def request():
        async with gate.place():
            log.append(("in", name))
            try:
                return await asyncio.get_running_loop().run_in_executor(pool, fn)
            finally:
                log.append(("out", name))

    return request()


def _beside_a_long_one(gate: _Gate, pool: _Pool, log: list, seconds: float, quick: dict) -> float:
    """A request asleep for `seconds` ("long"), then the `quick` ones (name → function) at once: the time
    these took."""

    async def main():
        long = asyncio.ensure_future(_through(gate, pool, lambda: time.sleep(seconds), log, "long"))
        await asyncio.sleep(0)
        started = time.monotonic()
        await asyncio.gather(*(_through(gate, pool, fn, log, name) for name, fn in quick.items()))
        elapsed = time.monotonic() - started
        await long
        return elapsed

    try:
        return asyncio.run(main())
    finally:
        pool.shutdown()


def test_a_request_that_waits_lets_the_next_one_in_after_the_stall():
    log = []
    waited = _beside_a_long_one(_Gate(limit=4, stall=0.02), _Pool(4), log, 0.6, {"quick": lambda: None})
    assert log.index(("out", "quick")) < log.index(("out", "long"))
    assert waited < 0.5  # admitted while the long one slept, not after it


def test_requests_that_compute_go_in_one_at_a_time():
    # A process CPU clock that runs as fast as the wall clock: the process is never idle.
    gate, pool, log = _Gate(limit=4, stall=0.01, cpu_clock=time.monotonic), _Pool(4), []

    async def main():
        await asyncio.gather(*(_through(gate, pool, lambda: time.sleep(0.05), log, n) for n in "abcd"))

    try:
        asyncio.run(main())
    finally:
        pool.shutdown()
    assert log == [(event, n) for n in "abcd" for event in ("in", "out")]
    assert len(pool._threads) == 1


def test_no_more_than_the_limit_go_in_and_a_cancelled_wait_gives_its_place_back():
    gate, pool, log = _Gate(limit=2, stall=0.01), _Pool(2), []
    inside = []

    def sleeper():
        inside.append(1)
        peak = len(inside)
        time.sleep(0.1)
        inside.pop()
        return peak

    async def main():
        tasks = [asyncio.ensure_future(_through(gate, pool, sleeper, log, str(n))) for n in range(5)]
        waiting = asyncio.ensure_future(_through(gate, pool, sleeper, log, "cancelled"))
        await asyncio.sleep(0)
        assert len(gate._waiting) == 5  # the first went in
        waiting.cancel()
        return await asyncio.gather(*tasks)

    try:
        peaks = asyncio.run(main())
    finally:
        pool.shutdown()
    assert max(peaks) == 2 and len(pool._threads) == 2  # the sleepers wait: the gate let a second one in
    assert ("in", "cancelled") not in log
    assert not gate._entered and not gate._waiting


def test_while_one_request_waits_the_others_follow_each_other_without_waiting_for_a_look():
    # The process CPU clock: idle until the first look (the long request waits), then as busy as the wall
    # clock (the quick ones compute), so no look after the first lets anyone in.
    readings = []

    def cpu_clock():
        readings.append(time.monotonic())
        return 0.0 if len(readings) <= 2 else readings[-1]

    gate, log = _Gate(limit=4, stall=0.1, cpu_clock=cpu_clock), []
    quick = {name: lambda: time.sleep(0.05) for name in "abcde"}
    elapsed = _beside_a_long_one(gate, _Pool(4), log, 1.5, quick)
    # The first look (0.1 s) found the long one waiting and let "a" in; each quick one after it entered as
    # the one before left, beside the long one, not after it (1.5 s).
    assert elapsed < 0.9
    assert log.index(("out", "e")) < log.index(("out", "long"))
    assert max(sum(1 if event == "in" else -1 for event, _ in log[:i]) for i in range(len(log) + 1)) == 2
