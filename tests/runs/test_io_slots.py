"""I/O slots (runs/engine/slots.py) on real django-q2 clusters (`manage.py qcluster`; SQLite + ORM broker, or
PostgreSQL + Redis): http_request steps to a local server that waits overlap inside one worker process, and
terminate, per-step timeouts, retries, a SIGKILL (leases), a SIGTERM and django-q2's recycling keep their
guarantees. The runs are made and read by a driver process in the cluster's environment."""

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.runs.support.kill_harness import BASE_DIR, Cluster, cluster_env, wait_for
from tests.runs.support.slow_server import SlowServer

pytestmark = pytest.mark.slow


def _driver(env, *args, timeout=120) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "tests.runs.support.io_driver", *map(str, args)],
        env=env, cwd=BASE_DIR, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def _http_step(url: str, **extra) -> str:
    # A step timeout well past the server's wait: without one the step's deadline is the 5 s lease.
    return json.dumps({"type": "http_request", "config": {"url": url}, "timeout_seconds": 60, **extra})


@pytest.fixture
def server():
    with SlowServer() as server:
        yield server


@pytest.fixture
def io_cluster(transactional_db, tmp_path):
    """A factory of clusters on this test's database, allowed to call 127.0.0.1; all killed at the end."""
    started: list[Cluster] = []

    def make(**overrides) -> Cluster:
        env = cluster_env(tmp_path, BATON_HTTP_ALLOWLIST="127.0.0.1", **overrides)
        cluster = Cluster(env, f"io{len(started)}")
        started.append(cluster)
        return cluster

    yield make
    for cluster in started:
        cluster.kill()


def _steps(report: dict) -> list[dict]:
    return [run["steps"]["call"] for run in report.values()]


def test_slow_steps_overlap_in_one_worker_process_with_timeouts_and_retries(io_cluster, server):
    cluster = io_cluster(BATON_WORKERS="1", BATON_WORKER_CONCURRENCY="40")
    env = cluster.env
    slow = _driver(env, "start", 20, _http_step(server.url("/sleep?s=4")))["runs"]
    # Step timeout 1 s against a server that waits 30 s, two attempts; and a 503 then a 200 (a retry).
    no_wait = {"max_attempts": 2, "backoff_seconds": 0}
    timed_out = _driver(
        env, "start", 1, _http_step(server.url("/sleep?s=30"), timeout_seconds=1, retry=no_wait)
    )
    flaky = _driver(env, "start", 1, _http_step(server.url("/flaky?fail=1"), retry=no_wait))
    timed_out, flaky = timed_out["runs"], flaky["runs"]
    cluster.start()
    report = _driver(env, "report", 90, *slow, *timed_out, *flaky)
    # One worker process held most of the 20 waiting requests at once (one step per process would hold 1;
    # on a loaded machine its main thread claims the later ones while the first wait).
    assert server.peak >= 10, server.peak
    for run_id in slow:
        assert report[run_id]["status"] == "completed"
        assert report[run_id]["steps"]["call"]["attempts"] == ["completed"]
    step = report[timed_out[0]]["steps"]["call"]
    assert report[timed_out[0]]["status"] == "failed"
    # The call's timeout is the step's (what is left of it): the outbound code `timeout`, retried.
    assert step["attempts"] == ["failed", "failed"] and step["errors"] == ["timeout", "timeout"], step
    assert step["seconds"] < 10  # two attempts of about a second each (plus the retry's dispatch)
    step = report[flaky[0]]["steps"]["call"]
    assert step["attempts"] == ["failed", "completed"] and step["errors"][0] == "http_status", step


def test_terminate_abandons_the_http_call_in_flight(io_cluster, server):
    cluster = io_cluster()
    env = cluster.env
    (run_id,) = _driver(env, "start", 1, _http_step(server.url("/sleep?s=60"), timeout_seconds=120))["runs"]
    cluster.start()
    wait_for(lambda: server.current == 1, timeout=60)
    _driver(env, "terminate", run_id)
    report = _driver(env, "report", 30, run_id)
    assert report[run_id]["status"] == "cancelled"
    step = report[run_id]["steps"]["call"]
    assert step["status"] == "cancelled" and step["error"] == "terminated", step
    assert step["after_terminate"] < 10, step  # the monitor's poll and the guard's tick; not the 60 s
    wait_for(lambda: server.abandoned == 1, timeout=10)  # the worker hung up on the server


