"""Input steps end to end (docs/approvals.md): the run waits for data, `POST /runs/{id}/resume` with
`collect_inputs` answers it (validated against the step's JSON Schema: 422 invalid_input with the failing
fields), the data becomes the step's output, timeouts fail the step, and the codes, scopes and tenancy."""

import pytest

from audit.models import AuditEvent
from runs.services import run_collect_inputs
from tests.conftest import client_with_jwt, client_with_key
from tests.runs.conftest import transform
from tests.runs.test_approvals import error_code

SCHEMA = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "enum": ["eu", "us"]},
        "replicas": {"type": "integer", "minimum": 1},
        "owner": {"type": "object", "properties": {"email": {"type": "string"}}, "required": ["email"]},
    },
    "required": ["region", "replicas"],
}


def ask(step_id="ask", schema=SCHEMA, **config):
    config = {"message": "Where to deploy {{ inputs.app }}?", **config}
    if schema is not None:
        config["schema"] = schema
    return {"id": step_id, "type": "input", "config": config}


def use(step_id="deploy", value="{{ steps.ask.output.region }}-{{ steps.ask.output.replicas }}"):
    return transform(step_id, value, depends_on=["ask"])


def start(engine, steps=None, **options):
    return engine.start(
        steps or [ask(), use()],
        input_data={"app": "shop"},
        inputs={"type": "object", "properties": {"app": {"type": "string"}}},
        output="{{ steps.deploy.output }}",
        **options,
    )


def resume(client, run, data, **extra):
    return client.post(
        f"/api/v1/runs/{run.id}/resume", {"type": "collect_inputs", "data": data, **extra}, format="json"
    )


@pytest.fixture
def owner_client(org, owner):
    return client_with_jwt(owner, org)


def test_an_input_step_pauses_the_run_with_its_schema_in_the_pause_signal(engine, owner_client):
    run = start(engine)

    assert run.status == "awaiting_input"
    assert run.pause_signal == {
        "type": "collect_inputs",
        "step_id": "ask",
        "message": "Where to deploy shop?",
        "schema": SCHEMA,
    }
    assert engine.statuses(run) == {"ask": "awaiting_input", "deploy": "pending"}
    assert engine.queued == []
    assert ("run_awaiting_input", "ask") in engine.events(run)
    body = owner_client.get(f"/api/v1/runs/{run.id}").json()
    assert body["status"] == "awaiting_input" and body["pause_signal"] == run.pause_signal


def test_collect_inputs_answers_the_step_and_the_run_continues(engine, org, member, owner_client):
    run = start(engine)
    data = {"region": "eu", "replicas": 3, "note": "extra keys are kept"}

    response = resume(client_with_jwt(member, org), run, data)

    assert response.status_code in (200, 202), response.content
    assert response.json()["status"] == "running" and response.json()["pause_signal"] is None
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed" and run.result == "eu-3"
    step = engine.steps(run)["ask"]
    assert step.status == "completed" and step.output_data == data
    [event] = AuditEvent.objects.filter(organization=org, event="run.resumed")
    assert event.actor == member.id and event.run_id == run.id
    assert event.data == {"type": "collect_inputs", "step_id": "ask", "step_run_id": step.id,
                          "fields": ["note", "region", "replicas"]}  # fmt: skip
    late = resume(owner_client, run, data)
    assert late.status_code == 409 and error_code(late) == "run_not_awaiting_input"


def test_invalid_data_is_422_with_the_failing_fields(engine, owner_client):
    run = start(engine)

    response = resume(owner_client, run, {"region": "mars", "owner": {}})

    assert response.status_code == 422, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert error["details"]["step_id"] == "ask"
    fields = error["details"]["fields"]
    assert set(fields) == {"region", "replicas", "owner.email"}
    assert fields["replicas"] == ["This field is required."]
    assert fields["owner.email"] == ["This field is required."]
    assert "'mars' is not one of ['eu', 'us']" in fields["region"][0]
    assert any(sentence.startswith("data.region:") for sentence in error["details"]["errors"])
    assert engine.reload(run).status == "awaiting_input"  # nothing changed
    assert engine.steps(run)["ask"].status == "awaiting_input"


