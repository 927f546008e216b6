"""agent_task end to end through the engine, against local OpenAI- and Anthropic-compatible servers on
127.0.0.1 (real HTTP; tests/runs/support/llm_fake.py). Every behaviour is checked against both kinds of
provider.

Loopback is allowed with the deployment-wide BATON_HTTP_ALLOWLIST, as in tests/runs/test_step_http.py."""

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.utils import format_datetime

import pytest

from accounts.models import Agent, LlmProvider
from accounts.principal import Principal
from accounts.services import agent_create, llm_provider_create
from audit.models import AuditEvent
from runs.engine import llm as llm_client
from runs.engine.context import StepContext, StepError
from runs.engine.steps import agent_task
from runs.models import Run, StepRun
from tests.runs.support.llm_fake import API_KEY, FakeLlm


@pytest.fixture
def fast_backoff(monkeypatch):
    monkeypatch.setattr(llm_client, "SERVER_ERROR_BACKOFF_SECONDS", 0.05)


def agent_step(step_id="ask", **config):
    extra = {key: config.pop(key) for key in ("retry", "timeout_seconds", "depends_on") if key in config}
    return {"id": step_id, "type": "agent_task", "config": config, **extra}


def summarizer(org) -> Agent:
    return Agent.objects.get(organization=org, builtin_key="summarizer")


def only_step(engine, run) -> StepRun:
    return engine.steps(run)["ask"]


# --- success ---------------------------------------------------------------------------------------


def test_agent_step_calls_the_provider_and_records_everything(engine, fake, provider, org):
    agent = summarizer(org)
    fake.push(content="A short summary.", prompt_tokens=1200, completion_tokens=300)
    run = engine.start(
        [agent_step(agent_id=agent.id, goal="Summarize {{ inputs.text }}", input={"lines": 2})],
        input_data={"text": "the quarterly report"},
        output="{{ steps.ask.output.content }}",
    )
    assert run.status == "completed", run.error
    assert run.result == "A short summary."
    step = only_step(engine, run)
    expected_model = "fake-gpt" if fake.kind == "openai" else "fake-claude"
    assert step.output_data == {
        "content": "A short summary.",
        "model": expected_model,
        "tokens": {"prompt": 1200, "completion": 300, "total": 1500},
    }
    # 1200 × 2.5 / 1e6 + 300 × 10 / 1e6 = 0.003 + 0.003
    assert step.tokens == {"prompt": 1200, "completion": 300, "total": 1500}
    assert step.cost_usd == Decimal("0.006")
    assert run.total_tokens == 1500 and run.cost_usd == Decimal("0.006")

    prompt = 'Summarize the quarterly report\n\nInput (JSON):\n{\n  "lines": 2\n}'
    assert step.input_data["prompt"] == prompt
    assert step.input_data["model"] == "default-model"
    assert step.input_data["resolved_variables"] == {"inputs": {"text": "the quarterly report"}}
    assert step.input_data["agent_id"] == agent.id and step.input_data["provider_id"] == provider.id
    assert step.input_data["goal"] == "Summarize the quarterly report"  # the resolved config stays

    (request,) = fake.requests
    body, headers = request["body"], request["headers"]
    assert body["model"] == "default-model"
    assert body["max_tokens"] == 4096
    assert body["temperature"] == agent.temperature
    assert fake.system() == agent.system_prompt
    assert fake.user_messages() == [{"role": "user", "content": prompt}]
    if fake.kind == "openai":
        assert headers["authorization"] == f"Bearer {API_KEY}"
        assert "response_format" not in body
    else:
        assert headers["x-api-key"] == API_KEY
        assert headers["anthropic-version"] == "2023-06-01"
        assert "authorization" not in headers


def test_ad_hoc_step_with_model_system_prompt_and_sampling(engine, fake, provider):
    run = engine.start(
        [
            agent_step(
                provider_id=provider.id,
                model="step-model",
                system_prompt="You are terse.",
                prompt="Say hi to {{ inputs.name }}",
                temperature=0.7,
                max_tokens=50,
            )
        ],
        input_data={"name": "Ada"},
    )
    assert run.status == "completed", run.error
    body = fake.requests[0]["body"]
    assert body["model"] == "step-model" and body["temperature"] == 0.7 and body["max_tokens"] == 50
    assert fake.system() == "You are terse."
    assert fake.user_messages() == [{"role": "user", "content": "Say hi to Ada"}]
    assert only_step(engine, run).input_data["agent_id"] is None


