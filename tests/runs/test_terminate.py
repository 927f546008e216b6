"""`run_terminate`: running steps are killed (a real sandboxed script's whole process group), the step ends
`cancelled` with error code `terminated`, the run `cancelled`; cooperative cancel still lets them finish."""

import os
import threading
import time
from datetime import timedelta

import pytest
from django.db import connections
from django.utils import timezone

from audit.models import AuditEvent
from config.errors import Conflict
from runs.engine.reconciler import reconcile_once
from runs.models import RunEvent, StepRun
from runs.services import run_cancel, run_terminate
from tests.runs.conftest import flaky_step, transform
from tests.support.processes import alive, descendants

# scripts in subprocesses: one never stopped would hang the test
pytestmark = pytest.mark.timeout(60)


def script_step(step_id, code, language="shell", **extra):
    return {"id": step_id, "type": "script", "config": {"language": language, "code": code}, **extra}


def _wait_for(condition, timeout: float, interval: float = 0.05):
    """Poll until condition() is truthy (or the timeout passes: its last value)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class Worker(threading.Thread):
    """A worker thread executing the engine's dispatched steps (manual dispatch) on its own connection."""

    def __init__(self, engine):
        super().__init__(daemon=True)
        self.engine = engine
        self.error = None

    def run(self):
        try:
            self.engine.drain()
        except Exception as exc:  # surfaced by the test
            self.error = exc
        finally:
            connections.close_all()


@pytest.mark.django_db(transaction=True)
def test_terminate_kills_a_running_script_and_cancels_the_run(engine):
    steps = [
        script_step("sleeper", "sleep 60 & sleep 60\necho done\n"),  # a background child too: the group dies
        transform("after", "never", depends_on=["sleeper"]),
    ]
    run = engine.start(steps, drain=False)
    worker = Worker(engine)
    worker.start()
    before = set(descendants(os.getpid(), live=True))
    pids = _wait_for(
        lambda: (
            {p for p in descendants(os.getpid(), live=True) - before if alive(p)}
            if StepRun.objects.filter(run=run, step_id="sleeper", status="running").exists()
            else None
        ),
        timeout=10,
    )
    assert pids, "the script never started"
    _wait_for(lambda: len(descendants(os.getpid(), live=True) - before) >= 3, timeout=5)  # bash + two sleeps
    pids = descendants(os.getpid(), live=True) - before
    assert len(pids) >= 3

    terminated_at = time.monotonic()
    run_terminate(run=run, actor=engine.actor, reason="stuck")
    assert _wait_for(lambda: not any(alive(pid) for pid in pids), timeout=3), "script processes survived"
    killed_after = time.monotonic() - terminated_at
    worker.join(timeout=10)
    assert not worker.is_alive() and worker.error is None
    assert killed_after < 2.5

    run = engine.reload(run)
    assert run.status == "cancelled" and run.terminate_requested_at is not None and run.error is None
    sleeper, after = engine.steps(run)["sleeper"], engine.steps(run)["after"]
    assert sleeper.status == "cancelled"
    assert sleeper.error["code"] == "terminated"
    assert [entry["status"] for entry in sleeper.attempts] == ["cancelled"]
    assert sleeper.output_data is None
    assert after.status == "cancelled"
    events = list(RunEvent.objects.filter(run=run).order_by("seq"))
    assert [event.type for event in events][-1] == "run_cancelled"
    assert events[-1].data == {"status": "cancelled", "terminated": True}
    assert "step_completed" not in [event.type for event in events]
    audit = AuditEvent.objects.get(event="run.terminated", target_id=run.id)
    assert (
        audit.actor == engine.actor.actor_id and audit.data == {"reason": "stuck"} and audit.note == "stuck"
    )


