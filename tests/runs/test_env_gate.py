"""The environment gate (docs/approvals.md "Environment gate"): a run triggered in an environment listed in
the security policy's `require_approval_for_envs` waits, without a concurrency slot, for one approval before
it starts. End to end through the API with the engine in manual mode (steps run when a test drains them)."""

import pytest

from accounts.choices import Role
from accounts.models import Organization
from accounts.principal import Principal
from audit.models import AuditEvent
from runs.engine import dispatch as dispatch_module
from runs.models import Run, StepRun
from runs.services import run_create
from tests.conftest import client_with_jwt, client_with_key
from tests.factories import WorkflowFactory
from tests.runs.conftest import pg_only, transform
from tests.runs.test_sub_workflow import sub
from tests.support.concurrency import at_once

pytestmark = pytest.mark.django_db

SIGNAL = {
    "type": "approval",
    "step_id": None,
    "message": "Runs in environment 'production' need an approval before they start.",
}


@pytest.fixture
def owner_client(org, owner):
    return client_with_jwt(owner, org)


@pytest.fixture
def member_client(org, member):
    return client_with_jwt(member, org)


@pytest.fixture
def flow(engine):
    return engine.workflow(
        [transform("hello", "hi"), transform("shout", "{{ steps.hello.output }}!", depends_on=["hello"])],
        output="{{ steps.shout.output }}",
    )


def trigger(client, workflow, **body) -> dict:
    response = client.post(f"/api/v1/workflows/{workflow.id}/run", {"input_data": {}, **body}, format="json")
    assert response.status_code == 202, response.content
    return response.json()


def post(client, run_id, verb, body=None):
    return client.post(f"/api/v1/runs/{run_id}/{verb}", body or {}, format="json")


def audit(org, event) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organization=org, event=event).order_by("seq"))


def events(run_id) -> list[str]:
    return [event.type for event in Run.objects.get(pk=run_id).events.order_by("seq")]


def step_statuses(run_id) -> dict[str, str]:
    return {row.step_id: row.status for row in StepRun.objects.filter(run_id=run_id)}


def error_code(response) -> str:
    return response.json()["error"]["code"]


def gated(client, workflow) -> str:
    body = trigger(client, workflow, env="production")
    assert body["status"] == "awaiting_approval"
    return body["run_id"]


# --- the gate -----------------------------------------------------------------------------------------


def test_a_run_in_a_gated_environment_waits_for_an_approval_before_it_starts(engine, owner_client, flow):
    body = trigger(owner_client, flow, env="production")

    assert body["status"] == "awaiting_approval"
    assert body["run"]["status"] == "awaiting_approval" and body["run"]["pause_signal"] == SIGNAL
    run_id = body["run_id"]
    assert engine.queued == [] and engine.drain() == 0  # nothing for a worker
    run = Run.objects.get(pk=run_id)
    assert run.started_at is None and run.deadline_at is None and run.pause_signal == SIGNAL
    assert step_statuses(run_id) == {"hello": "pending", "shout": "pending"}
    assert events(run_id) == ["run_awaiting_approval"]  # never queued, never started
    event = run.events.get(type="run_awaiting_approval")
    assert event.step_id == "" and event.data["pause_signal"] == SIGNAL
    assert event.data["gate"] == "environment" and event.data["env"] == "production"
    shown = owner_client.get(f"/api/v1/runs/{run_id}").json()
    assert shown["status"] == "awaiting_approval" and shown["pause_signal"] == SIGNAL
    listed = owner_client.get("/api/v1/runs?status=awaiting_approval").json()["runs"]
    assert [item["id"] for item in listed] == [run_id]
    assert owner_client.get("/api/v1/runs?status=queued").json()["runs"] == []


