"""GET /api/v1/runs/{id}/stream against a real uvicorn server (tests/runs/support/stream_server.py, a
subprocess on 127.0.0.1) whose engine thread executes real runs while httpx clients read the stream: the
SQLite file of that server, or the PostgreSQL test database when DATABASE_URL is set."""

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.support.processes import child_database_url, free_port

pytestmark = pytest.mark.slow
TERMINAL = {"run_completed", "run_failed", "run_cancelled"}
MAX_SECONDS = 4


def _server_env(tmp_path) -> dict:
    env = {**os.environ, "BATON_ENV": "test", "BATON_DATA_DIR": str(tmp_path), "BATON_LOG_LEVEL": "WARNING",
           "BATON_ENGINE_DISPATCH": "manual", "BATON_SSE_KEEPALIVE_SECONDS": "1", "BATON_SSE_POLL_MS": "30",
           "BATON_SSE_MAX_SECONDS": str(MAX_SECONDS), "PYTHONUNBUFFERED": "1"}  # fmt: skip
    env.pop("BATON_TEST_DB_NAME", None)
    env["DJANGO_SETTINGS_MODULE"] = "config.settings"
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)
        env.pop("REDIS_URL", None)
        env["BATON_SQLITE_PATH"] = str(tmp_path / "stream.sqlite3")
        env["STREAM_TEST_MIGRATE"] = "1"
    else:
        name = f"baton-stream-{uuid.uuid4().hex[:8]}"  # tells this server's connections apart
        env["DATABASE_URL"] = child_database_url(application_name=name)
    return env


