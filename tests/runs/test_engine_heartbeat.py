"""The lease heartbeat: a handler running longer than its lease is not reclaimed while its worker lives
(runs/engine/monitor.py); a worker that lost its lease is told to stop; a dead worker still loses it."""

import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from runs.engine import execute
from runs.engine.reconciler import reconcile_once
from runs.models import RunEvent, StepRun
from tests.runs.conftest import flaky_step
from tests.runs.test_terminate import Worker, _wait_for, script_step

# a worker thread that never stops would hang the test
pytestmark = pytest.mark.timeout(60)


class Reconciler(threading.Thread):
    """A reconciler looping every 0.1 s (as the worker processes' threads do), until stopped."""

    def __init__(self):
        super().__init__(daemon=True)
        self.done = threading.Event()
        self.reclaimed = 0
        self.error = None

    def run(self):
        try:
            while not self.done.wait(0.1):
                self.reclaimed += reconcile_once()["reclaimed"]
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_a_step_longer_than_its_lease_completes_once(engine, flaky, settings):
    settings.BATON_STEP_LEASE_SECONDS = 1
    leases = []

    def slow(context):
        for _ in range(6):  # 2.4 s: more than two leases
            time.sleep(0.4)
            leases.append(StepRun.objects.get(pk=context.step_run_id).lease_expires_at)

    flaky.hooks["a"] = slow
    run = engine.start(
        [flaky_step("a", retry={"max_attempts": 3}), flaky_step("b", depends_on=["a"])], drain=False
    )
    reconciler = Reconciler()
    reconciler.start()
    worker = Worker(engine)
    worker.start()
    worker.join(timeout=20)
    reconciler.done.set()
    reconciler.join()
    assert worker.error is None and reconciler.error is None
    run = engine.reload(run)
    assert run.status == "completed", run.error
    assert flaky.calls == [("a", 1), ("b", 1)]
    a = engine.steps(run)["a"]
    assert [entry["status"] for entry in a.attempts] == ["completed"]
    assert reconciler.reclaimed == 0
    assert not RunEvent.objects.filter(run=run, type__in=["step_retrying", "step_failed"]).exists()
    # The lease moved forward while the handler ran, and never lapsed.
    assert len(set(leases)) >= 3 and leases == sorted(leases)


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_lost_its_lease_stops_its_script(engine, settings):
    settings.BATON_STEP_LEASE_SECONDS = 1
    run = engine.start([script_step("long", "sleep 30\n", timeout_seconds=30)], drain=False)
    worker = Worker(engine)
    worker.start()
    assert _wait_for(lambda: StepRun.objects.filter(run=run, status="running").exists(), 10)
    # Another worker took the step over (as after a reclaim): the heartbeat's compare-and-set fails.
    StepRun.objects.filter(run=run).update(lease_owner="another-worker")
    started = time.monotonic()
    worker.join(timeout=10)
    assert not worker.is_alive() and time.monotonic() - started < 3
    step = StepRun.objects.get(run=run)
    assert step.status == "running" and step.lease_owner == "another-worker"  # the late result was discarded
    assert step.attempts == []


def test_a_dead_worker_still_loses_its_lease(engine, flaky):
    """No heartbeat without a live worker: the reconciler reclaims the step after its lease."""
    run = engine.start([flaky_step("a", retry={"max_attempts": 2})], drain=False)
    step_run_id = engine.queued.pop()
    claimed = execute.claim(
        step_run_id, timezone.now()
    )  # claimed by a worker that then died (never executed)
    assert claimed is not None
    step = StepRun.objects.get(pk=step_run_id)
    assert step.status == "running"
    assert timedelta(seconds=290) < step.lease_expires_at - timezone.now() <= timedelta(seconds=300)
    StepRun.objects.filter(pk=step_run_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert reconcile_once()["reclaimed"] == 1
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    assert [entry["status"] for entry in StepRun.objects.get(pk=step_run_id).attempts] == [
        "failed",
        "completed",
    ]
    assert StepRun.objects.get(pk=step_run_id).attempts[0]["error"]["code"] == "lease_expired"


def test_lease_is_the_timeout_plus_grace_capped_by_the_setting(settings):
    settings.BATON_STEP_LEASE_SECONDS = 300
    assert execute.lease_seconds({}) == 300
    assert execute.lease_seconds({"timeout_seconds": 10}) == 40
    assert execute.lease_seconds({"timeout_seconds": 3600}) == 300
