"""Sub-workflows (`sub_workflow` steps) driven synchronously with manual dispatch: a child run of the same
organisation, waited for without a worker, its result returned; failure, cancellation, links, depth,
idempotent creation and the reconciler's safety net (docs/engine.md "Sub-workflows")."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts.principal import Principal
from audit.models import AuditEvent
from runs.engine import dispatch as dispatch_module
from runs.engine.reconciler import reconcile_once
from runs.engine.subworkflows import MAX_DEPTH
from runs.models import Run, StepRun
from runs.services import run_cancel, run_create, run_terminate
from tests.runs.conftest import transform
from workflows.services import workflow_create, workflow_set_status

pytestmark = pytest.mark.django_db


def sub(step_id, workflow, **config):
    extra = {key: config.pop(key) for key in ("depends_on", "retry", "on_failure") if key in config}
    return {"id": step_id, "type": "sub_workflow", "config": {"workflow": workflow, **config}, **extra}


def end_failed(message):
    return {"id": "stop", "type": "end", "config": {"status": "failed", "message": message}}


def doubler(engine):
    return engine.workflow(
        [transform("double", "{{ inputs.n * 2 }}")],
        inputs={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
        output={"doubled": "{{ steps.double.output }}"},
    )


def waiter(engine, seconds=60):
    """A child that stays active (a wait step) until its timer is moved."""
    return engine.workflow([{"id": "pause", "type": "wait", "config": {"seconds": seconds}}])


def release(engine, run) -> None:
    """Make the run's waits due now (their stored target too), reconcile once and drain."""
    past = timezone.now() - timedelta(seconds=1)
    for row in StepRun.objects.filter(run=run, status="waiting", wake_at__isnull=False):
        row.state = {**row.state, "until": past.isoformat()}
        row.wake_at = past
        row.save(update_fields=["state", "wake_at"])
    reconcile_once()
    engine.drain()


def child_of(run) -> Run:
    return Run.objects.get(parent_run=run)


def test_child_result_becomes_the_step_output_and_links_both_ways(engine):
    child_workflow = doubler(engine)
    run = engine.start(
        [
            sub("child", child_workflow.id, input={"n": "{{ inputs.n }}"}),
            transform("after", "{{ steps.child.output.doubled + 1 }}", depends_on=["child"]),
        ],
        input_data={"n": 21},
        output={"final": "{{ steps.after.output }}"},
    )
    assert run.status == "completed", run.error
    assert run.result == {"final": 43}
    child = child_of(run)
    step = engine.steps(run)["child"]
    assert child.status == "completed" and child.result == {"doubled": 42}
    assert child.trigger == "sub_workflow" and child.input_data == {"n": 21}
    assert child.triggered_by_type == "system"
    # Both ways: the child names the parent run and step; the parent's step names the child.
    assert child.parent_run_id == run.id and child.parent_step_run_id == step.id
    assert step.input_data["child_run_id"] == child.id
    assert step.output_data == {"doubled": 42}
    assert list(run.child_runs.values_list("id", flat=True)) == [child.id]
    # The step waited (no worker) for the child: started once, one completed attempt.
    assert [entry["status"] for entry in step.attempts] == ["completed"]
    assert engine.events(run).count(("step_started", "child")) == 1
    assert AuditEvent.objects.filter(event="run.triggered", target_id=child.id).exists()


def test_run_detail_links_parent_and_child_both_ways(engine, api_key_client):
    run = engine.start([sub("child", doubler(engine).id, input={"n": 2})])
    child = child_of(run)
    parent_body = api_key_client.get(f"/api/v1/runs/{run.id}").json()
    child_body = api_key_client.get(f"/api/v1/runs/{child.id}").json()
    assert parent_body["child_run_ids"] == [child.id] and parent_body["parent_run_id"] is None
    assert child_body["parent_run_id"] == run.id and child_body["child_run_ids"] == []
    assert parent_body["steps"][0]["output_data"] == {"doubled": 4}


def test_slug_reference_and_a_waiting_child(engine):
    child_workflow = waiter(engine)
    run = engine.start([sub("child", child_workflow.slug)])
    child = child_of(run)
    step = engine.steps(run)["child"]
    assert run.status == "running" and child.status == "running"
    assert step.status == "waiting" and step.wake_at is None and step.state["child_run_id"] == child.id
    release(engine, child)  # the child's wait is due: it completes and wakes the parent's step
    run, child = engine.reload(run), engine.reload(child)
    assert child.status == "completed"
    assert run.status == "completed" and engine.steps(run)["child"].output_data is None


def test_failed_child_fails_the_step_with_its_error(engine):
    failing = engine.workflow([end_failed("no")])
    run = engine.start([sub("child", failing.id, retry={"max_attempts": 3})])
    child = child_of(run)
    assert child.status == "failed"
    assert run.status == "failed"
    assert run.error["code"] == "sub_workflow_failed" and run.error["step_id"] == "child"
    step = engine.steps(run)["child"]
    assert step.error["details"] == {"run_id": child.id, "error": child.error}
    assert f"child run {child.id} failed: no" in step.error["message"]
    assert Run.objects.filter(parent_run=run).count() == 1  # not retryable: no second child


