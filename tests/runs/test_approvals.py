"""Approval steps end to end through the API (docs/approvals.md): the pause signal, who may decide
(roles, emails, API keys, self-approval), required approvals, rejections, timeouts, the codes, the audit
log, and two approvers racing for the last approval (threads on PostgreSQL; processes on both backends)."""

import json
import subprocess

import pytest

from accounts.choices import Role
from accounts.principal import Principal
from audit.models import AuditEvent
from runs.models import Run, StepRun
from runs.services import run_create
from tests.conftest import client_with_jwt, client_with_key
from tests.factories import WorkflowFactory
from tests.runs.conftest import pg_only, transform
from tests.runs.support.cluster import Cluster, cluster_env, driver_process
from tests.support.concurrency import at_once, race_drivers


def approval(step_id="ok", **config):
    return {"id": step_id, "type": "approval", "config": {"message": "Ship it?", **config}}


def after(step_id="ship", depends_on="ok", value="{{ steps.ok.output.approved }}", **extra):
    return transform(step_id, value, depends_on=[depends_on], **extra)


def post(client, run, verb, body=None):
    return client.post(f"/api/v1/runs/{run.id}/{verb}", body or {}, format="json")


def audit(org, event) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(organization=org, event=event).order_by("seq"))


def error_code(response) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def owner_client(org, owner):
    return client_with_jwt(owner, org)


# --- waiting ------------------------------------------------------------------------------------------


def test_an_approval_step_pauses_the_run_with_a_pause_signal_and_holds_no_worker(engine, owner_client):
    run = engine.start(
        [approval(message="Ship version {{ inputs.v }}?"), after()],
        input_data={"v": 3},
        inputs={"type": "object", "properties": {"v": {"type": "integer"}}},
    )

    assert run.status == "awaiting_approval"
    assert run.pause_signal == {"type": "approval", "step_id": "ok", "message": "Ship version 3?"}
    step = engine.steps(run)["ok"]
    assert step.status == "awaiting_approval" and step.lease_owner == "" and step.wake_at is None
    assert engine.statuses(run)["ship"] == "pending"
    assert engine.queued == []  # nothing left for a worker
    assert ("run_awaiting_approval", "ok") in engine.events(run)
    event = run.events.get(type="run_awaiting_approval")
    assert event.data["pause_signal"] == run.pause_signal
    assert run.deadline_at is None  # waiting for a person does not count against the run's duration
    body = owner_client.get(f"/api/v1/runs/{run.id}").json()
    assert body["status"] == "awaiting_approval" and body["pause_signal"] == run.pause_signal
    assert body["current_step_ids"] == ["ok"]
    statuses = {step["step_id"]: step["status"] for step in body["steps"]}
    assert statuses == {"ok": "awaiting_approval", "ship": "pending"}


def test_approve_completes_the_step_with_the_decisions_and_the_run_continues(
    engine, org, member, make_jwt_client
):
    run = engine.start([approval(), after()], output="{{ steps.ship.output }}")

    response = post(make_jwt_client(member, org), run, "approve", {"note": "LGTM"})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "running" and body["pause_signal"] is None
    assert engine.reload(run).deadline_at is not None  # a fresh duration limit
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed" and run.result is True
    output = engine.steps(run)["ok"].output_data
    assert output["approved"] is True
    [decision] = output["decisions"]
    assert decision["by"] == member.id and decision["approved"] is True and decision["note"] == "LGTM"
    assert decision["at"].endswith("Z") and decision["by_type"] == "user"
    types = [event_type for event_type, step_id in engine.events(run) if step_id == "ok"]
    assert types == ["step_started", "run_awaiting_approval", "step_completed"]  # started once
    [event] = audit(org, "run.approved")
    assert event.actor == member.id and event.note == "LGTM" and event.run_id == run.id
    assert event.data["step_id"] == "ok" and event.data["outcome"] == "approved"