def test_resolved_variables_hold_only_what_the_templates_use(engine, fake, provider, org):
    steps = [
        {"id": "a", "type": "transform", "config": {"value": {"big": "x" * 10}}},
        {"id": "b", "type": "transform", "config": {"value": "unrelated"}},
        agent_step(
            agent_id=summarizer(org).id,
            goal="Summarize {{ steps.a.output.big }} for {{ run.trigger }}",
            depends_on=["a", "b"],
        ),
    ]
    run = engine.start(steps)
    assert run.status == "completed", run.error
    recorded = only_step(engine, run).input_data["resolved_variables"]
    assert recorded["steps"] == {"a": {"output": {"big": "xxxxxxxxxx"}}}
    assert recorded["run"]["trigger"] == run.trigger
    assert "inputs" not in recorded and "secrets" not in recorded


# --- model precedence --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("run_model", "step_model", "agent_model", "expected"),
    [
        ("run-model", "step-model", "agent-model", "run-model"),
        ("", "step-model", "agent-model", "step-model"),
        ("", None, "agent-model", "agent-model"),
        ("", None, "", "default-model"),
    ],
)
def test_model_precedence(engine, fake, provider, org, actor, run_model, step_model, agent_model, expected):
    agent = agent_create(organization=org, actor=actor, name="Custom", model=agent_model, system_prompt="S")
    config = {"agent_id": agent.id, "goal": "Go"}
    if step_model:
        config["model"] = step_model
    run = engine.start([agent_step(**config)], drain=False)
    Run.objects.filter(pk=run.pk).update(model=run_model)  # the trigger's `model` override
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed", run.error
    assert fake.requests[0]["body"]["model"] == expected
    assert only_step(engine, run).input_data["model"] == expected


def test_agent_provider_wins_over_the_default_provider(engine, fake, provider, org, actor):
    other = FakeLlm(fake.kind).start()
    try:
        second = llm_provider_create(
            organization=org,
            actor=actor,
            name="Second",
            kind=fake.kind,
            base_url=other.base_url,
            api_key="second-key-0123456789",
            default_model="second-default",
        )
        agent = agent_create(organization=org, actor=actor, name="On second", provider_id=second.id)
        run = engine.start([agent_step(agent_id=agent.id, goal="Go")])
        assert run.status == "completed", run.error
        assert fake.requests == [] and len(other.requests) == 1
        assert other.requests[0]["body"]["model"] == "second-default"
    finally:
        other.stop()


# --- structured output -------------------------------------------------------------------------------

SCHEMA = {
    "type": "object",
    "properties": {"label": {"enum": ["spam", "ham"]}, "score": {"type": "number"}},
    "required": ["label"],
    "additionalProperties": False,
}


def test_structured_output_is_parsed_and_validated(engine, fake, provider, org):
    fake.push(content='```json\n{"label": "spam", "score": 0.9}\n```')
    run = engine.start(
        [agent_step(agent_id=summarizer(org).id, goal="Classify", output_schema=SCHEMA)],
        output="{{ steps.ask.output.data.label }}",
    )
    assert run.status == "completed", run.error
    assert run.result == "spam"
    output = only_step(engine, run).output_data
    assert output["data"] == {"label": "spam", "score": 0.9}
    assert len(fake.requests) == 1
    system = fake.system()
    assert system.startswith(summarizer(org).system_prompt)
    # The schema is in the instruction (PostgreSQL's JSONB may store its keys in another order).
    assert json.loads(system.rsplit("JSON Schema:\n", 1)[1]) == SCHEMA
    if fake.kind == "openai":
        assert fake.requests[0]["body"]["response_format"] == {"type": "json_object"}


