"""Failures, retries with backoff, on_failure, leases and their reclaim, lost messages, deadlines, cancel."""

from datetime import timedelta

import pytest
from django.utils import timezone

from accounts.principal import SYSTEM
from config.errors import Conflict, Unprocessable
from runs.engine.control import run_fail_timeout
from runs.engine.reconciler import reconcile_once
from runs.models import Run, StepRun
from runs.services import run_cancel
from tests.runs.conftest import flaky_step, transform

# Every test twice: transforms (and conditions, ends) as instant steps, and claimed with leases.
pytestmark = pytest.mark.usefixtures("both_step_modes")


def test_template_error_fails_run_naming_step_and_is_not_retried(engine):
    run = engine.start(
        [
            transform("a", "{{ inputs.missing }}", retry={"max_attempts": 3}),
            transform("b", 1, depends_on=["a"]),
        ]
    )
    a = engine.steps(run)["a"]
    assert run.status == "failed"
    assert run.error["code"] == "template_error" and run.error["step_id"] == "a"
    assert "Step 'a' config.value" in run.error["message"] and "missing" in run.error["message"]
    assert a.attempt == 1 and a.status == "failed" and len(a.attempts) == 1
    assert engine.statuses(run)["b"] == "cancelled"
    assert ("run_failed", "") in engine.events(run)


def test_step_type_without_handler_fails_clearly(engine, monkeypatch):
    # A registered type whose module has no handler yet (as agent_task has today).
    from workflows.steps import STEP_TYPES, StepType, object_schema

    schema = object_schema({"value": {}})
    unbuilt = StepType(name="unbuilt", description="no handler yet", config_schema=schema)
    monkeypatch.setitem(STEP_TYPES, "unbuilt", unbuilt)
    run = engine.start([{"id": "later", "type": "unbuilt", "config": {"value": 1}}])
    assert run.status == "failed"
    assert run.error["code"] == "step_type_not_available"
    assert "unbuilt" in run.error["message"]


def test_on_failure_continue_lets_downstream_run(engine):
    run = engine.start(
        [
            transform("a", "{{ inputs.missing }}", on_failure="continue"),
            transform("b", "{{ steps.a.status }}: {{ steps.a.error.code }}", depends_on=["a"]),
        ],
        output="{{ steps.b.output }}",
    )
    assert run.status == "completed"
    assert engine.statuses(run) == {"a": "failed", "b": "completed"}
    assert run.result == "failed: template_error"


def test_retry_waits_with_backoff_then_succeeds(engine, flaky):
    flaky.fail_times["a"] = 2
    policy = {"max_attempts": 3, "backoff_seconds": 10, "backoff_multiplier": 3}
    run = engine.start(
        [flaky_step("a", retry=policy), transform("b", "{{ steps.a.output.attempt }}", depends_on=["a"])]
    )
    a = engine.steps(run)["a"]
    assert a.status == "waiting" and engine.queued == []  # holds no worker
    assert timedelta(seconds=9) < a.wake_at - timezone.now() <= timedelta(seconds=10)
    assert not any(reconcile_once().values())  # not due yet

    engine.fast_forward(run)
    a = engine.steps(run)["a"]
    assert a.status == "waiting" and a.attempt == 2
    assert timedelta(seconds=29) < a.wake_at - timezone.now() <= timedelta(seconds=30)  # 10 × 3

    assert engine.fast_forward(run)["woken"] == 1
    run = engine.reload(run)
    a = engine.steps(run)["a"]
    assert run.status == "completed"
    assert a.attempt == 3 and [entry["status"] for entry in a.attempts] == ["failed", "failed", "completed"]
    assert a.attempts[0]["error"]["code"] == "flaky_failure"
    assert engine.steps(run)["b"].output_data == 3
    kinds = [kind for kind, step in engine.events(run) if step == "a"]
    assert kinds == ["step_started", "step_retrying", "step_started", "step_retrying", "step_started",
                     "step_completed"]  # fmt: skip


def test_retries_exhausted_fail_the_run(engine, flaky):
    flaky.fail_times["a"] = 5
    run = engine.start([flaky_step("a", retry={"max_attempts": 2, "backoff_seconds": 0})])
    # backoff 0: requeued at once, no timer
    run = engine.reload(run)
    assert run.status == "failed" and run.error["code"] == "flaky_failure"
    assert flaky.calls == [("a", 1), ("a", 2)]