def test_reject_fails_the_step_with_approval_rejected_and_the_run(engine, org, admin, make_jwt_client):
    run = engine.start([approval(), after()])

    response = post(make_jwt_client(admin, org), run, "reject", {"note": "Not on a Friday"})

    assert response.status_code == 200, response.content
    engine.drain()
    run = engine.reload(run)
    assert run.status == "failed" and run.pause_signal is None
    assert run.error["code"] == "approval_rejected" and run.error["step_id"] == "ok"
    assert "Not on a Friday" in run.error["message"]
    step = engine.steps(run)["ok"]
    assert step.status == "failed" and step.error["code"] == "approval_rejected"
    assert step.output_data["approved"] is False
    assert [d["note"] for d in step.output_data["decisions"]] == ["Not on a Friday"]
    assert engine.statuses(run)["ship"] == "cancelled"
    [event] = audit(org, "run.rejected")
    assert event.actor == admin.id and event.note == "Not on a Friday"


def test_a_rejection_with_on_failure_continue_lets_the_run_go_on(engine, owner_client):
    run = engine.start(
        [{**approval(), "on_failure": "continue"}, after(value="{{ steps.ok.status }}")],
        output="{{ steps.ship.output }}",
    )

    assert post(owner_client, run, "reject").status_code == 200
    engine.drain()

    run = engine.reload(run)
    assert run.status == "completed" and run.result == "failed"


# --- who may decide -----------------------------------------------------------------------------------


def test_required_approvals_count_each_person_once(engine, org, owner_client, admin, make_jwt_client):
    run = engine.start([approval(required_approvals=2), after()])

    first = post(owner_client, run, "approve", {"note": "one"})
    again = post(owner_client, run, "approve", {"note": "twice"})

    assert first.status_code == 200 and first.json()["status"] == "awaiting_approval"
    step = engine.steps(run)["ok"]
    assert step.status == "awaiting_approval" and len(step.output_data["decisions"]) == 1
    assert again.status_code == 409 and error_code(again) == "already_decided"
    second = post(make_jwt_client(admin, org), run, "approve", {"note": "two"})
    assert second.status_code == 200 and second.json()["status"] == "running"
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    decisions = engine.steps(run)["ok"].output_data["decisions"]
    assert [d["note"] for d in decisions] == ["one", "two"]
    assert [e.note for e in audit(org, "run.approved")] == ["one", "two"]


def test_approvers_by_role_admit_that_role_and_higher(engine, org, owner_client, member, make_jwt_client):
    run = engine.start([approval(approvers=["admin"]), after()])

    refused = post(make_jwt_client(member, org), run, "approve")

    assert refused.status_code == 403 and error_code(refused) == "not_an_approver"
    assert refused.json()["error"]["details"]["approvers"] == ["admin"]
    assert post(owner_client, run, "approve").status_code == 200  # owner ⊃ admin
    assert audit(org, "run.approved")[0].actor == engine.actor.actor_id


def test_approvers_by_email_admit_only_those_people(engine, org, admin, member, make_jwt_client):
    run = engine.start([approval(approvers=["Member@Acme.test"]), after()])

    refused = post(make_jwt_client(admin, org), run, "reject")
    allowed = post(make_jwt_client(member, org), run, "approve")

    assert refused.status_code == 403 and error_code(refused) == "not_an_approver"
    assert allowed.status_code == 200
    assert engine.steps(run)["ok"].output_data["decisions"][0]["email"] == "member@acme.test"


def test_self_approval_forbidden_when_the_step_says_so(engine, org, owner_client, admin, make_jwt_client):
    run = engine.start([approval(allow_self_approval=False), after()])  # triggered by the owner

    refused = post(owner_client, run, "approve")

    assert refused.status_code == 403 and error_code(refused) == "self_approval_forbidden"
    assert engine.steps(run)["ok"].output_data is None and audit(org, "run.approved") == []
    assert post(make_jwt_client(admin, org), run, "approve").status_code == 200


