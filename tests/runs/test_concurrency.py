"""Workflow concurrency limits (reject / queue / cancel_running, per rendered key) and the organisation's
cap on concurrent runs: admission is FIFO, limits are read when queued runs are admitted, and a lost
admission request is repaired by the reconciler (runs/concurrency.py)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from config.errors import Conflict, Unprocessable
from runs.engine import dispatch as dispatch_module
from runs.engine.reconciler import reconcile_once
from runs.models import Run, StepRun
from runs.services import run_cancel, run_create
from tests.runs.conftest import flaky_step, transform
from workflows.services import workflow_update_metadata

WAIT = {"id": "hold", "type": "wait", "config": {"seconds": 600}}


def keyed_workflow(engine, on_limit="queue", limit=1, key="{{ inputs.customer }}", steps=None):
    workflow = engine.workflow(
        steps or [WAIT, transform("done", "{{ inputs.customer }}", depends_on=["hold"])]
    )
    workflow.concurrency = {"limit": limit, "key": key, "on_limit": on_limit}
    workflow.save(update_fields=["concurrency"])
    return workflow


def trigger(engine, workflow, customer="acme", **options):
    run = run_create(workflow=workflow, actor=engine.actor, input_data={"customer": customer}, **options)
    engine.drain()
    return engine.reload(run)


def finish(engine, run):
    """Let a run holding a wait step finish: its timer is due, the reconciler wakes it, it completes."""
    past = timezone.now() - timedelta(seconds=1)
    for step in StepRun.objects.filter(run=run, status="waiting"):
        step.state = {**step.state, "until": past.isoformat()}
        step.wake_at = past
        step.save(update_fields=["state", "wake_at"])
    engine.fast_forward(run)
    run = engine.reload(run)
    assert run.status == "completed", run.error
    return run


def statuses(*runs):
    return [Run.objects.get(pk=run.pk).status for run in runs]


def test_queue_policy_keeps_runs_of_a_busy_key_queued_fifo(engine):
    workflow = keyed_workflow(engine)
    first = trigger(engine, workflow, "acme")
    second = trigger(engine, workflow, "acme")
    other = trigger(engine, workflow, "globex")  # another key: not blocked by acme's queue
    third = trigger(engine, workflow, "acme")
    assert statuses(first, second, other, third) == ["running", "queued", "running", "queued"]
    assert (first.concurrency_key, other.concurrency_key) == ("acme", "globex")
    assert engine.events(second) == [("run_queued", "")]  # nothing started: no step is queued either
    assert engine.statuses(second) == {"hold": "pending", "done": "pending"}

    finish(engine, first)
    assert statuses(second, third) == ["running", "queued"]  # FIFO: the older one first
    finish(engine, second)
    assert statuses(third) == ["running"]
    finish(engine, third)
    assert engine.events(third)[:2] == [("run_queued", ""), ("run_started", "")]


def test_cancelling_the_running_run_admits_the_next(engine):
    workflow = keyed_workflow(engine)
    first, second = trigger(engine, workflow), trigger(engine, workflow)
    run_cancel(run=first, actor=engine.actor)
    engine.drain()
    assert statuses(first, second) == ["cancelled", "running"]


def test_cancelling_a_queued_run_ends_it_without_starting_it(engine):
    workflow = keyed_workflow(engine)
    first, second = trigger(engine, workflow), trigger(engine, workflow)
    run_cancel(run=second, actor=engine.actor)
    engine.drain()
    second = engine.reload(second)
    assert statuses(first, second) == ["running", "cancelled"]
    assert second.started_at is None
    assert engine.events(second) == [("run_queued", ""), ("run_cancelled", "")]


def test_reject_policy_answers_workflow_already_running(engine):
    workflow = keyed_workflow(engine, on_limit="reject", limit=2)
    first, _second = trigger(engine, workflow), trigger(engine, workflow)
    before = Run.objects.count()
    with pytest.raises(Conflict) as exc:
        trigger(engine, workflow)
    assert exc.value.code == "workflow_already_running"
    assert "limit 2" in exc.value.message
    assert Run.objects.count() == before  # nothing was created
    assert trigger(engine, workflow, "globex").status == "running"  # another key
    finish(engine, first)
    assert trigger(engine, workflow).status == "running"


def test_cancel_running_policy_cancels_the_oldest_and_starts_the_new_run(engine):
    workflow = keyed_workflow(engine, on_limit="cancel_running")
    first = trigger(engine, workflow)
    other = trigger(engine, workflow, "globex")
    second = trigger(engine, workflow)
    assert statuses(first, other, second) == ["cancelled", "running", "running"]
    audit = AuditEvent.objects.get(event="run.cancelled", target_id=first.id)
    assert audit.actor == engine.actor.actor_id
    assert audit.data == {"reason": "concurrency_limit", "replaced_by": second.id}
    triggered = AuditEvent.objects.get(event="run.triggered", target_id=second.id)
    assert triggered.seq < audit.seq


def test_cancel_running_waits_for_the_old_runs_running_step(engine, flaky):
    """Cooperative: the old run's running step finishes first; only then does the new run start (the limit
    is never exceeded)."""
    workflow = keyed_workflow(
        engine, on_limit="cancel_running", steps=[flaky_step("a"), flaky_step("b", depends_on=["a"])]
    )
    created = {}

    def trigger_meanwhile(context):
        if "second" not in created:
            created["second"] = run_create(
                workflow=workflow, actor=engine.actor, input_data={"customer": "acme"}
            )
            created["status"] = engine.reload(created["second"]).status

    flaky.hooks["a"] = trigger_meanwhile
    first = run_create(workflow=workflow, actor=engine.actor, input_data={"customer": "acme"})
    engine.drain()
    assert created["status"] == "queued"  # the first run's step "a" was still running
    first, second = engine.reload(first), engine.reload(created["second"])
    assert (first.status, second.status) == ("cancelled", "completed")
    assert engine.statuses(first) == {"a": "completed", "b": "cancelled"}


def test_organisation_cap_queues_runs_beyond_it(engine, org):
    org.max_concurrent_runs = 2
    org.save(update_fields=["max_concurrent_runs"])
    workflow = engine.workflow([WAIT])  # no workflow limit
    runs = [trigger(engine, workflow) for _ in range(4)]
    assert statuses(*runs) == ["running", "running", "queued", "queued"]
    finish(engine, runs[1])
    assert statuses(*runs) == ["running", "completed", "running", "queued"]
    org.max_concurrent_runs = None  # unlimited: the reconciler's pass (or the next finish) admits the rest
    org.save(update_fields=["max_concurrent_runs"])
    assert reconcile_once()["admitted"] == 1
    engine.drain()
    assert statuses(*runs) == ["running", "completed", "running", "running"]


def test_a_run_blocked_by_its_key_does_not_block_other_runs_under_the_cap(engine, org):
    org.max_concurrent_runs = 2
    org.save(update_fields=["max_concurrent_runs"])
    workflow = keyed_workflow(engine)
    plain = engine.workflow([WAIT])
    acme1, acme2 = trigger(engine, workflow, "acme"), trigger(engine, workflow, "acme")
    free = run_create(workflow=plain, actor=engine.actor)
    engine.drain()
    assert statuses(acme1, acme2, free) == ["running", "queued", "running"]
    finish(engine, free)
    assert statuses(acme2) == ["queued"]  # the org has a free slot, but acme's key does not


def test_lowering_a_limit_applies_to_runs_still_queued(engine):
    workflow = keyed_workflow(engine, limit=2)
    runs = [trigger(engine, workflow) for _ in range(4)]
    assert statuses(*runs) == ["running", "running", "queued", "queued"]
    lowered = {"limit": 1, "key": "{{ inputs.customer }}", "on_limit": "queue"}
    workflow_update_metadata(workflow=workflow, actor=engine.actor, changes={"concurrency": lowered})
    finish(engine, runs[0])
    assert statuses(*runs[1:]) == ["running", "queued", "queued"]  # one still runs: limit 1 is reached
    finish(engine, runs[1])
    assert statuses(*runs[2:]) == ["running", "queued"]


def test_a_lost_admission_request_is_repaired_by_the_reconciler(engine):
    workflow = keyed_workflow(engine)
    first, second = trigger(engine, workflow), trigger(engine, workflow)
    finish(engine, first)  # admits the second run…
    assert statuses(first, second) == ["completed", "running"]
    third = trigger(engine, workflow)
    run_cancel(run=second, actor=engine.actor)
    dispatch_module.MANUAL_ADMISSIONS.clear()  # …this time the admission request is lost
    assert statuses(second, third) == ["cancelled", "queued"]
    assert reconcile_once()["admitted"] == 1
    engine.drain()
    assert statuses(third) == ["running"]
    assert reconcile_once()["admitted"] == 0


def test_null_key_is_one_group_for_the_whole_workflow(engine):
    workflow = keyed_workflow(engine, key=None)
    first, second = trigger(engine, workflow, "acme"), trigger(engine, workflow, "globex")
    assert statuses(first, second) == ["running", "queued"]
    assert (first.concurrency_key, second.concurrency_key) == ("", "")


def test_a_key_that_cannot_be_rendered_is_invalid_input(engine):
    workflow = keyed_workflow(engine, key="{{ inputs.customer.id }}")
    with pytest.raises(Unprocessable) as exc:
        trigger(engine, workflow, "acme")
    assert exc.value.code == "invalid_input"
    assert "{{ inputs.customer.id }}" in exc.value.message
    assert Run.objects.count() == 0


def test_long_and_structured_keys(engine):
    workflow = keyed_workflow(engine, key="{{ inputs.customer }}")
    run = trigger(engine, workflow, {"id": 7, "tier": "gold"})
    assert run.concurrency_key == '{"id": 7, "tier": "gold"}'
    long = trigger(engine, workflow, "x" * 300)
    assert long.concurrency_key.startswith("sha256:") and len(long.concurrency_key) == 71
    assert long.status == "running"


def test_a_trigger_that_leaves_its_run_queued_requests_an_admission_after_its_commit(engine):
    workflow = keyed_workflow(engine)
    first = trigger(engine, workflow)
    assert list(dispatch_module.MANUAL_ADMISSIONS) == []  # admitted at once: nothing to ask
    second = run_create(workflow=workflow, actor=engine.actor, input_data={"customer": "acme"})
    assert list(dispatch_module.MANUAL_ADMISSIONS) == [engine.org.id]
    # The race it covers: the first run finished while this trigger was open, and its own admission looked
    # for queued runs before the second was visible (runs.concurrency.admit), so it admitted nothing.
    Run.objects.filter(pk=first.pk).update(status="completed", completed_at=timezone.now())
    engine.drain()  # the trigger's request
    assert statuses(second) == ["running"]


def test_admission_with_nothing_queued_is_one_read_and_no_transaction(engine, django_assert_num_queries):
    from runs.concurrency import admit

    workflow = keyed_workflow(engine)
    finish(engine, trigger(engine, workflow))
    with django_assert_num_queries(1):  # no organisation lock, no transaction, on either backend
        assert admit(engine.org.id) == []