@pytest.mark.django_db(transaction=True)
def test_cooperative_cancel_lets_a_running_script_finish(engine):
    code = 'import json, time\ntime.sleep(1.2)\nprint(json.dumps({"finished": True}))\n'
    run = engine.start(
        [script_step("slow", code, language="python"), transform("next", 1, depends_on=["slow"])], drain=False
    )
    worker = Worker(engine)
    worker.start()
    assert _wait_for(lambda: StepRun.objects.filter(run=run, step_id="slow", status="running").exists(), 10)
    run_cancel(run=run, actor=engine.actor)
    assert engine.reload(run).status == "running"  # the running step is awaited, not killed
    worker.join(timeout=15)
    run = engine.reload(run)
    assert run.status == "cancelled" and run.terminate_requested_at is None
    slow = engine.steps(run)["slow"]
    assert slow.status == "completed" and slow.output_data["finished"] is True
    assert engine.steps(run)["next"].status == "cancelled"
    assert RunEvent.objects.filter(run=run).order_by("-seq").first().data == {"status": "cancelled"}


def test_terminate_a_waiting_run_cancels_it_at_once(engine):
    run = engine.start(
        [{"id": "pause", "type": "wait", "config": {"seconds": 600}}, transform("b", 1, depends_on=["pause"])]
    )
    assert engine.steps(run)["pause"].status == "waiting"
    run_terminate(run=run, actor=engine.actor)
    run = engine.reload(run)
    assert run.status == "cancelled"
    assert engine.statuses(run) == {"pause": "cancelled", "b": "cancelled"}
    assert engine.events(run)[-1] == ("run_cancelled", "")
    assert AuditEvent.objects.filter(event="run.terminated", target_id=run.id).count() == 1
    # Terminal now: terminating (or cancelling) again is a conflict.
    with pytest.raises(Conflict) as exc:
        run_terminate(run=run, actor=engine.actor)
    assert exc.value.code == "run_not_cancellable"


def test_terminate_twice_is_audited_once_and_escalates_a_cancel(engine, flaky):
    run = engine.start([flaky_step("a")], drain=False)
    step_run_id = engine.queued.pop()
    StepRun.objects.filter(pk=step_run_id).update(
        status="running",
        lease_owner="worker-1",
        attempt=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    run_cancel(run=run, actor=engine.actor)
    run_terminate(run=run, actor=engine.actor)
    run_terminate(run=run, actor=engine.actor)
    run = engine.reload(run)
    assert run.status == "running" and run.terminate_requested_at and run.cancel_requested_at
    assert AuditEvent.objects.filter(event="run.terminated", target_id=run.id).count() == 1
    assert AuditEvent.objects.filter(event="run.cancelled", target_id=run.id).count() == 1


def test_terminated_run_whose_worker_died_is_cancelled_when_the_lease_expires(engine, flaky):
    run = engine.start(
        [flaky_step("a", retry={"max_attempts": 3}), flaky_step("b", depends_on=["a"])], drain=False
    )
    step_run_id = engine.queued.pop()
    StepRun.objects.filter(pk=step_run_id).update(
        status="running",
        lease_owner="dead-worker",
        attempt=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
    )
    run_terminate(run=run, actor=engine.actor)
    assert engine.reload(run).status == "running"  # a step is still (nominally) running
    StepRun.objects.filter(pk=step_run_id).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert reconcile_once()["reclaimed"] == 1
    engine.drain()
    run = engine.reload(run)
    assert run.status == "cancelled"
    a = StepRun.objects.get(pk=step_run_id)
    assert a.status == "cancelled" and a.error["code"] == "terminated"  # not retried
    assert flaky.calls == []
    assert "step_retrying" not in [kind for kind, _ in engine.events(run)]


def test_a_late_result_after_terminate_is_recorded_as_terminated(engine, flaky):
    """A handler that does not poll should_stop (a transform, an HTTP call) finishes; its result is not
    used: the step ends cancelled/terminated and nothing downstream starts."""
    seen = {}

    def terminate_meanwhile(context):
        run_terminate(run=run, actor=engine.actor)
        seen["stop"] = context.should_stop  # the flag is set by the step monitor, not polled here

    flaky.hooks["a"] = terminate_meanwhile
    run = engine.start([flaky_step("a"), flaky_step("b", depends_on=["a"])], drain=False)
    engine.drain()
    run = engine.reload(run)
    assert run.status == "cancelled"
    assert engine.statuses(run) == {"a": "cancelled", "b": "cancelled"}
    assert engine.steps(run)["a"].error["code"] == "terminated"
    assert flaky.calls == [("a", 1)]
    assert callable(seen["stop"])