def test_lease_expiry_after_sigkill_recovers_the_steps_in_flight(io_cluster, server):
    cluster = io_cluster()  # leases of 5 s (kill_harness)
    env = cluster.env
    retry = {"max_attempts": 2, "backoff_seconds": 0}  # without one, a lost lease fails the step
    runs = _driver(env, "start", 6, _http_step(server.url("/sleep?s=3"), retry=retry))["runs"]
    cluster.start()
    wait_for(lambda: server.current == 6, timeout=60)  # every step is in flight in the slots
    cluster.kill()
    server.reset()
    assert {step["status"] for step in _steps(_driver(env, "steps", *runs))} == {"running"}
    io_cluster().start()  # a new cluster: its reconciler reclaims the steps once their leases expire
    report = _driver(env, "report", 90, *runs)
    for step in _steps(report):
        assert step["status"] == "completed"
        assert step["attempts"] == ["failed", "completed"] and step["errors"][0] == "lease_expired", step


@pytest.mark.parametrize("target", ["cluster", "group"])
def test_sigterm_drains_the_steps_in_flight(io_cluster, server, target):
    cluster = io_cluster()
    env = cluster.env
    runs = _driver(env, "start", 8, _http_step(server.url("/sleep?s=3")))["runs"]
    cluster.start()
    wait_for(lambda: server.current == 8, timeout=60)
    main = cluster.process.pid
    if target == "cluster":  # as `serve` stops it: django-q2 stops its workers (a poison pill each)
        os.kill(main, signal.SIGTERM)
        wait_for(lambda: not cluster.pids(), timeout=60, interval=0.1)
    else:  # a service manager's SIGTERM to every process: each worker drains and exits by itself
        os.killpg(main, signal.SIGTERM)
        # (django-q2's sentinel dies at once, leaving its parent waiting: only the workers are watched)
        wait_for(lambda: set(cluster.pids()) <= {main}, timeout=60, interval=0.1)
    report = _driver(env, "steps", *runs)
    assert server.served == 8 and server.abandoned == 0
    for run in report.values():  # recorded before the workers exited: no step left for its lease
        assert run["status"] == "completed"
        assert run["steps"]["call"]["attempts"] == ["completed"]


def test_a_recycled_worker_drains_its_steps_first(io_cluster, server):
    cluster = io_cluster(BATON_TEST_RECYCLE="2")  # django-q2 recycles each worker after two tasks
    env = cluster.env
    runs = _driver(env, "start", 10, _http_step(server.url("/sleep?s=1.5")))["runs"]
    cluster.start()
    report = _driver(env, "report", 90, *runs)
    for run in report.values():  # no lease expired: every step completed at its first attempt
        assert run["status"] == "completed"
        assert run["steps"]["call"]["attempts"] == ["completed"], run


def test_cluster_gauges_count_the_running_steps_and_those_in_slots(engine, settings):
    from runs.engine import slots
    from runs.models import StepRun

    settings.BATON_WORKERS, settings.BATON_WORKER_CONCURRENCY = 2, 50
    steps = [
        {"id": "call", "type": "http_request", "config": {"url": "https://example.com/"}},
        {"id": "hook", "type": "webhook", "config": {"url": "https://example.com/"}},
        {"id": "pure", "type": "transform", "config": {"value": 1}},
    ]
    run = engine.start(steps, drain=False)
    StepRun.objects.filter(run=run).update(status="running")
    assert slots.cluster_gauges() == {"steps_in_flight": 3, "slots_used": 2, "slots_capacity": 100}
    settings.BATON_WORKER_CONCURRENCY = 1  # the slots are off
    assert slots.cluster_gauges()["slots_capacity"] == 0