def test_the_trigger_may_still_reject_a_step_forbidding_self_approval(engine, owner_client):
    run = engine.start([approval(allow_self_approval=False), after()])

    assert post(owner_client, run, "reject").status_code == 200


def test_self_approval_is_allowed_by_default(engine, owner_client):
    run = engine.start([approval(), after()])

    response = post(owner_client, run, "approve")

    assert response.status_code == 200 and response.json()["status"] == "running"


def test_viewer_cannot_approve(engine, org, viewer, make_jwt_client):
    run = engine.start([approval(), after()])

    response = post(make_jwt_client(viewer, org), run, "approve")

    assert response.status_code == 403 and error_code(response) == "forbidden"


def test_api_key_needs_runs_approve(engine, org, owner):
    run = engine.start([approval(), after()])

    response = post(client_with_key(org, owner, ["runs:read", "runs:write"]), run, "approve")

    assert response.status_code == 403 and error_code(response) == "insufficient_scope"
    assert response.json()["error"]["details"]["required_scope"] == "runs:approve"
    assert engine.reload(run).status == "awaiting_approval"


def test_api_key_with_runs_approve_decides_a_step_without_approvers(engine, org, owner):
    run = engine.start([approval(), after()])

    response = post(client_with_key(org, owner, ["runs:approve"]), run, "approve", {"note": "CI green"})

    assert response.status_code == 200, response.content
    decision = engine.steps(run)["ok"].output_data["decisions"][0]
    assert decision["by"].startswith("key_") and decision["by_type"] == "api_key"
    assert audit(org, "run.approved")[0].actor_type == "api_key"


def test_api_key_never_matches_an_approvers_list(engine, org, owner):
    run = engine.start([approval(approvers=["owner", "owner@acme.test"]), after()])

    response = post(client_with_key(org, owner, ["admin"]), run, "approve")

    assert response.status_code == 403 and error_code(response) == "not_an_approver"


# --- codes --------------------------------------------------------------------------------------------


def test_approve_of_a_run_not_awaiting_approval_is_409(engine, owner_client):
    run = engine.start([transform("a", 1)])

    for verb in ("approve", "reject"):
        response = post(owner_client, run, verb)
        assert response.status_code == 409 and error_code(response) == "run_not_awaiting_approval"


def test_a_decision_after_the_step_settled_is_409(engine, org, owner_client, admin, make_jwt_client):
    run = engine.start([approval(), after()])
    assert post(owner_client, run, "approve").status_code == 200

    late = post(make_jwt_client(admin, org), run, "reject")

    assert late.status_code == 409 and error_code(late) == "run_not_awaiting_approval"
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_unknown_step_id_is_404_and_a_step_not_awaiting_is_409(engine, owner_client):
    run = engine.start([approval(), after()])

    unknown = post(owner_client, run, "approve", {"step_id": "nope"})
    other = post(owner_client, run, "approve", {"step_id": "ship"})

    assert unknown.status_code == 404 and error_code(unknown) == "step_not_found"
    assert other.status_code == 409 and error_code(other) == "run_not_awaiting_approval"
    assert other.json()["error"]["details"] == {"step_id": "ship"}


def test_body_is_checked(engine, owner_client):
    run = engine.start([approval(), after()])

    too_long = post(owner_client, run, "approve", {"note": "x" * 1001})
    unknown = post(owner_client, run, "approve", {"reason": "?"})

    assert too_long.status_code == 400 and "note" in too_long.json()["error"]["details"]["fields"]
    assert unknown.status_code == 400 and error_code(unknown) == "invalid_request"


def test_another_organisations_run_is_404(engine, outsider_jwt_client, outsider_key_client):
    run = engine.start([approval(), after()])

    for client in (outsider_jwt_client, outsider_key_client):
        for verb in ("approve", "reject"):
            response = post(client, run, verb)
            assert response.status_code == 404 and error_code(response) == "run_not_found"
    assert engine.reload(run).status == "awaiting_approval"