def test_approve_starts_the_gated_run_and_it_runs_to_completion(engine, org, member, member_client, flow):
    run_id = gated(member_client, flow)

    # The member who triggered it approves it: self-approval is allowed (a one-person organisation must
    # be able to run in production).
    response = post(member_client, run_id, "approve", {"note": "Release 42"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "running" and body["pause_signal"] is None  # admitted at once
    assert engine.drain() >= 1
    run = Run.objects.get(pk=run_id)
    assert run.status == "completed" and run.result == "hi!" and run.started_at is not None
    assert events(run_id)[:3] == ["run_awaiting_approval", "run_queued", "run_started"]
    queued = run.events.get(type="run_queued")
    assert queued.data["gate"] == "environment" and queued.data["decision"]["by"] == member.id
    [event] = audit(org, "run.approved")
    assert event.actor == member.id and event.note == "Release 42" and event.run_id == run_id
    assert event.data["gate"] == "environment" and event.data["env"] == "production"
    assert event.data["step_id"] is None and event.data["outcome"] == "approved"
    assert len(audit(org, "run.completed")) == 1


def test_a_second_decision_is_a_conflict(engine, owner_client, member_client, flow):
    run_id = gated(owner_client, flow)
    assert post(member_client, run_id, "approve").status_code == 200

    for verb in ("approve", "reject"):
        response = post(owner_client, run_id, verb)
        assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"
    engine.drain()
    response = post(owner_client, run_id, "approve")
    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"


def test_reject_fails_the_gated_run_without_running_a_step(engine, org, admin, owner_client, flow):
    run_id = gated(owner_client, flow)

    response = post(client_with_jwt(admin, org), run_id, "reject", {"note": "Not on a Friday"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "failed" and body["pause_signal"] is None
    error = body["error"]
    assert error["code"] == "approval_rejected" and error["step_id"] is None
    assert "Not on a Friday" in error["message"] and "production" in error["message"]
    assert engine.drain() == 0
    assert step_statuses(run_id) == {"hello": "cancelled", "shout": "cancelled"}
    assert events(run_id) == ["run_awaiting_approval", "run_failed"]
    [event] = audit(org, "run.rejected")
    assert event.actor == admin.id and event.note == "Not on a Friday"
    assert event.data["gate"] == "environment" and event.data["outcome"] == "rejected"
    [failed] = audit(org, "run.failed")
    assert failed.data["error"]["code"] == "approval_rejected"
    response = post(owner_client, run_id, "approve")
    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"


@pytest.mark.parametrize(("value", "status"), [("approved", "completed"), ("rejected", "failed")])
def test_request_user_action_without_an_action_id_decides_the_gate(
    engine, org, owner_client, flow, value, status
):
    run_id = gated(owner_client, flow)

    response = post(owner_client, run_id, "resume", {"type": "request_user_action", "action_value": value})

    assert response.status_code in (200, 202), response.content
    engine.drain()
    assert Run.objects.get(pk=run_id).status == status
    assert len(audit(org, f"run.{value}")) == 1


def test_naming_a_step_does_not_decide_the_gate(engine, owner_client, flow):
    run_id = gated(owner_client, flow)

    response = post(owner_client, run_id, "approve", {"step_id": "hello"})

    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"
    assert Run.objects.get(pk=run_id).status == "awaiting_approval"


@pytest.mark.parametrize(
    "options",
    [{"env": "staging"}, {"env": None}, {}, {"env": "Production"}, {"env": "production", "dry_run": True}],
    ids=["other-env", "env-null", "no-env", "case-sensitive", "dry-run"],
)
def test_runs_outside_the_gate_start_at_once(engine, owner_client, flow, options):
    body = trigger(owner_client, flow, **options)

    assert body["status"] == "running" and body["run"]["pause_signal"] is None
    engine.drain()
    assert Run.objects.get(pk=body["run_id"]).status == "completed"
    assert "run_awaiting_approval" not in events(body["run_id"])


def test_the_policy_decides_which_environments_are_gated(engine, owner_client, flow):
    response = owner_client.put(
        "/api/v1/security/policy", {"require_approval_for_envs": ["staging"]}, format="json"
    )
    assert response.status_code == 200, response.content

    assert trigger(owner_client, flow, env="production")["status"] == "running"
    assert trigger(owner_client, flow, env="staging")["status"] == "awaiting_approval"

    response = owner_client.put("/api/v1/security/policy", {"require_approval_for_envs": []}, format="json")
    assert response.status_code == 200, response.content
    assert trigger(owner_client, flow, env="staging")["status"] == "running"


@pytest.mark.parametrize("trigger_type", ["webhook", "schedule", "manual"])
def test_every_trigger_path_is_gated(engine, flow, trigger_type):
    run = run_create(workflow=flow, actor=engine.actor, env="production", trigger=trigger_type)

    assert run.status == "awaiting_approval" and run.pause_signal == SIGNAL
    assert engine.drain() == 0 and Run.objects.get(pk=run.pk).started_at is None


# --- concurrency ----------------------------------------------------------------------------------------


def test_a_gated_run_holds_no_organisation_slot(engine, org, owner_client, flow):
    Organization.objects.filter(pk=org.pk).update(max_concurrent_runs=1)
    run_id = gated(owner_client, flow)

    other = trigger(owner_client, flow, env="staging")  # the only slot is free: the gated run holds none
    assert other["status"] == "running"

    # Approved while the slot is taken: it waits in the queue, then starts when the slot frees.
    response = post(owner_client, run_id, "approve")
    assert response.status_code == 200 and response.json()["status"] == "queued"
    engine.drain()
    assert Run.objects.get(pk=other["run_id"]).status == "completed"
    assert Run.objects.get(pk=run_id).status == "completed"


def test_a_gated_run_holds_no_workflow_slot(engine, owner_client):
    workflow = engine.workflow([transform("hello", "hi")])
    workflow.concurrency = {"limit": 1, "key": None, "on_limit": "queue"}
    workflow.save(update_fields=["concurrency"])
    first = gated(owner_client, workflow)
    second = gated(owner_client, workflow)

    staging = trigger(owner_client, workflow, env="staging")
    assert staging["status"] == "running"
    assert post(owner_client, first, "approve").json()["status"] == "queued"  # the limit is taken
    engine.drain()
    assert Run.objects.get(pk=first).status == "completed"
    assert Run.objects.get(pk=second).status == "awaiting_approval"  # still waits for its approval


# --- cancel, pause, resume, rerun ---------------------------------------------------------------------


@pytest.mark.parametrize("verb", ["cancel", "terminate"])
def test_cancel_a_gated_run(engine, org, owner_client, flow, verb):
    run_id = gated(owner_client, flow)

    response = post(owner_client, run_id, verb, {"reason": "wrong tag"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "cancelled" and body["pause_signal"] is None
    assert step_statuses(run_id) == {"hello": "cancelled", "shout": "cancelled"}
    assert engine.drain() == 0
    assert len(audit(org, "run.cancelled" if verb == "cancel" else "run.terminated")) == 1
    response = post(owner_client, run_id, "approve")
    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"


@pytest.mark.parametrize("how", ["reject", "cancel", "pause"])
def test_resuming_a_run_that_never_started_goes_back_to_the_gate(engine, owner_client, flow, how):
    run_id = gated(owner_client, flow)
    response = post(owner_client, run_id, how)
    assert response.status_code == 200, response.content
    assert response.json()["status"] in ("failed", "cancelled", "paused")
    response = post(owner_client, run_id, "approve")  # no longer at the gate until resumed
    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"

    response = post(owner_client, run_id, "resume")

    assert response.status_code == 202, response.content
    body = response.json()
    assert body["status"] == "awaiting_approval" and body["pause_signal"] == SIGNAL
    assert engine.drain() == 0
    assert post(owner_client, run_id, "approve").status_code == 200
    engine.drain()
    assert Run.objects.get(pk=run_id).status == "completed"


def test_a_rerun_is_gated_too(engine, owner_client, flow):
    run_id = gated(owner_client, flow)
    post(owner_client, run_id, "approve")
    engine.drain()

    response = post(owner_client, run_id, "rerun")

    assert response.status_code == 202, response.content
    assert response.json()["status"] == "awaiting_approval"
    assert Run.objects.get(pk=response.json()["run_id"]).pause_signal == SIGNAL


def test_sub_workflow_children_are_not_gated_and_step_approvals_still_work(engine, owner_client):
    child = engine.workflow([transform("double", "{{ inputs.n * 2 }}")], output="{{ steps.double.output }}")
    parent = engine.workflow(
        [
            {"id": "ok", "type": "approval", "config": {"message": "Ship it?"}},
            sub("child", child.id, input={"n": 21}, depends_on=["ok"]),
        ],
        output="{{ steps.child.output }}",
    )
    run_id = gated(owner_client, parent)
    assert post(owner_client, run_id, "approve").status_code == 200  # the gate
    engine.drain()
    run = Run.objects.get(pk=run_id)
    assert run.status == "awaiting_approval" and run.pause_signal["step_id"] == "ok"  # the step now

    response = post(owner_client, run_id, "approve")  # no step_id: the waiting step, as before
    assert response.status_code == 200, response.content
    engine.drain()

    run = Run.objects.get(pk=run_id)
    assert run.status == "completed" and run.result == 42
    [child_run] = Run.objects.filter(parent_run_id=run_id)
    assert child_run.env == "production" and child_run.status == "completed"
    assert "run_awaiting_approval" not in events(child_run.id)


# --- who may decide -------------------------------------------------------------------------------------


def test_who_may_decide_the_gate(engine, org, owner, viewer, owner_client, outsider_jwt_client, flow):
    run_id = gated(owner_client, flow)

    response = post(client_with_jwt(viewer, org), run_id, "approve")
    assert response.status_code == 403 and error_code(response) == "forbidden"
    no_scope = client_with_key(org, owner, ["runs:read", "runs:write"])
    for verb in ("approve", "reject"):
        response = post(no_scope, run_id, verb)
        assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    response = post(no_scope, run_id, "resume", {"type": "request_user_action", "action_value": "approved"})
    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    response = post(outsider_jwt_client, run_id, "approve")
    assert response.status_code == 404 and error_code(response) == "run_not_found"
    assert Run.objects.get(pk=run_id).status == "awaiting_approval"
    assert audit(org, "run.approved") == []

    response = post(client_with_key(org, owner, ["runs:read", "runs:approve"]), run_id, "approve")
    assert response.status_code == 200, response.content
    [event] = audit(org, "run.approved")
    assert event.actor_type == "api_key"


# --- races ----------------------------------------------------------------------------------------------


@pg_only
@pytest.mark.django_db(transaction=True)
def test_threads_racing_to_decide_the_gate(settings, org, owner, admin, member):
    settings.BATON_ENGINE_DISPATCH = "manual"
    actor = Principal(organization=org, user=owner, role=Role.OWNER)
    workflow = WorkflowFactory(organization=org, actor=actor, name="Race", steps=[transform("hello", "hi")])
    for round_ in range(6):
        dispatch_module.MANUAL_QUEUE.clear()
        run = run_create(workflow=workflow, actor=actor, env="production")
        assert run.status == "awaiting_approval"
        clients = [client_with_jwt(admin, org), client_with_jwt(member, org)]
        verbs = ["approve", "approve"] if round_ % 2 else ["approve", "reject"]
        answers = []

        def decide(index, run=run, clients=clients, verbs=verbs, answers=answers):
            client, verb = clients[index], verbs[index]
            response = post(client, run.id, verb, {"note": verb})
            answers.append((verb, response.status_code, response.json()))

        assert at_once(2, decide, timeout=30) == []
        assert sorted(status for _, status, _ in answers) == [200, 409], answers
        [late] = [body for _, status, body in answers if status == 409]
        assert late["error"]["code"] == "run_not_awaiting_approval"
        [winner] = [verb for verb, status, _ in answers if status == 200]
        audited = AuditEvent.objects.filter(run_id=run.id, event__in=["run.approved", "run.rejected"])
        assert [event.event for event in audited] == [
            "run.approved" if winner == "approve" else "run.rejected"
        ]
        dispatch_module.drain()
        assert Run.objects.get(pk=run.id).status == ("completed" if winner == "approve" else "failed")