def test_failed_child_with_on_failure_continue(engine):
    failing = engine.workflow([end_failed("x")])
    run = engine.start(
        [
            sub("child", failing.id, on_failure="continue"),
            transform("after", "{{ steps.child.error.code }}", depends_on=["child"]),
        ],
        output="{{ steps.after.output }}",
    )
    assert run.status == "completed" and run.result == "sub_workflow_failed"


def test_cancelled_child_fails_the_step(engine, owner, org):
    run = engine.start([sub("child", waiter(engine).id)])
    child = child_of(run)
    run_cancel(run=child, actor=engine.actor, reason="not needed")
    engine.drain()
    run, child = engine.reload(run), engine.reload(child)
    assert child.status == "cancelled"
    assert run.status == "failed" and run.error["code"] == "sub_workflow_cancelled"
    assert engine.steps(run)["child"].error["details"] == {"run_id": child.id}


def test_cancelling_the_parent_cancels_the_child(engine):
    run = engine.start([sub("child", waiter(engine).id)])
    child = child_of(run)
    run_cancel(run=run, actor=engine.actor)
    engine.drain()
    run, child = engine.reload(run), engine.reload(child)
    assert run.status == "cancelled"
    assert child.status == "cancelled" and child.cancel_requested_at is not None
    assert engine.steps(run)["child"].status == "cancelled"
    assert AuditEvent.objects.filter(event="run.cancelled", target_id=child.id, actor_type="system").exists()


def test_cancel_cascades_to_grandchildren_and_terminate_terminates(engine):
    leaf = waiter(engine)
    middle = engine.workflow([sub("inner", leaf.id)])
    run = engine.start([sub("outer", middle.id)])
    child = child_of(run)
    grandchild = child_of(child)
    assert grandchild.parent_step_run.run_id == child.id
    run_terminate(run=run, actor=engine.actor)
    engine.drain()
    for each in (run, child, grandchild):
        each = engine.reload(each)
        assert each.status == "cancelled" and each.terminate_requested_at is not None, each


def test_parent_failing_elsewhere_cancels_the_child_it_waited_for(engine):
    run = engine.start(
        [
            sub("child", waiter(engine).id),
            {"id": "boom", "type": "end", "config": {"status": "failed", "message": "stop"}},
        ]
    )
    assert run.status == "failed"
    assert child_of(run).status == "cancelled"


def test_wait_false_completes_at_once_and_the_child_outlives_the_parent(engine):
    run = engine.start([sub("child", waiter(engine).id, wait=False)], output="{{ steps.child.output }}")
    child = child_of(run)
    assert run.status == "completed"
    assert run.result == {"run_id": child.id, "status": "running"}
    assert child.status == "running"  # a completed parent does not cancel a fire-and-forget child
    release(engine, child)
    assert engine.reload(child).status == "completed"


def test_cancelling_the_parent_cancels_a_fire_and_forget_child_too(engine):
    hold = {"id": "hold", "type": "wait", "config": {"seconds": 60}}
    run = engine.start([sub("child", waiter(engine).id, wait=False), hold])
    child = child_of(run)
    run_cancel(run=run, actor=engine.actor)
    engine.drain()
    assert engine.reload(child).status == "cancelled"