# --- several steps waiting ----------------------------------------------------------------------------


def test_parallel_approvals_keep_the_run_waiting_until_the_last_is_decided(engine, owner_client):
    run = engine.start(
        [approval("a"), approval("b", message="Second?"), transform("c", 1, depends_on=["a", "b"])]
    )
    assert run.status == "awaiting_approval" and run.pause_signal["step_id"] == "a"

    first = post(owner_client, run, "approve")  # no step_id: the one the pause signal names

    assert first.status_code == 200
    assert first.json()["status"] == "awaiting_approval"
    assert first.json()["pause_signal"] == {"type": "approval", "step_id": "b", "message": "Second?"}
    engine.drain()
    assert engine.reload(run).status == "awaiting_approval"
    second = post(owner_client, run, "approve", {"step_id": "b"})
    assert second.status_code == 200 and second.json()["status"] == "running"
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_an_approval_next_to_an_input_step_hands_the_signal_over(engine, owner_client):
    run = engine.start([approval("a"), {"id": "b", "type": "input", "config": {"message": "Which region?"}}])

    response = post(owner_client, run, "approve")

    assert response.json()["status"] == "awaiting_input"
    signal = {"type": "collect_inputs", "step_id": "b", "message": "Which region?"}
    assert response.json()["pause_signal"] == signal