def _crash(step_run_id, *, seconds_ago=5):
    """What a worker that died mid-step leaves behind: a running step whose lease has run out."""
    StepRun.objects.filter(pk=step_run_id).update(
        status="running", lease_owner="dead-worker", attempt=1, started_at=timezone.now(),
        lease_expires_at=timezone.now() - timedelta(seconds=seconds_ago),
    )  # fmt: skip


def test_expired_lease_is_reclaimed_and_retried(engine, flaky):
    run = engine.start(
        [flaky_step("a", retry={"max_attempts": 2}), transform("b", 2, depends_on=["a"])], drain=False
    )
    _crash(engine.queued.pop())
    counts = reconcile_once()
    assert counts["reclaimed"] == 1
    assert reconcile_once()["reclaimed"] == 0  # acted on once
    engine.drain()
    run = engine.reload(run)
    a = engine.steps(run)["a"]
    assert run.status == "completed"
    assert [entry["status"] for entry in a.attempts] == ["failed", "completed"]
    assert a.attempts[0]["error"]["code"] == "lease_expired"
    assert flaky.calls == [("a", 2)]


def test_expired_lease_without_retries_fails_the_run(engine, flaky):
    run = engine.start([flaky_step("a")], drain=False)
    _crash(engine.queued.pop())
    reconcile_once()
    run = engine.reload(run)
    assert run.status == "failed" and run.error["code"] == "lease_expired"


def test_a_pass_with_nothing_to_repair_is_two_reads(engine, django_assert_num_queries):
    """No run active, no step queued, running or waiting: the scans are skipped (a step left running in a
    finished run is still reclaimed, see test_reclaim_on_a_finished_run_only_closes_the_step)."""
    run = engine.start([transform("a", 1)])
    assert engine.reload(run).status == "completed"
    with django_assert_num_queries(2):
        assert not any(reconcile_once().values())


def test_live_lease_is_not_reclaimed(engine, flaky):
    run = engine.start([flaky_step("a")], drain=False)
    StepRun.objects.filter(pk=engine.queued[0]).update(
        status="running", lease_owner="busy-worker", lease_expires_at=timezone.now() + timedelta(minutes=5)
    )
    assert reconcile_once()["reclaimed"] == 0
    assert engine.statuses(run) == {"a": "running"}


def test_late_result_of_a_reclaimed_step_is_discarded(engine, flaky):
    def reclaimed_meanwhile(context):
        # Another worker took the step over while this one was still executing it.
        StepRun.objects.filter(pk=context.step_run_id).update(lease_owner="other-worker")

    flaky.hooks["a"] = reclaimed_meanwhile
    run = engine.start([flaky_step("a")])
    a = engine.steps(run)["a"]
    assert a.status == "running" and a.lease_owner == "other-worker"
    assert a.output_data is None and a.attempts == []
    assert engine.reload(run).status == "running"


def test_lost_message_is_redispatched(engine, settings):
    run = engine.start([transform("a", 1), transform("b", 2, depends_on=["a"])], drain=False)
    from runs.engine import dispatch

    dispatch.MANUAL_QUEUE.clear()  # the broker lost the message
    assert reconcile_once()["redispatched"] == 0  # not stale yet
    StepRun.objects.filter(run=run, status="queued").update(
        dispatched_at=timezone.now() - timedelta(seconds=settings.BATON_REDISPATCH_AFTER_SECONDS + 1)
    )
    assert reconcile_once()["redispatched"] == 1
    assert reconcile_once()["redispatched"] == 0
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_run_past_its_deadline_fails_with_run_timeout(engine):
    run = engine.start(
        [{"id": "pause", "type": "wait", "config": {"seconds": 600}}, transform("b", 1, depends_on=["pause"])]
    )
    assert run.deadline_at is not None
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert reconcile_once()["timed_out"] == 1
    run = engine.reload(run)
    assert run.status == "failed" and run.error["code"] == "run_timeout"
    assert engine.statuses(run) == {"pause": "cancelled", "b": "cancelled"}
    assert engine.events(run)[-1] == ("run_failed", "")


