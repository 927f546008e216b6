"""Settings pages for admins: LLM providers, agents, secrets, the security policy, the webhook signing
secret and usage, through the API's serializers and services (docs/dashboard.md). Write-only values never
come back in a page."""

import re

import pytest

from accounts import crypto
from accounts.models import Agent, LlmProvider, Secret, SecurityPolicy, SigningSecret
from audit.models import AuditEvent
from tests.dashboard.support.helpers import signed_in

KEY = "sk-test-0123456789abcdefWXYZ"
SETTINGS_PAGES = [
    "/settings/llm-providers/",
    "/settings/agents/",
    "/settings/secrets/",
    "/settings/security/",
    "/settings/usage/",
]


def _error_next_to(body: str, field: str) -> str:
    match = re.search(rf'id="id_{field}".*?<p class="field-error" role="alert">([^<]+)', body, re.S)
    assert match, body[-3000:]
    return match.group(1)


@pytest.mark.parametrize("url", SETTINGS_PAGES)
def test_settings_pages_are_for_admins(url, org, owner, admin, member, viewer):
    assert signed_in(admin, org).get(url).status_code == 200
    assert signed_in(owner, org).get(url).status_code == 200
    for person in (member, viewer):
        assert signed_in(person, org).get(url).status_code == 403
        assert signed_in(person, org).post(url, {"name": "x"}).status_code == 403
    assert not LlmProvider.objects.exists() and not Secret.objects.exists()


def test_llm_provider_key_is_write_only(org, admin):
    client = signed_in(admin, org)
    assert "No LLM provider yet" in client.get("/settings/llm-providers/").content.decode()
    response = client.post(
        "/settings/llm-providers/",
        {"name": "Main", "kind": "openai", "api_key": KEY, "default_model": "gpt-4o-mini",
         "input_price_per_million": "0.15", "output_price_per_million": "0.6"},
    )  # fmt: skip
    assert response.status_code == 302
    provider = LlmProvider.objects.get()
    assert crypto.decrypt(provider.api_key_encrypted) == KEY
    assert (
        provider.base_url == "https://api.openai.com/v1"
        and str(provider.input_price_per_million) == "0.150000"
    )
    listing = client.get("/settings/llm-providers/").content.decode()
    assert "…WXYZ" in listing and KEY not in listing
    edit = client.get(f"/settings/llm-providers/{provider.id}/").content.decode()
    assert KEY not in edit and 'name="api_key"' in edit and "gpt-4o-mini" in edit
    # Saving without a new key keeps it; a new model is saved; removing the key is explicit.
    data = {"name": "Main", "kind": "openai", "default_model": "gpt-4o", "base_url": provider.base_url}
    assert client.post(f"/settings/llm-providers/{provider.id}/", data).status_code == 302
    provider.refresh_from_db()
    assert provider.default_model == "gpt-4o" and provider.api_key_set
    assert (
        client.post(f"/settings/llm-providers/{provider.id}/", {**data, "remove_key": "on"}).status_code
        == 302
    )
    provider.refresh_from_db()
    assert not provider.api_key_set
    events = AuditEvent.objects.filter(event__startswith="llm_provider.")
    assert events.count() == 3 and KEY not in str(list(events.values_list("data", flat=True)))
    assert client.post(f"/settings/llm-providers/{provider.id}/delete/").status_code == 302
    assert not LlmProvider.objects.exists()


def test_llm_provider_errors_next_to_fields(org, admin):
    client = signed_in(admin, org)
    base = {"name": "Main", "kind": "openai", "default_model": "m"}
    response = client.post("/settings/llm-providers/", {**base, "base_url": "ftp://example.com"})
    assert response.status_code == 400 and _error_next_to(response.content.decode(), "base_url")
    assert client.post("/settings/llm-providers/", base).status_code == 302
    response = client.post("/settings/llm-providers/", base)  # the name is taken: the service's 409
    assert response.status_code == 409 and "already exists" in response.content.decode()
    response = client.post("/settings/llm-providers/", {**base, "name": "", "kind": "nope"})
    assert response.status_code == 400
    assert _error_next_to(response.content.decode(), "name") and _error_next_to(
        response.content.decode(), "kind"
    )