def test_cancelling_a_waiting_run_cancels_the_step_and_clears_the_signal(engine, owner_client):
    run = engine.start([approval(), after()])

    response = post(owner_client, run, "cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"
    run = engine.reload(run)
    assert run.pause_signal is None and engine.statuses(run) == {"ok": "cancelled", "ship": "cancelled"}
    late = post(owner_client, run, "approve")
    assert late.status_code == 409 and error_code(late) == "run_not_awaiting_approval"


def test_a_dry_run_skips_approval_steps(engine):
    run = engine.start([approval(), after(value="{{ 1 }}")], dry_run=True)

    assert run.status == "completed"
    assert engine.steps(run)["ok"].skip_reason == "dry_run"


# --- timeouts -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("on_timeout", ["approve", "reject"])
def test_timeout_decides_per_on_timeout_and_is_audited(engine, org, on_timeout):
    run = engine.start([approval(timeout_seconds=3600, on_timeout=on_timeout), after()])
    step = engine.steps(run)["ok"]
    assert step.wake_at is not None
    assert 3590 <= (step.wake_at - step.started_at).total_seconds() <= 3610

    counts = engine.fast_forward(run)

    assert counts["woken"] == 1
    run = engine.reload(run)
    step = engine.steps(run)["ok"]
    [decision] = step.output_data["decisions"]
    assert decision["by"] == "system" and decision["by_type"] == "system"
    assert decision["approved"] is (on_timeout == "approve")
    assert "3600 s" in decision["note"]
    event_name = "run.approved" if on_timeout == "approve" else "run.rejected"
    [event] = audit(org, event_name)
    assert event.actor == "system" and event.actor_type == "system" and event.note == decision["note"]
    assert event.data["timeout"] is True
    if on_timeout == "approve":
        assert step.status == "completed" and run.status == "completed"
    else:
        assert step.status == "failed" and step.error["code"] == "approval_rejected"
        assert run.status == "failed" and run.error["code"] == "approval_rejected"


def test_timeout_defaults_to_reject_and_fires_once(engine, org):
    run = engine.start([approval(timeout_seconds=60), after()])

    engine.fast_forward(run)
    again = engine.fast_forward(run)

    assert again["woken"] == 0
    assert engine.reload(run).status == "failed"
    assert len(audit(org, "run.rejected")) == 1


def test_a_timeout_not_yet_due_does_nothing(engine):
    run = engine.start([approval(timeout_seconds=60), after()])

    from runs.engine.reconciler import reconcile_once

    assert reconcile_once()["woken"] == 0
    assert engine.reload(run).status == "awaiting_approval"


# --- /resume request_user_action (the lead's endpoint calls runs.services.run_decide) ---------------------


@pytest.mark.parametrize(("value", "final"), [("approved", "completed"), ("rejected", "failed")])
def test_resume_request_user_action_decides_like_approve_and_reject(engine, org, owner_client, value, final):
    run = engine.start([approval(), after()])

    response = owner_client.post(
        f"/api/v1/runs/{run.id}/resume",
        {"type": "request_user_action", "action_id": "ok", "action_value": value, "note": "via resume"},
        format="json",
    )

    assert response.status_code in (200, 202), response.content
    engine.drain()
    assert engine.reload(run).status == final
    [event] = audit(org, "run.approved" if value == "approved" else "run.rejected")
    assert event.note == "via resume"


def test_resume_request_user_action_needs_runs_approve_for_a_key(engine, org, owner):
    run = engine.start([approval(), after()])

    response = client_with_key(org, owner, ["runs:write"]).post(
        f"/api/v1/runs/{run.id}/resume",
        {"type": "request_user_action", "action_id": "ok", "action_value": "approved"},
        format="json",
    )

    assert response.status_code == 403 and error_code(response) == "insufficient_scope"


# --- OpenAPI ------------------------------------------------------------------------------------------


def test_openapi_schema_lists_approve_and_reject(db, api_client):
    response = api_client.get("/api/v1/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    paths = json.loads(response.content)["paths"]
    for verb in ("approve", "reject"):
        operation = paths[f"/api/v1/runs/{{run_id}}/{verb}"]["post"]
        assert set(operation["responses"]) >= {"200", "403", "404", "409"}
        body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        assert body.endswith("/DecisionRequest")


# --- races --------------------------------------------------------------------------------------------


@pg_only
@pytest.mark.django_db(transaction=True)
def test_threads_racing_for_the_last_approval_through_the_api(settings, org, owner, admin, member):
    settings.BATON_ENGINE_DISPATCH = "manual"
    from runs.engine import dispatch as dispatch_module

    actor = Principal(organization=org, user=owner, role=Role.OWNER)
    workflow = WorkflowFactory(
        organization=org, actor=actor, name="Race", steps=[approval(required_approvals=2), after()]
    )
    for round_ in range(5):
        dispatch_module.MANUAL_QUEUE.clear()
        run = run_create(workflow=workflow, actor=actor)
        dispatch_module.drain()
        assert Run.objects.get(pk=run.pk).status == "awaiting_approval"
        assert post(client_with_jwt(owner, org), run, "approve").status_code == 200  # one approval left
        clients = [client_with_jwt(admin, org), client_with_jwt(member, org)]
        verbs = ["approve", "approve"] if round_ % 2 else ["approve", "reject"]
        answers = []

        def decide(index, run=run, clients=clients, verbs=verbs, answers=answers):
            client, verb = clients[index], verbs[index]
            response = post(client, run, verb, {"note": verb})
            answers.append((verb, response.status_code, response.json()))

        assert at_once(2, decide, timeout=30) == []
        codes = sorted(status for _, status, _ in answers)
        assert codes == [200, 409], answers
        [late] = [body for _, status, body in answers if status == 409]
        assert late["error"]["code"] == "run_not_awaiting_approval"
        [winner] = [verb for verb, status, _ in answers if status == 200]
        step = StepRun.objects.get(run=run, step_id="ok")
        assert step.status == "queued" and len(step.output_data["decisions"]) == 2
        assert step.output_data["approved"] is (winner == "approve")
        audited = AuditEvent.objects.filter(run_id=run.id, event__in=["run.approved", "run.rejected"])
        assert audited.count() == 2
        dispatch_module.drain()
        assert Run.objects.get(pk=run.pk).status == ("completed" if winner == "approve" else "failed")


@pytest.fixture(scope="module")
def _race_env(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        env = cluster_env(tmp_path_factory.mktemp("approvals"))
    return {**env, "BATON_ENGINE_DISPATCH": "manual"}


DRIVER = "tests.runs.support.approval_driver"


def _driver(env, *args, **options) -> subprocess.Popen:
    return driver_process(env, DRIVER, *args, **options)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_racing_for_the_last_approval(_race_env, tmp_path):
    """Separate processes (the SQLite file's IMMEDIATE transactions, or PostgreSQL row locks): of four
    approvers racing for the last of two approvals, exactly one completes the step; the others get 409."""
    env = _race_env
    setup = _driver(env, "setup", 4)
    out, err = setup.communicate(timeout=60)
    assert setup.returncode == 0, err
    ids = json.loads(out)
    start = tmp_path / "go"
    workers = [_driver(env, "decide", ids["run"], user_id, start) for user_id in ids["racers"]]
    results = race_drivers(workers, start, timeout=60)
    assert sorted(result["status"] for result in results) == [200, 409, 409, 409], results
    assert {r["code"] for r in results if r["status"] == 409} == {"run_not_awaiting_approval"}
    check = _driver(env, "check", ids["run"])
    out, err = check.communicate(timeout=60)
    assert check.returncode == 0, err
    state = json.loads(out)
    assert state["step_status"] == "queued" and state["decisions"] == 2 and state["audited"] == 2
    assert state["run_status"] == "running"


# --- pause and resume (runs/services/resume.py) ----------------------------------------------------


def test_a_paused_run_takes_no_decision_until_resumed_then_waits_again(engine, owner_client):
    run = engine.start([approval(), after()])

    paused = post(owner_client, run, "pause")
    refused = post(owner_client, run, "approve")
    resumed = post(owner_client, run, "resume")

    assert paused.json()["status"] == "paused"
    assert refused.status_code == 409 and error_code(refused) == "run_not_awaiting_approval"
    assert resumed.status_code in (200, 202), resumed.content
    assert resumed.json()["status"] == "awaiting_approval"
    assert resumed.json()["pause_signal"]["step_id"] == "ok"
    assert post(owner_client, run, "approve").status_code == 200
    engine.drain()
    assert engine.reload(run).status == "completed"


# --- a real cluster -----------------------------------------------------------------------------------


@pytest.fixture
def cluster(_race_env, transactional_db):
    cluster = Cluster({**_race_env, "BATON_ENGINE_DISPATCH": "queue"})
    yield cluster
    cluster.kill()


@pytest.mark.slow
def test_a_cluster_parks_approval_and_input_steps_and_finishes_them_after_the_answers(cluster):
    """Real `qcluster` workers (queue dispatch) park the steps; a decision, an answer and the reconciler's
    timeout each requeue their step through the broker, and the runs complete."""
    cluster.start()
    ids = cluster.driver("cluster_start", module=DRIVER)

    answered = cluster.driver("cluster_answer", ids["admin"], ids["approve"], ids["answer"], module=DRIVER)
    report = cluster.driver(
        "cluster_report", 60, ids["approve"], ids["timeout"], ids["answer"], module=DRIVER
    )

    assert answered == {"approved": "running", "answered": "running"}
    for name in ("approve", "timeout", "answer"):
        run = report[ids[name]]
        assert run["status"] == "completed", (name, run)
        assert run["pause_signal"] is None
        waited = "run_awaiting_input" if name == "answer" else "run_awaiting_approval"
        assert run["events"].count(waited) == 1 and run["events"][-1] == "run_completed", run["events"]
    assert report[ids["answer"]]["result"] == {"n": 7}
    assert report[ids["approve"]]["result"]["approved"] is True
    assert ["run.approved", ids["admin"]] in report[ids["approve"]]["audit"]
    timed_out = report[ids["timeout"]]["result"]
    assert timed_out["approved"] is True and timed_out["decisions"][0]["by"] == "system"
    assert ["run.approved", "system"] in report[ids["timeout"]]["audit"]