def test_wrong_types_are_reported_per_field(engine, owner_client):
    run = start(engine)

    response = resume(owner_client, run, {"region": "eu", "replicas": "three"})

    assert response.status_code == 422
    assert list(response.json()["error"]["details"]["fields"]) == ["replicas"]


def test_without_a_schema_any_object_is_accepted(engine, owner_client):
    run = start(engine, [ask(schema=None), use(value="{{ steps.ask.output.anything }}")])
    assert "schema" not in run.pause_signal

    assert resume(owner_client, run, {"anything": [1, 2]}).status_code in (200, 202)
    engine.drain()
    assert engine.reload(run).result == [1, 2]


def test_not_awaiting_input_is_409(engine, owner_client):
    run = start(engine, [transform("a", 1), transform("deploy", 2)])

    response = resume(owner_client, run, {"region": "eu"})

    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_input"


def test_an_approval_is_not_answered_with_collect_inputs(engine, owner_client):
    run = start(engine, [{"id": "ask", "type": "approval", "config": {}}, use(value="x")])

    response = resume(owner_client, run, {"region": "eu"})

    assert response.status_code == 409 and error_code(response) == "run_not_awaiting_input"


def test_step_id_picks_one_of_several_input_steps(engine, owner_client):
    steps = [ask("first", schema=None), ask("ask"), use()]
    run = start(engine, steps)
    assert run.pause_signal["step_id"] == "first"

    unknown = resume(owner_client, run, {}, step_id="nope")
    answered = resume(owner_client, run, {"region": "us", "replicas": 1}, step_id="ask")

    assert unknown.status_code == 404 and error_code(unknown) == "step_not_found"
    assert answered.status_code in (200, 202)
    assert answered.json()["status"] == "awaiting_input"  # "first" still waits
    assert answered.json()["pause_signal"]["step_id"] == "first"
    engine.drain()
    assert resume(owner_client, run, {"x": 1}).status_code in (200, 202)
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_viewer_and_a_key_without_runs_write_cannot_answer(engine, org, owner, viewer):
    run = start(engine)

    by_viewer = resume(client_with_jwt(viewer, org), run, {"region": "eu", "replicas": 1})
    key = client_with_key(org, owner, ["runs:read", "runs:approve"])
    by_key = resume(key, run, {"region": "eu", "replicas": 1})

    assert by_viewer.status_code == 403 and error_code(by_viewer) == "forbidden"
    assert by_key.status_code == 403 and error_code(by_key) == "insufficient_scope"
    assert engine.reload(run).status == "awaiting_input"


def test_a_key_with_runs_write_can_answer(engine, org, owner):
    run = start(engine)

    response = resume(client_with_key(org, owner, ["runs:write"]), run, {"region": "eu", "replicas": 2})

    assert response.status_code in (200, 202)
    assert engine.steps(run)["ask"].state["by"].startswith("key_")


def test_another_organisations_run_is_404(engine, outsider_jwt_client):
    run = start(engine)

    response = resume(outsider_jwt_client, run, {"region": "eu", "replicas": 1})

    assert response.status_code == 404 and error_code(response) == "run_not_found"


def test_timeout_fails_the_step_with_input_timeout(engine):
    run = start(engine, [ask(timeout_seconds=120), use()])
    assert engine.steps(run)["ask"].wake_at is not None

    counts = engine.fast_forward(run)

    assert counts["woken"] == 1
    run = engine.reload(run)
    assert run.status == "failed" and run.error["code"] == "input_timeout" and run.pause_signal is None
    assert engine.steps(run)["ask"].error["code"] == "input_timeout"


def test_the_service_checks_the_schema_too(engine, actor):
    from config.errors import Unprocessable

    run = start(engine)

    with pytest.raises(Unprocessable) as raised:
        run_collect_inputs(run=run, actor=actor, data={"region": "eu"})

    assert raised.value.details["fields"] == {"replicas": ["This field is required."]}
    run = run_collect_inputs(run=run, actor=actor, data={"region": "eu", "replicas": 1}, step_id="ask")
    assert run.status == "running"