def test_llm_provider_model_prices_set_edited_and_cleared_from_the_page(org, admin):
    client = signed_in(admin, org)
    base = {"name": "Main", "kind": "openai", "default_model": "gpt-4o"}
    lines = "gpt-4o-mini 0.15 0.6\n\n  o1  15 -\n"
    assert client.post("/settings/llm-providers/", {**base, "model_prices": lines}).status_code == 302
    provider = LlmProvider.objects.get()
    assert provider.model_prices == {"gpt-4o-mini": {"input": 0.15, "output": 0.6}, "o1": {"input": 15.0}}
    listing = client.get("/settings/llm-providers/").content.decode()
    assert "<code>gpt-4o-mini</code>: $0.15 / $0.6" in listing and "<code>o1</code>: $15.0 / —" in listing
    edit = client.get(f"/settings/llm-providers/{provider.id}/").content.decode()
    assert "gpt-4o-mini 0.15 0.6\no1 15 -</textarea>" in edit
    edited = {**base, "base_url": provider.base_url, "model_prices": "gpt-4o-mini 0.2 0.8"}
    assert client.post(f"/settings/llm-providers/{provider.id}/", edited).status_code == 302
    provider.refresh_from_db()
    assert provider.model_prices == {"gpt-4o-mini": {"input": 0.2, "output": 0.8}}
    event = AuditEvent.objects.filter(event="llm_provider.updated").latest("seq")
    assert event.data["changes"]["model_prices"]["to"] == {"gpt-4o-mini": {"input": 0.2, "output": 0.8}}
    cleared = {**edited, "model_prices": ""}
    assert client.post(f"/settings/llm-providers/{provider.id}/", cleared).status_code == 302
    provider.refresh_from_db()
    assert provider.model_prices == {}


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ("gpt-4o 0.15", "Line 1: write a model name and two prices."),
        ("gpt-4o 0.15 cheap", "Line 1: cheap is not a number."),
        ("gpt-4o 0.15 1000000", "output must be a number between 0 and 999999"),  # the service's rule
        ("gpt-4o - -", "either may be left out"),
        ("x" * 201 + " 1 1", "A model name is 1 to 200 characters."),
    ],
)
def test_llm_provider_model_prices_refused_next_to_the_field(org, admin, lines, error):
    client = signed_in(admin, org)
    body = {"name": "Main", "kind": "openai", "default_model": "m", "model_prices": lines}
    response = client.post("/settings/llm-providers/", body)
    assert response.status_code == 400
    assert error in _error_next_to(response.content.decode(), "model_prices")
    assert not LlmProvider.objects.exists()


def test_llm_provider_model_prices_same_rule_for_api_and_page(org, admin):
    from accounts.services import llm

    with pytest.raises(Exception) as refused:
        llm.model_prices_normalize({"m": {"input": -1}})
    problems = refused.value.details["fields"]["model_prices"]
    assert problems == {"m": ["input must be a number between 0 and 999999."]}


def test_agents_created_edited_and_the_provider_in_use_stays(org, admin):
    client = signed_in(admin, org)
    provider = LlmProvider.objects.create(organization=org, name="P", kind="openai", default_model="m")
    response = client.post(
        "/settings/agents/",
        {"name": "Writer", "provider_id": provider.id, "model": "", "system_prompt": "Be brief.",
         "temperature": "0.2", "max_tokens": "500", "description": "Writes"},
    )  # fmt: skip
    assert response.status_code == 302
    agent = Agent.objects.get(name="Writer")
    assert (agent.provider_id, agent.temperature, agent.max_tokens) == (provider.id, 0.2, 500)
    assert "Writer" in client.get("/settings/agents/").content.decode()
    data = {"name": "Writer", "provider_id": "", "system_prompt": "Be kind.", "temperature": "3"}
    response = client.post(f"/settings/agents/{agent.id}/", data)
    assert response.status_code == 400 and _error_next_to(response.content.decode(), "temperature")
    assert client.post(f"/settings/agents/{agent.id}/", {**data, "temperature": ""}).status_code == 302
    agent.refresh_from_db()
    assert agent.system_prompt == "Be kind." and agent.provider_id is None
    # A provider an agent names cannot go: the service says so.
    Agent.objects.filter(pk=agent.pk).update(provider=provider)
    response = client.post(f"/settings/llm-providers/{provider.id}/delete/")
    assert response.status_code == 409 and LlmProvider.objects.filter(pk=provider.pk).exists()
    assert client.post(f"/settings/agents/{agent.id}/delete/").status_code == 302
    assert not Agent.objects.filter(pk=agent.pk).exists()