def test_invalid_input_is_refused(engine):
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    with pytest.raises(Unprocessable) as caught:
        engine.start([transform("a", 1)], inputs=schema, input_data={"n": "x"})
    assert caught.value.code == "invalid_input"
    assert caught.value.details["errors"] == ["input.n: 'x' is not of type 'integer'"]


def test_cancel_before_any_step_runs(engine):
    run = engine.start([transform("a", 1), transform("b", 2, depends_on=["a"])], drain=False)
    run_cancel(run=run, actor=SYSTEM, reason="changed my mind")
    engine.drain()  # the queued message arrives after the cancel: nothing runs
    run = engine.reload(run)
    assert run.status == "cancelled" and run.cancel_requested_at is not None
    assert engine.statuses(run) == {"a": "cancelled", "b": "cancelled"}
    assert [kind for kind, _ in engine.events(run)].count("step_started") == 0
    assert engine.events(run)[-1] == ("run_cancelled", "")
    with pytest.raises(Conflict) as caught:
        run_cancel(run=run, actor=SYSTEM)
    assert caught.value.code == "run_not_cancellable"


def test_cancel_while_a_step_runs_lets_it_finish_then_cancels(engine, flaky):
    def cancel_now(context):
        run_cancel(run=Run.objects.get(pk=context.run_id), actor=SYSTEM)
        assert Run.objects.get(pk=context.run_id).status == "running"  # a step is still running

    flaky.hooks["a"] = cancel_now
    run = engine.start([flaky_step("a"), flaky_step("b", depends_on=["a"])])
    assert run.status == "cancelled"
    assert engine.statuses(run) == {"a": "completed", "b": "cancelled"}
    assert flaky.calls == [("a", 1)]


def test_cancel_a_waiting_run(engine):
    run = engine.start([{"id": "pause", "type": "wait", "config": {"seconds": 60}}])
    run_cancel(run=run, actor=SYSTEM)
    run = engine.reload(run)
    assert run.status == "cancelled" and engine.statuses(run) == {"pause": "cancelled"}
    assert engine.fast_forward(run)["woken"] == 0


def test_reclaim_on_a_finished_run_only_closes_the_step(engine, flaky):
    run = engine.start([flaky_step("a", retry={"max_attempts": 3})], drain=False)
    Run.objects.filter(pk=run.pk).update(deadline_at=timezone.now() - timedelta(seconds=1))
    assert run_fail_timeout(run.id)
    step_run_id = StepRun.objects.get(run=run).pk
    _crash(step_run_id)  # a worker died on a step of the run that has just timed out
    assert reconcile_once()["reclaimed"] == 1
    row = StepRun.objects.get(pk=step_run_id)
    assert row.status == "failed" and row.error["code"] == "lease_expired"
    assert engine.reload(run).error["code"] == "run_timeout"
    assert engine.queued == [step_run_id]  # only the original message; no retry was dispatched


def test_a_step_finishing_after_its_run_failed_is_recorded_without_events(engine, flaky):
    def fail_the_run_meanwhile(context):
        Run.objects.filter(pk=context.run_id).update(deadline_at=timezone.now() - timedelta(seconds=1))
        assert run_fail_timeout(context.run_id)

    flaky.fail_times["a"] = 1  # would be retried, but the run is over
    flaky.hooks["a"] = fail_the_run_meanwhile
    run = engine.start([flaky_step("a", retry={"max_attempts": 3}), flaky_step("b", depends_on=["a"])])
    a = engine.steps(run)["a"]
    assert run.status == "failed" and run.error["code"] == "run_timeout"
    assert a.status == "failed" and a.error["code"] == "flaky_failure" and a.wake_at is None
    assert engine.events(run)[-1] == ("run_failed", "")
    assert engine.statuses(run)["b"] == "cancelled"


def test_an_attempt_over_its_timeout_fails_with_step_timeout(engine, flaky):
    import time

    flaky.hooks["a"] = lambda context: time.sleep(1.05)
    run = engine.start([flaky_step("a", timeout_seconds=1)])
    a = engine.steps(run)["a"]
    assert run.status == "failed" and run.error["code"] == "step_timeout"
    assert a.attempts[0]["duration_ms"] >= 1000
