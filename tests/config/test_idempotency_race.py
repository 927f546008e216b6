"""20 identical requests with one Idempotency-Key at the same instant create exactly one object."""

import json
import os
import subprocess
import sys
import threading
import time

import httpx
import pytest
from django.conf import settings
from django.db import connection

from tests.conftest import key_for
from tests.factories import UserFactory, make_org
from tests.support.processes import child_database_url, free_port
from workflows.models import Project

CONCURRENCY = 20
BASE_DIR = settings.BASE_DIR


def fire_at_once(url: str, headers: dict, body: dict, count: int) -> list[httpx.Response]:
    barrier = threading.Barrier(count)
    responses: list = [None] * count

    def send(i):
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            responses[i] = client.post(url, json=body, headers=headers)

    threads = [threading.Thread(target=send, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return responses


def check_one_created(responses):
    created = [r for r in responses if r.status_code == 201]
    replayed = [r for r in created if r.headers.get("Idempotent-Replayed") == "true"]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(created) + len(in_flight) == CONCURRENCY, [(r.status_code, r.text[:200]) for r in responses]
    assert len(created) - len(replayed) == 1
    assert {r.json()["id"] for r in created} == {created[0].json()["id"]}
    assert all(r.json()["error"]["code"] == "idempotency_request_in_progress" for r in in_flight)
    return created[0].json()["id"]


@pytest.mark.slow
@pytest.mark.urls("tests.config.support.urls_testing")
def test_concurrent_identical_requests_create_once_live_server(live_server):
    owner = UserFactory()
    org = make_org(name="Racers", plan="enterprise", owner=owner)
    headers = {"Authorization": f"Bearer {key_for(org, owner)}", "Idempotency-Key": "race-1"}

    url = f"{live_server.url}/api/v1/_test/projects"
    responses = fire_at_once(url, headers, {"name": "Raced"}, CONCURRENCY)

    project_id = check_one_created(responses)
    assert list(Project.objects.filter(organization=org).values_list("id", flat=True)) == [project_id]


# Several processes: a uvicorn server with 2 worker processes on the same database (a SQLite file in
# WAL mode, or the PostgreSQL test database) and the same Redis, as in production.


def _server_env(tmp_path) -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.config.support.live_settings", "BATON_ENV": "test",
           "BATON_DATA_DIR": str(tmp_path), "BATON_LOG_LEVEL": "WARNING"}  # fmt: skip
    env.pop("BATON_TEST_DB_NAME", None)
    if connection.vendor == "sqlite":
        env.pop("DATABASE_URL", None)
        env["BATON_SQLITE_PATH"] = str(tmp_path / "live.sqlite3")
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env=env, cwd=BASE_DIR, check=True)
    else:
        env["DATABASE_URL"] = child_database_url()
    return env


def _setup(env, *args) -> str:
    result = subprocess.run([sys.executable, "-m", "tests.config.support.live_setup", *args], env=env,
                            cwd=BASE_DIR, check=True, capture_output=True, text=True)  # fmt: skip
    return result.stdout.strip()


@pytest.fixture(scope="module")
def _baton_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """A uvicorn server with 2 worker processes, started once for this module."""
    with django_db_blocker.unblock():
        env = _server_env(tmp_path_factory.mktemp("live"))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "2", "--log-level", "warning"],
        env=env, cwd=BASE_DIR,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert server.poll() is None, "the server exited"
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.2)
        yield base, env
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture
def baton_server(_baton_server, transactional_db):
    """(base url, env); on PostgreSQL the server shares the test database, flushed after each test."""
    return _baton_server


@pytest.mark.slow
def test_concurrent_identical_requests_create_once_across_processes(baton_server):
    base, env = baton_server
    created = json.loads(_setup(env, "create"))
    headers = {"Authorization": f"Bearer {created['key']}", "Idempotency-Key": "race-processes"}

    responses = fire_at_once(f"{base}/api/v1/_test/projects", headers, {"name": "Raced"}, CONCURRENCY)

    check_one_created(responses)
    assert _setup(env, "count", created["organization"]) == "1"
    again = httpx.post(f"{base}/api/v1/_test/projects", json={"name": "Raced"}, headers=headers)
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true"


@pytest.mark.slow
def test_rate_limit_holds_across_processes(baton_server):
    base, env = baton_server
    created = json.loads(_setup(env, "create", "25"))
    if time.time() % 60 > 50:  # keep the burst inside one minute window
        time.sleep(61 - time.time() % 60)
    barrier = threading.Barrier(40)
    statuses: list[int] = []

    def send():
        with httpx.Client(timeout=60) as client:
            barrier.wait()
            response = client.get(f"{base}/api/v1/_test/whoami", headers={"X-API-Key": created["key"]})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(40)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(statuses) == [200] * 25 + [429] * 15