def test_secret_values_are_write_only(org, admin):
    client = signed_in(admin, org)
    value = "hunter2-very-secret-value"
    data = {"name": "SLACK_TOKEN", "value": value, "description": "Posts"}
    assert client.post("/settings/secrets/", data).status_code == 302
    secret = Secret.objects.get()
    listing = client.get("/settings/secrets/").content.decode()
    assert "SLACK_TOKEN" in listing and value not in listing and "write-only" in listing
    edit = client.get(f"/settings/secrets/{secret.id}/").content.decode()
    assert value not in edit
    assert (
        client.post(
            f"/settings/secrets/{secret.id}/", {"name": "SLACK_TOKEN", "description": "New"}
        ).status_code
        == 302
    )
    secret.refresh_from_db()
    assert secret.description == "New" and crypto.decrypt(secret.value_encrypted) == value
    new_value = "another-long-secret-value"
    client.post(f"/settings/secrets/{secret.id}/", {"name": "SLACK_TOKEN", "value": new_value})
    secret.refresh_from_db()
    assert crypto.decrypt(secret.value_encrypted) == new_value
    response = client.post("/settings/secrets/", {"name": "bad name", "value": value})
    assert response.status_code == 400 and _error_next_to(response.content.decode(), "name")
    assert value not in response.content.decode() and new_value not in response.content.decode()
    assert client.post(f"/settings/secrets/{secret.id}/delete/").status_code == 302
    assert not Secret.objects.exists()


def test_security_policy_saved_through_the_api_rules(org, admin):
    client = signed_in(admin, org)
    page = client.get("/settings/security/").content.decode()
    assert 'name="http_allowlist"' in page and "production" in page
    data = {
        "block_private_networks": "on",
        "http_allowlist": "internal.example.com\n10.0.0.0/8\n",
        "max_run_duration_seconds": "600",
        "max_steps_per_run": "50",
        "max_tokens_per_run": "",
        "require_approval_for_envs": "production\nstaging",
        "redact_patterns": "tok_[a-z0-9]{8,}",
    }
    assert client.post("/settings/security/", data).status_code == 302
    policy = SecurityPolicy.objects.get(organization=org)
    assert not policy.allow_script_steps and policy.block_private_networks
    assert policy.http_allowlist == ["internal.example.com", "10.0.0.0/8"]
    assert policy.require_approval_for_envs == ["production", "staging"] and policy.max_steps_per_run == 50
    assert AuditEvent.objects.filter(event="policy.updated").exists()
    response = client.post(
        "/settings/security/", {**data, "http_allowlist": "host.example:8080", "redact_patterns": "(a)\\1"}
    )
    assert response.status_code == 400
    body = response.content.decode()
    assert "ports" in _error_next_to(body, "http_allowlist") and _error_next_to(body, "redact_patterns")
    policy.refresh_from_db()
    assert policy.http_allowlist == ["internal.example.com", "10.0.0.0/8"]


def test_signing_secret_shown_to_admins_and_rotated_with_a_grace(org, admin):
    client = signed_in(admin, org)
    page = client.get("/settings/security/").content.decode()
    row = SigningSecret.objects.get(organization=org)
    first = crypto.decrypt(row.secret_encrypted)
    assert first in page and "never" in page
    assert client.post("/settings/security/rotate/", {"grace_seconds": "3600"}).status_code == 302
    row.refresh_from_db()
    assert (
        crypto.decrypt(row.secret_encrypted) != first
        and crypto.decrypt(row.previous_secret_encrypted) == first
    )
    assert "Previous secret signs too until" in client.get("/settings/security/").content.decode()
    assert AuditEvent.objects.filter(event="signing_secret.rotated").count() == 1
    client.post("/settings/security/rotate/", {"grace_seconds": "-1"})
    assert AuditEvent.objects.filter(event="signing_secret.rotated").count() == 1


def test_usage_against_the_plan_limits(org, owner, admin):
    from runs.services import run_create
    from tests.dashboard.support.helpers import actor, make_workflow

    org.monthly_run_limit = 10
    org.save(update_fields=["monthly_run_limit"])
    workflow = make_workflow(org, owner)
    for _ in range(3):
        run_create(workflow=workflow, actor=actor(org, owner), input_data={})
    body = signed_in(admin, org).get("/settings/usage/").content.decode()
    assert re.search(r"Runs this month</th><td>3</td><td>10</td>", body)
    assert "30%" in body and "LLM cost this month" in body