def test_a_retried_or_reclaimed_step_does_not_start_a_second_child(engine):
    run = engine.start([sub("child", waiter(engine).id, retry={"max_attempts": 3})])
    child = child_of(run)
    step = engine.steps(run)["child"]
    # A worker that died after starting the child: the step is running with an expired lease.
    StepRun.objects.filter(pk=step.pk).update(
        status="running", lease_owner="dead", lease_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert reconcile_once()["reclaimed"] == 1
    engine.drain()
    step = engine.steps(run)["child"]
    assert step.status == "waiting" and step.state["child_run_id"] == child.id
    assert [entry["error"]["code"] for entry in step.attempts] == ["lease_expired"]
    assert Run.objects.filter(parent_run=run).count() == 1
    # The database refuses a second child for the same step run.
    other = run_create(workflow=waiter(engine), actor=engine.actor)
    with pytest.raises(IntegrityError), transaction.atomic():
        Run.objects.filter(pk=other.pk).update(parent_step_run_id=step.id)
    release(engine, child)
    assert engine.reload(run).status == "completed"


def test_a_lost_wake_up_is_repaired_by_the_reconciler(engine):
    run = engine.start([sub("child", waiter(engine).id)])
    child = child_of(run)
    past = (timezone.now() - timedelta(seconds=1)).isoformat()
    row = StepRun.objects.get(run=child)
    StepRun.objects.filter(pk=row.pk).update(wake_at=timezone.now(), state={**row.state, "until": past})
    reconcile_once()
    # Complete the child but lose its follow-up (the after-commit wake-up of the parent's step).
    while dispatch_module.MANUAL_QUEUE:
        dispatch_module.drain(limit=1)
    assert engine.reload(child).status == "completed"
    dispatch_module.MANUAL_CALLBACKS.clear()
    assert engine.steps(run)["child"].status == "waiting"
    assert reconcile_once()["sub_workflows"] == 1
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_depth_limit_stops_recursion(engine):
    # A workflow that calls itself: MAX_DEPTH levels of children, then the step fails. Children run inside
    # their root's slot, so an organisation cap of one run does not starve the chain.
    type(engine.org).objects.filter(pk=engine.org.pk).update(max_concurrent_runs=1)
    recursive = engine.workflow([transform("noop", 1)])
    from workflows.services import workflow_update

    workflow_update(
        workflow=recursive,
        actor=engine.actor,
        definition={"name": "Recursive", "steps": [sub("again", recursive.id)]},
    )
    recursive.refresh_from_db()
    run = run_create(workflow=recursive, actor=engine.actor)
    engine.drain()
    chain = [engine.reload(run)]
    while Run.objects.filter(parent_run=chain[-1]).exists():
        chain.append(child_of(chain[-1]))
    assert len(chain) == MAX_DEPTH + 1  # the root and MAX_DEPTH levels below it
    deepest = chain[-1]
    assert deepest.status == "failed" and deepest.error["code"] == "sub_workflow_depth_exceeded"
    # Each failure propagated up: every run failed with sub_workflow_failed.
    assert {each.status for each in map(engine.reload, chain)} == {"failed"}
    assert engine.reload(run).error["code"] == "sub_workflow_failed"


def test_other_organisation_workflow_is_not_found(engine, other_org, outsider):
    foreign = workflow_create(
        organization=other_org,
        actor=Principal(organization=other_org, user=outsider, role="owner"),
        definition={"name": "Foreign", "steps": [transform("x", 1)]},
    )
    for ref in (foreign.id, foreign.slug, "no-such-flow"):
        run = engine.start([sub("child", ref, retry={"max_attempts": 3})])
        assert run.status == "failed"
        assert run.error["code"] == "sub_workflow_not_found", run.error
        assert engine.steps(run)["child"].attempt == 1  # not retryable
        assert not Run.objects.filter(parent_run=run).exists()
    assert not Run.objects.filter(workflow=foreign).exists()


def test_archived_paused_invalid_input_and_missing_version(engine):
    archived = doubler(engine)
    from workflows.services import workflow_archive

    workflow_archive(workflow=archived, actor=engine.actor)
    paused = doubler(engine)
    workflow_set_status(workflow=paused, actor=engine.actor, status="paused")
    valid = doubler(engine)
    cases = [
        (sub("c", archived.id, input={"n": 1}), "sub_workflow_not_found"),
        (sub("c", paused.id, input={"n": 1}), "workflow_disabled"),
        (sub("c", valid.id, input={"n": "text"}), "invalid_input"),
        (sub("c", valid.id, input="{{ [1, 2] }}"), "invalid_input"),
        (sub("c", valid.id, input={"n": 1}, version=7), "version_not_found"),
        (sub("c", valid.id, input={"n": 1}, version="published"), "version_not_found"),
    ]
    for step, code in cases:
        run = engine.start([step])
        assert run.status == "failed" and run.error["code"] == code, (step, run.error)
    errors = engine.steps(run)["c"].error
    run = engine.start([sub("c", valid.id, input={"n": "text"})])
    details = engine.steps(run)["c"].error["details"]
    assert any("input.n" in sentence for sentence in details["errors"]), details
    assert errors["code"] == "version_not_found"


def test_child_refused_by_its_concurrency_limit(engine):
    limited = workflow_create(
        organization=engine.org,
        actor=engine.actor,
        definition={"name": "Limited", "steps": [{"id": "w", "type": "wait", "config": {"seconds": 60}}]},
        concurrency={"limit": 1, "on_limit": "reject"},
    )
    run_create(workflow=limited, actor=engine.actor)
    run = engine.start([sub("c", limited.id)])
    assert run.status == "failed" and run.error["code"] == "workflow_already_running"


def test_dry_run_parent_skips_the_step(engine):
    run = engine.start([sub("c", doubler(engine).id, input={"n": 1})], dry_run=True)
    assert run.status == "completed"
    step = engine.steps(run)["c"]
    assert step.status == "skipped" and step.skip_reason == "dry_run"
    assert not Run.objects.filter(parent_run=run).exists()


def test_sub_workflow_in_a_loop_starts_one_child_per_item(engine):
    child_workflow = doubler(engine)
    run = engine.start(
        [
            {
                "id": "each",
                "type": "loop",
                "config": {
                    "items": "{{ [1, 2, 3] }}",
                    "max_concurrency": 3,
                    "step": {"type": "sub_workflow", "config": {"workflow": child_workflow.id,
                                                                "input": {"n": "{{ item }}"}}},
                },
            }
        ],
        output="{{ steps.each.output['items'] }}",
    )  # fmt: skip
    assert run.status == "completed", run.error
    assert run.result == [{"doubled": 2}, {"doubled": 4}, {"doubled": 6}]
    assert Run.objects.filter(parent_run=run).count() == 3
