"""Agent steps through the REST API: the trigger's no_llm_provider refusal and `model` override, and the
run detail's per-step prompt, tokens and cost (against a local OpenAI-compatible server on 127.0.0.1)."""

from decimal import Decimal

import pytest

from accounts.principal import Principal
from accounts.services import llm_provider_create
from runs.engine import dispatch as dispatch_module
from tests.runs.support.llm_fake import FakeLlm

DEFINITION = {
    "name": "Summarise",
    "inputs": {"type": "object", "properties": {"text": {"type": "string"}}},
    "steps": [{"id": "ask", "type": "agent_task", "config": {"goal": "Summarize {{ inputs.text }}"}}],
    "output": "{{ steps.ask.output.content }}",
}


@pytest.fixture
def manual(settings):
    settings.BATON_ENGINE_DISPATCH = "manual"
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    dispatch_module.MANUAL_QUEUE.clear()
    yield
    dispatch_module.MANUAL_QUEUE.clear()


@pytest.fixture
def fake():
    server = FakeLlm("openai").start()
    yield server
    server.stop()


def _workflow(client) -> str:
    response = client.post("/api/v1/workflows", {"definition": DEFINITION}, format="json")
    assert response.status_code == 201, response.content
    return response.json()["id"]


def test_trigger_without_a_provider_is_refused(api_key_client, manual):
    workflow_id = _workflow(api_key_client)
    response = api_key_client.post(f"/api/v1/workflows/{workflow_id}/run", {"input_data": {}}, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "no_llm_provider"


def test_trigger_with_model_override_and_run_detail(api_key_client, manual, fake, org, owner):
    llm_provider_create(
        organization=org,
        actor=Principal(organization=org, user=owner, role="owner"),
        name="Local",
        kind="openai",
        base_url=fake.base_url,
        api_key="sk-api-test-0123456789abcdef",
        default_model="default-model",
        input_price_per_million=1,
        output_price_per_million=4,
    )
    fake.push(content="Short.", prompt_tokens=500, completion_tokens=50)
    workflow_id = _workflow(api_key_client)
    response = api_key_client.post(
        f"/api/v1/workflows/{workflow_id}/run",
        {"input_data": {"text": "a long text"}, "model": "override-model"},
        format="json",
    )
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]
    dispatch_module.drain()
    run = api_key_client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "completed", run
    assert run["result"] == "Short."
    assert run["total_tokens"] == 550
    assert Decimal(str(run["cost_usd"])) == Decimal("0.0007")  # 500 × 1 + 50 × 4, per million
    (step,) = run["steps"]
    assert step["input_data"]["prompt"] == "Summarize a long text"
    assert step["input_data"]["model"] == "override-model"
    assert step["input_data"]["resolved_variables"] == {"inputs": {"text": "a long text"}}
    assert step["output_data"]["content"] == "Short."
    assert step["tokens"] == {"prompt": 500, "completion": 50, "total": 550}
    assert fake.requests[0]["body"]["model"] == "override-model"
    assert "sk-api-test" not in str(run)