class Server:
    def __init__(self, env):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.runs.support.stream_server", str(self.port)],
            env=env, cwd=settings.BASE_DIR, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        ready = self.process.stdout.readline()
        assert ready and json.loads(ready) == {"ready": True}, "the stream test server did not start"

    def call(self, cmd, **arguments):
        self.process.stdin.write(json.dumps({"cmd": cmd, **arguments}) + "\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

    def url(self, run_id):
        return f"{self.base}/api/v1/runs/{run_id}/stream"

    def stop(self):
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def wait_for(self, predicate, timeout=5.0):
        deadline = time.monotonic() + timeout
        while True:
            status = self.call("status")
            if predicate(status) or time.monotonic() > deadline:
                return status
            time.sleep(0.05)


@pytest.fixture(scope="module")
def _server(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        env = _server_env(tmp_path_factory.mktemp("stream"))
    server = Server(env)
    yield server
    server.stop()


@pytest.fixture
def server(_server, transactional_db):
    """The server; on PostgreSQL it shares the test database, flushed after each test."""
    yield _server
    _server.wait_for(lambda status: status["active_streams"] == 0)
    _server.call("quiesce")  # no step in the middle of a transaction while the database is flushed


@pytest.fixture
def creds(server):
    return server.call("setup")


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


class Reader:
    """A text/event-stream parser over one response: `read()` returns {"id", "event", "data"} dicts,
    stopping after the first event for which `stop_after(event)` is true, else at the end of the stream.
    `retry:` values and comments are collected."""

    def __init__(self, response):
        self.lines = response.iter_lines()
        self.retry: list[int] = []
        self.comments: list[str] = []

    def read(self, stop_after=None):
        events, current = [], {}
        for line in self.lines:
            if line == "":
                if "event" in current or "data" in current:
                    current["data"] = json.loads(current.get("data", "null"))
                    events.append(current)
                    if stop_after and stop_after(current):
                        return events
                current = {}
            elif line.startswith(":"):
                self.comments.append(line)
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "id":
                    current["id"] = int(value)
                elif name == "retry":
                    self.retry.append(int(value))
                elif name in {"event", "data"}:
                    current[name] = value
        return events


def read_events(response, stop_after=None):
    return Reader(response).read(stop_after)


def first_event(event):
    return True


def stream(server, run_id, headers, **kwargs):
    return httpx.stream("GET", server.url(run_id), headers=headers, timeout=15, **kwargs)


def test_snapshot_first_then_every_event_in_order_until_the_terminal_event(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=5,
                         seconds=0.03, hold=True)["run_id"]  # fmt: skip
    with stream(server, run_id, bearer(creds["key"])) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream"
        assert response.headers["cache-control"] == "no-cache"
        assert response.headers["x-accel-buffering"] == "no"
        assert response.headers["x-request-id"].startswith("req_")
        reader = Reader(response)
        snapshot = reader.read(stop_after=first_event)[0]
        assert reader.retry == [3000]
        assert snapshot["event"] == "snapshot"
        assert snapshot["data"]["id"] == run_id and snapshot["data"]["status"] == "running"
        steps = {step["step_id"]: step["status"] for step in snapshot["data"]["steps"]}
        assert steps == {"s1": "queued", "s2": "pending", "s3": "pending", "s4": "pending", "s5": "pending"}
        server.call("release")
        events = reader.read()  # returns when the server ends the stream
    log = server.call("events", run_id=run_id)
    assert log[-1][1] == "run_completed"
    # Everything after the snapshot's sequence number, in order, each event exactly once.
    assert [(event["id"], event["event"]) for event in events] == [
        (seq, kind) for seq, kind in log if seq > snapshot["id"]
    ]
    assert [event["data"]["seq"] for event in events] == [event["id"] for event in events]
    first = events[0]
    assert set(first["data"]) == {"seq", "type", "step_id", "data", "created_at"}
    assert first["data"]["type"] == first["event"]
    assert {event["data"]["step_id"] for event in events if event["event"] == "step_completed"} == {
        "s1", "s2", "s3", "s4", "s5"
    }  # fmt: skip


def test_reconnecting_with_last_event_id_loses_and_repeats_nothing(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=12,
                         seconds=0.04)["run_id"]  # fmt: skip
    headers = {**bearer(creds["key"]), "Last-Event-ID": "0"}
    with stream(server, run_id, headers) as response:
        first = read_events(response, stop_after=lambda event: event["id"] >= 6)
    # The client went away mid-run: the server's generator stops (no stream left open).
    assert server.wait_for(lambda status: status["active_streams"] == 0)["active_streams"] == 0
    assert first[0]["event"] == "run_queued"  # Last-Event-ID: 0 is the whole history, no snapshot
    time.sleep(0.15)  # the run goes on meanwhile
    with stream(server, run_id, {**bearer(creds["key"]), "Last-Event-ID": str(first[-1]["id"])}) as response:
        second = read_events(response)
    seqs = [event["id"] for event in first + second]
    log = server.call("events", run_id=run_id)
    assert second[-1]["event"] == "run_completed" and log[-1][1] == "run_completed"
    assert Counter(seqs) == Counter(range(1, len(log) + 1))  # exactly 1..N, none twice
    assert seqs == sorted(seqs)
    assert "snapshot" not in {event["event"] for event in first + second}


def test_finished_run_history_snapshot_and_resume_past_the_end(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=3,
                         seconds=0)["run_id"]  # fmt: skip
    deadline = time.monotonic() + 10
    while server.call("events", run_id=run_id)[-1][1] != "run_completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = server.call("events", run_id=run_id)
    last = log[-1][0]
    key = bearer(creds["key"])

    with stream(server, run_id, {**key, "Last-Event-ID": "0"}) as response:
        assert [(e["id"], e["event"]) for e in read_events(response)] == [tuple(row) for row in log]
    # The query parameter, for clients that cannot set headers; the header wins over it.
    with stream(server, run_id, key, params={"last_event_id": "3"}) as response:
        assert [e["id"] for e in read_events(response)] == list(range(4, last + 1))
    with stream(server, run_id, {**key, "Last-Event-ID": "5"}, params={"last_event_id": "3"}) as response:
        assert [e["id"] for e in read_events(response)] == list(range(6, last + 1))
    # No Last-Event-ID on a finished run: the snapshot, then its terminal event at once.
    with stream(server, run_id, key) as response:
        events = read_events(response)
    assert [e["event"] for e in events] == ["snapshot", "run_completed"]
    assert events[0]["data"]["status"] == "completed" and events[0]["id"] == last
    # Resuming past the end: the terminal event again, so the client knows to stop.
    with stream(server, run_id, {**key, "Last-Event-ID": str(last)}) as response:
        assert [(e["id"], e["event"]) for e in read_events(response)] == [(last, "run_completed")]


def test_idle_stream_sends_keep_alives_and_closes_at_the_time_limit(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=1,
                         seconds=0, hold=True)["run_id"]  # fmt: skip
    last = server.call("events", run_id=run_id)[-1][0]
    started = time.monotonic()
    with stream(server, run_id, {**bearer(creds["key"]), "Last-Event-ID": str(last)}) as response:
        reader = Reader(response)
        events = reader.read()
    comments = reader.comments
    elapsed = time.monotonic() - started
    assert events == []  # the run never moved
    assert comments.count(": keep-alive") >= 2  # BATON_SSE_KEEPALIVE_SECONDS=1 on this server
    assert comments[-1].startswith(": stream time limit reached")
    assert MAX_SECONDS - 0.5 <= elapsed < MAX_SECONDS + 3


def test_open_streams_hold_no_database_connection(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=1,
                         seconds=0, hold=True)["run_id"]  # fmt: skip
    opened, done = threading.Barrier(9), threading.Event()

    def listen():
        with stream(server, run_id, bearer(creds["key"])) as response:
            reader = Reader(response)  # kept: closing its line iterator would close the connection
            reader.read(stop_after=first_event)  # the snapshot
            opened.wait()
            done.wait(10)

    threads = [threading.Thread(target=listen) for _ in range(8)]
    for thread in threads:
        thread.start()
    opened.wait(timeout=10)
    time.sleep(0.3)  # several polls of every stream
    status = server.call("status")
    done.set()
    for thread in threads:
        thread.join()
    assert status["active_streams"] == 8
    # Every stream's polls run on one shared thread; nothing is held per stream: at most the poller's
    # connection (when a poll is in flight) and the engine thread's.
    assert status["connections"] <= 2, status
    assert server.wait_for(lambda s: s["active_streams"] == 0)["active_streams"] == 0


def _error(response, status, code):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"]
    body = response.json()["error"]
    assert body["code"] == code
    return body


def test_authentication_permission_tenancy_and_bad_input(server, creds):
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=1,
                         seconds=0)["run_id"]  # fmt: skip
    url = server.url(run_id)
    sse = {"Accept": "text/event-stream"}
    _error(httpx.get(url, headers=sse), 401, "unauthorized")
    _error(httpx.get(url, headers={**sse, **bearer("bt_not_a_real_key")}), 401, "unauthorized")
    body = _error(httpx.get(url, headers={**sse, **bearer(creds["key_without_runs_read"])}), 403,
                  "insufficient_scope")  # fmt: skip
    assert body["details"] == {"required_scope": "runs:read"}
    _error(httpx.get(url, headers={**sse, **bearer(creds["other_key"])}), 404, "run_not_found")
    _error(httpx.get(server.url("run_doesnotexist"), headers=bearer(creds["key"])), 404, "run_not_found")
    bad = {**bearer(creds["key"]), "Last-Event-ID": "abc"}
    _error(httpx.get(url, headers=bad), 400, "invalid_request")
    for digits in ("³", "١٢"):  # str.isdigit() says yes to both; int() refuses or reads them
        _error(httpx.get(url, headers=bearer(creds["key"]), params={"last_event_id": digits}), 400,
               "invalid_request")  # fmt: skip
    _error(httpx.get(url, headers=bearer(creds["key"]), params={"after": "1"}), 400, "invalid_request")

    # A viewer reads runs: with a JWT and with a dashboard session (an EventSource sends the cookie).
    with stream(server, run_id, {**sse, **bearer(creds["viewer_jwt"])}) as response:
        assert response.status_code == 200
        assert read_events(response, stop_after=first_event)[0]["event"] == "snapshot"
    cookies = {settings.SESSION_COOKIE_NAME: creds["viewer_session"]}
    with stream(server, run_id, {**sse, "Last-Event-ID": "0"}, cookies=cookies) as response:
        assert response.status_code == 200
        assert read_events(response, stop_after=first_event)[0]["event"] == "run_queued"


def test_the_organisation_rate_limit_applies(server):
    if time.time() % 60 > 50:  # the per-minute window is fixed: do not straddle its boundary
        time.sleep(61 - time.time() % 60)
    creds = server.call("setup", rate_per_minute=2)
    run_id = server.call("run", organization=creds["organization"], owner=creds["owner"], steps=1,
                         seconds=0)["run_id"]  # fmt: skip
    headers = {**bearer(creds["key"]), "Last-Event-ID": "0"}
    with stream(server, run_id, headers) as response:
        assert response.status_code == 200
        assert response.headers["x-ratelimit-limit"] == "2"
        read_events(response)
    with stream(server, run_id, headers) as response:
        assert response.status_code == 200
        read_events(response)
    refused = httpx.get(server.url(run_id), headers=headers)
    _error(refused, 429, "rate_limited")
    assert int(refused.headers["retry-after"]) >= 1
