"""Quotas (docs/quotas.md): the monthly run limit and token quota at trigger (402 quota_exceeded), the token
checks before each LLM call of an agent step (token_quota_exceeded, token_limit_exceeded, max_tokens
clipped), tokens of failed attempts counted, and /usage after real agent runs against local
OpenAI-/Anthropic-compatible servers on 127.0.0.1 (tests/runs/support/llm_fake.py)."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from accounts.selectors import usage_period
from accounts.services import security_policy_update
from config.errors import QuotaExceeded
from runs.engine import llm as llm_client
from runs.models import Run
from runs.services import run_create
from tests.runs.conftest import transform

SCHEMA = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}


def agent_step(step_id="ask", **config):
    extra = {key: config.pop(key) for key in ("retry", "depends_on") if key in config}
    return {"id": step_id, "type": "agent_task", "config": {"goal": "Answer", **config}, **extra}


def set_limits(org, **limits):
    for name, value in limits.items():
        setattr(org, name, value)
    org.save(update_fields=list(limits))


def used_tokens(org, tokens: int, *, cost="0"):
    """A finished run of this month that spent `tokens` (as the engine would have recorded them)."""
    run = Run.objects.filter(organization=org).first()
    Run.objects.filter(pk=run.pk).update(total_tokens=tokens, cost_usd=Decimal(cost))


# --- the monthly run limit ----------------------------------------------------------------------------


def test_the_run_limit_refuses_the_next_run_with_limit_used_period_and_reset(engine, org):
    set_limits(org, monthly_run_limit=2)
    workflow = engine.workflow([transform("a", 1)])
    run_create(workflow=workflow, actor=engine.actor)
    run_create(workflow=workflow, actor=engine.actor, dry_run=True)  # dry runs count too

    with pytest.raises(QuotaExceeded) as caught:
        run_create(workflow=workflow, actor=engine.actor)

    period, _start, end = usage_period()
    error = caught.value
    assert error.status == 402 and error.code == "quota_exceeded"
    assert error.details == {
        "quota": "monthly_run_limit",
        "limit": 2,
        "used": 2,
        "period": period,
        "resets_at": end.isoformat().replace("+00:00", "Z"),
    }
    assert "monthly run limit (2 of 2 runs)" in error.message and period in error.message
    assert Run.objects.filter(organization=org).count() == 2


def test_runs_of_last_month_do_not_count_and_null_is_unlimited(engine, org):
    set_limits(org, monthly_run_limit=1)
    workflow = engine.workflow([transform("a", 1)])
    old = run_create(workflow=workflow, actor=engine.actor)
    _period, start, _end = usage_period()
    Run.objects.filter(pk=old.pk).update(created_at=start - timedelta(seconds=1))

    run_create(workflow=workflow, actor=engine.actor)  # the first of this month
    with pytest.raises(QuotaExceeded):
        run_create(workflow=workflow, actor=engine.actor)

    set_limits(org, monthly_run_limit=None)
    for _ in range(3):
        run_create(workflow=workflow, actor=engine.actor)
    assert Run.objects.filter(organization=org).count() == 5


def test_a_limit_counts_per_organisation(engine, org, other_org):
    set_limits(other_org, monthly_run_limit=0)
    set_limits(org, monthly_run_limit=1)
    workflow = engine.workflow([transform("a", 1)])
    run_create(workflow=workflow, actor=engine.actor)  # other_org's limit of 0 is not ours
    with pytest.raises(QuotaExceeded):
        run_create(workflow=workflow, actor=engine.actor)


def test_a_sub_workflow_style_child_run_counts_like_any_run(engine, org):
    set_limits(org, monthly_run_limit=1)
    workflow = engine.workflow([transform("a", 1)])
    parent = run_create(workflow=workflow, actor=engine.actor)
    with pytest.raises(QuotaExceeded):
        run_create(workflow=workflow, actor=engine.actor, parent_run=parent)


def test_trigger_api_answers_402_with_the_details(api_key_client, engine, org):
    set_limits(org, monthly_run_limit=1)
    workflow = engine.workflow([transform("a", 1)])

    first = api_key_client.post(f"/api/v1/workflows/{workflow.id}/run", {}, format="json")
    second = api_key_client.post(f"/api/v1/workflows/{workflow.id}/run", {}, format="json")

    assert first.status_code == 202, first.content
    assert second.status_code == 402
    error = second.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert {"limit": 1, "used": 1}.items() <= error["details"].items()
    assert error["details"]["period"] == usage_period()[0]
    assert error["details"]["resets_at"].endswith("T00:00:00Z")


# --- the monthly token quota at trigger ---------------------------------------------------------------


def test_a_used_up_token_quota_refuses_agent_workflows_only(engine, org, provider):
    workflow = engine.workflow([transform("a", 1)])
    run_create(workflow=workflow, actor=engine.actor)
    set_limits(org, monthly_token_quota=1000)
    used_tokens(org, 1000)
    agentic = engine.workflow([agent_step()])

    with pytest.raises(QuotaExceeded) as caught:
        run_create(workflow=agentic, actor=engine.actor)
    assert caught.value.details["quota"] == "monthly_token_quota"
    assert caught.value.details["used"] == 1000 and caught.value.details["limit"] == 1000
    run_create(workflow=workflow, actor=engine.actor)  # no agent step: no tokens to spend


# --- the token checks before each LLM call ------------------------------------------------------------


def test_an_agent_step_fails_with_token_quota_exceeded_without_calling_the_model(engine, org, fake, provider):
    engine.start([transform("a", 1)])
    set_limits(org, monthly_token_quota=500)
    used_tokens(org, 499)
    fake.push(content="first", prompt_tokens=10, completion_tokens=5)
    first = engine.start([agent_step()])  # 1 token left: the call may ask for 1 completion token
    assert first.status == "completed", first.error
    assert fake.requests[-1]["body"]["max_tokens"] == 1
    # Now used up (514 ≥ 500; the prompt passed it, see docs/quotas.md). A run triggered before that —
    # here: while the quota was lifted — fails at its agent step, before any call.
    set_limits(org, monthly_token_quota=None)
    queued = run_create(workflow=engine.workflow([agent_step()]), actor=engine.actor)
    set_limits(org, monthly_token_quota=500)
    calls = len(fake.requests)
    engine.drain()

    queued = engine.reload(queued)
    step = engine.steps(queued)["ask"]
    assert queued.status == "failed" and step.status == "failed"
    assert step.error["code"] == "token_quota_exceeded"
    assert {"limit": 500, "used": 499 + 15, "period": usage_period()[0]}.items() <= step.error[
        "details"
    ].items()
    assert "monthly token quota" in step.error["message"]
    assert len(step.attempts) == 1  # not retryable
    assert len(fake.requests) == calls  # the model was not called
    assert queued.error["code"] == "token_quota_exceeded"


def test_max_tokens_is_clipped_to_what_is_left_of_the_quota(engine, org, fake, provider):
    engine.start([transform("a", 1)])
    set_limits(org, monthly_token_quota=10_000)
    used_tokens(org, 9_700)

    run = engine.start([agent_step(max_tokens=800)])

    assert run.status == "completed", run.error
    assert fake.requests[0]["body"]["max_tokens"] == 300


def test_policy_max_tokens_per_run_clips_then_fails_the_next_step(engine, org, actor, fake, provider):
    security_policy_update(organization=org, actor=actor, changes={"max_tokens_per_run": 1000})
    fake.push(content="one", prompt_tokens=700, completion_tokens=300)
    fake.push(content="never")

    run = engine.start([agent_step("first"), agent_step("second", depends_on=["first"])])

    assert fake.requests[0]["body"]["max_tokens"] == 1000  # clipped from 4096 to the run's cap
    assert len(fake.requests) == 1
    steps = engine.steps(run)
    assert run.status == "failed"
    assert steps["first"].status == "completed"
    assert steps["second"].status == "failed"
    assert steps["second"].error["code"] == "token_limit_exceeded"
    assert steps["second"].error["details"] == {"limit": 1000, "used": 1000}
    assert "max_tokens_per_run (1000)" in steps["second"].error["message"]
    assert run.error["code"] == "token_limit_exceeded"
    assert run.total_tokens == 1000


def test_the_corrective_call_is_checked_too_and_the_spent_tokens_count(engine, org, actor, fake, provider):
    security_policy_update(organization=org, actor=actor, changes={"max_tokens_per_run": 500})
    fake.push(content="not json", prompt_tokens=400, completion_tokens=100)

    run = engine.start([agent_step(output_schema=SCHEMA)])

    assert len(fake.requests) == 1  # the corrective retry was not sent: the cap is reached
    step = engine.steps(run)["ask"]
    assert step.error["code"] == "token_limit_exceeded"
    assert step.error["details"]["tokens"] == {"prompt": 400, "completion": 100, "total": 500}
    # Failed attempt's tokens and cost are on the step and the run: 400 × 2.5 + 100 × 10, per million.
    assert step.tokens == {"prompt": 400, "completion": 100, "total": 500}
    assert step.cost_usd == Decimal("0.002")
    assert run.total_tokens == 500 and run.cost_usd == Decimal("0.002")


# --- tokens of failed attempts ------------------------------------------------------------------------


def test_invalid_llm_output_tokens_and_cost_are_counted(engine, fake, provider):
    fake.push(content="nope", prompt_tokens=100, completion_tokens=20)
    fake.push(content="still nope", prompt_tokens=150, completion_tokens=30)

    run = engine.start([agent_step(output_schema=SCHEMA)])

    step = engine.steps(run)["ask"]
    assert step.error["code"] == "invalid_llm_output"
    assert step.error["details"]["tokens"] == {"prompt": 250, "completion": 50, "total": 300}
    assert step.tokens == {"prompt": 250, "completion": 50, "total": 300}
    assert step.cost_usd == Decimal("0.001125")  # 250 × 2.5 + 50 × 10, per million
    assert run.total_tokens == 300 and run.cost_usd == Decimal("0.001125")


def test_a_retried_step_sums_its_attempts(engine, fake, provider, monkeypatch):
    monkeypatch.setattr(llm_client, "SERVER_ERROR_BACKOFF_SECONDS", 0.01)
    fake.push(content="nope", prompt_tokens=100, completion_tokens=20)
    for _ in range(llm_client.MAX_CALL_RETRIES + 1):  # the corrective call fails: llm_server_error, retryable
        fake.push(status=500)
    fake.push(content='{"n": 1}', prompt_tokens=200, completion_tokens=10)

    run = engine.start([agent_step(output_schema=SCHEMA, retry={"max_attempts": 2})])

    step = engine.steps(run)["ask"]
    assert run.status == "completed", run.error
    assert [a["status"] for a in step.attempts] == ["failed", "completed"]
    assert step.tokens == {"prompt": 300, "completion": 30, "total": 330}
    assert step.output_data["tokens"] == {"prompt": 200, "completion": 10, "total": 210}  # this attempt's
    assert run.total_tokens == 330


def test_redaction_patterns_cannot_hide_the_counted_tokens(engine, org, actor, fake, provider):
    security_policy_update(
        organization=org, actor=actor, changes={"redact_patterns": ["(?i)tokens", "cost_usd", "[0-9]+"]}
    )
    fake.push(content="nope 123", prompt_tokens=100, completion_tokens=20)
    fake.push(content="nope 456", prompt_tokens=100, completion_tokens=20)

    run = engine.start([agent_step(output_schema=SCHEMA)])

    step = engine.steps(run)["ask"]
    assert step.error["details"]["tokens"] == {"prompt": 200, "completion": 40, "total": 240}
    assert "123" not in str(step.error) and "456" not in str(step.error)  # the rest is still redacted
    assert run.total_tokens == 240


# --- /usage ---------------------------------------------------------------------------------------------


def test_usage_counts_runs_tokens_and_cost_of_real_agent_runs(api_key_client, engine, org, fake, provider):
    set_limits(org, monthly_run_limit=100, monthly_token_quota=1_000_000)
    fake.push(content="A", prompt_tokens=1200, completion_tokens=300)  # 0.003 + 0.003
    fake.push(content="bad", prompt_tokens=100, completion_tokens=20)  # a failed attempt: 0.00045
    fake.push(content="bad", prompt_tokens=100, completion_tokens=20)
    engine.start([agent_step()])
    engine.start([agent_step(output_schema=SCHEMA)])
    engine.start([transform("a", 1)], dry_run=True)
    old = engine.start([agent_step()])  # another 15 tokens, but created last month
    Run.objects.filter(pk=old.pk).update(created_at=datetime.now(UTC).replace(day=1) - timedelta(days=3))

    response = api_key_client.get("/api/v1/usage")

    assert response.status_code == 200
    body = response.json()
    assert body["period"] == usage_period()[0]
    assert body["runs"] == {"used": 3, "limit": 100}
    assert body["tokens"] == {"used": 1500 + 240, "limit": 1_000_000}
    assert body["cost_usd"] == pytest.approx(0.006 + 0.0009)