def test_invalid_json_is_retried_once_with_the_problem(engine, fake, provider, org):
    fake.push(content="Sure! The label is spam.", prompt_tokens=100, completion_tokens=10)
    fake.push(content='{"label": "ham"}', prompt_tokens=150, completion_tokens=8)
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Classify", output_schema=SCHEMA)])
    assert run.status == "completed", run.error
    step = only_step(engine, run)
    assert step.output_data["data"] == {"label": "ham"}
    # Both calls are paid for.
    assert step.tokens == {"prompt": 250, "completion": 18, "total": 268}
    assert step.cost_usd == Decimal("0.000805")  # 250 × 2.5 + 18 × 10, per million
    second = fake.user_messages(1)
    assert second[0] == fake.user_messages(0)[0]
    assert second[1] == {"role": "assistant", "content": "Sure! The label is spam."}
    assert second[2]["role"] == "user" and "not JSON" in second[2]["content"]


def test_schema_violation_then_valid(engine, fake, provider, org):
    fake.push(content='{"label": "maybe"}')
    fake.push(content='{"label": "spam"}')
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Classify", output_schema=SCHEMA)])
    assert run.status == "completed", run.error
    assert "does not match the JSON Schema" in fake.user_messages(1)[2]["content"]
    assert "label" in fake.user_messages(1)[2]["content"]


def test_invalid_twice_fails_clearly_and_is_not_retried(engine, fake, provider, org):
    fake.push(content="nope")
    fake.push(content='{"label": 3}')
    run = engine.start(
        [
            agent_step(
                agent_id=summarizer(org).id,
                goal="Classify",
                output_schema=SCHEMA,
                retry={"max_attempts": 3, "backoff_seconds": 0},
            )
        ]
    )
    assert run.status == "failed"
    assert run.error["code"] == "invalid_llm_output"
    step = only_step(engine, run)
    assert step.attempt == 1 and len(fake.requests) == 2
    assert "does not match the JSON Schema" in step.error["message"]
    assert step.error["details"]["content"] == '{"label": 3}'
    assert step.error["details"]["tokens"]["total"] == 30
    # The prompt and model are recorded on failure too.
    assert step.input_data["prompt"] == "Classify" and step.input_data["model"] == "default-model"


# --- rate limits, server errors, timeouts --------------------------------------------------------------


def test_429_with_retry_after_is_honoured(engine, fake, provider, org):
    fake.push(status=429, headers={"Retry-After": "1"}, body={"error": {"message": "slow down"}})
    fake.push(content="after the wait")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    assert len(fake.requests) == 2
    waited = fake.requests[1]["at"] - fake.requests[0]["at"]
    assert 0.95 <= waited < 3
    assert only_step(engine, run).output_data["content"] == "after the wait"


def test_429_http_date_retry_after(engine, fake, provider, org):
    when = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)  # an HTTP date has whole seconds
    fake.push(status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    fake.push(content="ok")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    assert len(fake.requests) == 2
    assert fake.requests[1]["wall"] >= when.timestamp()  # not retried before the date the server gave


def test_retry_after_is_ascii_digits_only(engine, fake, provider, org):
    # Arabic-Indic "30" (sent as UTF-8): a Unicode \d and float() would read 30 s, over the step's deadline.
    arabic_thirty = "٣٠".encode().decode("latin-1")  # the handler writes header values as Latin-1
    fake.push(status=429, headers={"Retry-After": arabic_thirty}, body={"error": {"message": "slow down"}})
    fake.push(content="ok")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go", timeout_seconds=5)])
    assert run.status == "completed", run.error  # unreadable: retried after the default backoff
    assert len(fake.requests) == 2


def test_429_that_persists_fails_retryable_and_the_step_policy_applies(engine, fake, provider, org):
    for _ in range(3):
        fake.push(status=429, headers={"Retry-After": "0"}, body={"error": {"message": "quota"}})
    run = engine.start(
        [agent_step(agent_id=summarizer(org).id, goal="Go", retry={"max_attempts": 2, "backoff_seconds": 0})]
    )
    # Attempt 1: three 429s (one call, two in-call retries) → llm_rate_limited, retryable; attempt 2 succeeds.
    assert run.status == "completed", run.error
    step = only_step(engine, run)
    assert [a["status"] for a in step.attempts] == ["failed", "completed"]
    assert step.attempts[0]["error"]["code"] == "llm_rate_limited"
    assert step.attempts[0]["error"]["details"]["status_code"] == 429
    assert len(fake.requests) == 4


def test_retry_after_longer_than_the_deadline_fails_at_once(engine, fake, provider, org):
    fake.push(status=429, headers={"Retry-After": "30"})
    started = time.monotonic()
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go", timeout_seconds=5)])
    assert time.monotonic() - started < 3
    assert run.status == "failed" and run.error["code"] == "llm_rate_limited"
    assert only_step(engine, run).error["details"]["retry_after_seconds"] == 30
    assert len(fake.requests) == 1


def test_500_is_retried_within_the_call(engine, fake, provider, org, fast_backoff):
    fake.push(status=500, body={"error": {"message": "boom"}})
    fake.push(status=503, body=b"<html>unavailable</html>")
    fake.push(content="third time lucky")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    assert len(fake.requests) == 3


def test_500_that_persists_fails_llm_server_error(engine, fake, provider, org, fast_backoff):
    for _ in range(3):
        fake.push(status=500, body={"error": {"message": "internal"}})
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "failed"
    assert run.error["code"] == "llm_server_error"
    error = only_step(engine, run).error
    assert error["details"]["status_code"] == 500 and error["details"]["provider_message"] == "internal"
    assert len(error["details"]["retries"]) == 2


def test_timeout(engine, fake, provider, org):
    fake.push(delay=3, content="too late")
    started = time.monotonic()
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go", timeout_seconds=1)])
    assert time.monotonic() - started < 2.5
    assert run.status == "failed"
    assert run.error["code"] == "llm_timeout"


def test_auth_failure_is_not_retried_and_hides_the_key(engine, fake, provider, org):
    fake.push(status=401, body={"error": {"message": f"Incorrect API key provided: {API_KEY}."}})
    run = engine.start(
        [agent_step(agent_id=summarizer(org).id, goal="Go", retry={"max_attempts": 3, "backoff_seconds": 0})]
    )
    assert run.status == "failed" and run.error["code"] == "llm_auth_failed"
    step = only_step(engine, run)
    assert step.attempt == 1 and len(fake.requests) == 1
    assert API_KEY not in json.dumps(step.error) and "***" in step.error["message"]


def test_other_4xx_is_a_rejected_request(engine, fake, provider, org):
    fake.push(status=404, body={"error": {"message": "model not found"}})
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.error["code"] == "llm_request_rejected"
    assert "model not found" in run.error["message"]


def test_malformed_answer(engine, fake, provider, org):
    fake.push(body={"unexpected": True})
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "failed" and run.error["code"] == "llm_bad_response"


# --- accounting ----------------------------------------------------------------------------------------


def test_tokens_and_cost_are_summed_on_the_run_with_per_model_prices(engine, fake, org, actor, local_http):
    provider = llm_provider_create(
        organization=org,
        actor=actor,
        name="Priced",
        kind=fake.kind,
        base_url=fake.base_url,
        api_key=API_KEY,
        default_model="cheap",
        input_price_per_million=1,
        output_price_per_million=2,
        model_prices={"premium": {"input": 10, "output": 30}},
    )
    fake.push(content="one", prompt_tokens=1000, completion_tokens=100)
    fake.push(content="two", prompt_tokens=2000, completion_tokens=500)
    run = engine.start(
        [
            agent_step("cheap_step", provider_id=provider.id, goal="A"),
            agent_step(
                "premium_step", provider_id=provider.id, model="premium", goal="B", depends_on=["cheap_step"]
            ),
        ]
    )
    assert run.status == "completed", run.error
    steps = engine.steps(run)
    assert steps["cheap_step"].cost_usd == Decimal("0.0012")  # 1000 × 1 + 100 × 2
    assert steps["premium_step"].cost_usd == Decimal("0.035")  # 2000 × 10 + 500 × 30
    assert run.total_tokens == 3600
    assert run.cost_usd == Decimal("0.0362")


# --- refusals --------------------------------------------------------------------------------------------


def test_no_provider_fails_the_step(engine, org):
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "failed" and run.error["code"] == "no_llm_provider"


def test_unknown_agent_or_another_organisations_agent(engine, provider, other_org):
    foreign = summarizer(other_org)
    run = engine.start([agent_step(agent_id=foreign.id, goal="Go")])
    assert run.status == "failed" and run.error["code"] == "agent_not_found"


def test_another_organisations_provider_is_not_found(engine, fake, provider, other_org, outsider):
    theirs = llm_provider_create(
        organization=other_org,
        actor=Principal(organization=other_org, user=outsider, role="owner"),
        name="Theirs",
        kind=fake.kind,
        base_url=fake.base_url,
        default_model="m",
    )
    run = engine.start([agent_step(provider_id=theirs.id, goal="Go")])
    assert run.error["code"] == "llm_provider_not_found"
    assert fake.requests == []


def test_the_security_policy_applies_to_base_urls(engine, fake, provider, org, settings):
    settings.BATON_HTTP_ALLOWLIST = []  # loopback is private: refused
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "failed" and run.error["code"] == "policy_violation"
    assert fake.requests == []


def test_dry_run_skips_agent_steps(engine, fake, provider, org):
    run = engine.start(
        [agent_step(agent_id=summarizer(org).id, goal="Go {{ inputs.x }}")], input_data={"x": 1}, dry_run=True
    )
    step = only_step(engine, run)
    assert step.status == "skipped" and step.skip_reason == "dry_run"
    assert step.input_data["goal"] == "Go 1"
    assert fake.requests == []


def test_the_key_is_never_stored_or_shown_in_clear(engine, fake, provider, org):
    fake.push(content=f"echo {API_KEY[:6]}")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    row = LlmProvider.objects.get(pk=provider.pk)
    assert API_KEY not in row.api_key_encrypted and row.api_key_encrypted
    for step in StepRun.objects.filter(run=run):
        stored = json.dumps([step.input_data, step.output_data, step.error])
        assert API_KEY not in stored
    audit = json.dumps(list(AuditEvent.objects.filter(organization=org).values("data", "note")))
    assert API_KEY not in audit


def test_a_terminated_run_stops_waiting_for_retry_after(fake, provider, org):
    fake.push(status=429, headers={"Retry-After": "20"})
    stop = {"now": False}
    now = datetime.now(UTC)
    context = StepContext(
        run_id="run_x", step_run_id="sr_x", step_id="ask", step_type="agent_task",
        config={"agent_id": summarizer(org).id, "goal": "Go"}, step={"config": {"goal": "Go"}}, attempt=1,
        deadline=now + timedelta(seconds=60), now=now, dry_run=False, variables={}, organization_id=org.id,
        should_stop=lambda: stop["now"],
    )  # fmt: skip
    threading.Timer(0.3, lambda: stop.update(now=True)).start()
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        agent_task.execute(context)
    assert caught.value.code == "terminated" and not caught.value.retryable
    assert time.monotonic() - started < 2
    assert len(fake.requests) == 1


def test_an_unreadable_key_fails_clearly(engine, fake, provider, org):
    LlmProvider.objects.filter(pk=provider.pk).update(api_key_encrypted="gAAAAA-not-a-fernet-token")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "failed" and run.error["code"] == "llm_key_unreadable"
    assert fake.requests == []


# --- security policy and secrets ---------------------------------------------------------------------


def test_the_organisation_policy_allowlist_reaches_the_provider(engine, fake, provider, org, actor, settings):
    from accounts.services import security_policy_update

    settings.BATON_HTTP_ALLOWLIST = []
    security_policy_update(organization=org, actor=actor, changes={"http_allowlist": ["127.0.0.1"]})
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    assert len(fake.requests) == 1


def test_secrets_reach_the_model_but_not_the_stored_trace(engine, fake, provider, org, actor):
    from accounts.services import secret_create

    secret_create(organization=org, actor=actor, name="CRM_TOKEN", value="tok-very-secret-123")
    fake.push(content="I used tok-very-secret-123")
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Use {{ secrets.CRM_TOKEN }}")])
    assert run.status == "completed", run.error
    assert fake.user_messages()[0]["content"] == "Use tok-very-secret-123"
    step = only_step(engine, run)
    assert step.input_data["prompt"] == "Use ***"
    assert "secrets" not in step.input_data["resolved_variables"]
    assert "tok-very-secret-123" not in json.dumps([step.input_data, step.output_data])


@pytest.mark.parametrize("fake", ["openai"], indirect=True)  # an OpenAI-compatible variant
def test_openai_content_parts_are_joined(engine, fake, provider, org):
    reply = {
        "model": "m",
        "choices": [
            {
                "message": {
                    "role": "assistant",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1},
    }
    fake.push(body=reply)
    run = engine.start([agent_step(agent_id=summarizer(org).id, goal="Go")])
    assert run.status == "completed", run.error
    assert only_step(engine, run).output_data["content"] == "ab"
