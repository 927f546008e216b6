"""/llm-providers and /agents: CRUD, validation, permissions, write-only keys, audit, idempotency and the
built-in agents."""

import json

import pytest

from accounts.builtin_agents import BUILTIN_AGENTS
from accounts.choices import Role
from accounts.models import Agent, LlmProvider
from audit.models import AuditEvent
from tests.factories import make_org

API_KEY = "sk-live-abcdefghijklmnopqrstuvwxyz0123456789"
PROVIDERS = "/api/v1/llm-providers"
AGENTS = "/api/v1/agents"


def provider_body(**overrides):
    body = {
        "name": "OpenAI",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1/",
        "api_key": API_KEY,
        "default_model": "gpt-4o-mini",
        "input_price_per_million": 0.15,
        "output_price_per_million": 0.6,
    }
    return {**body, **overrides}


@pytest.fixture
def admin_client(make_jwt_client, admin, org):
    return make_jwt_client(admin, org)


def create_provider(client, **overrides):
    response = client.post(PROVIDERS, provider_body(**overrides), format="json")
    assert response.status_code == 201, response.content
    return response.json()


# --- providers ---------------------------------------------------------------------------------------


def test_create_provider_never_returns_the_key(admin_client, org):
    response = admin_client.post(PROVIDERS, provider_body(), format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["id"].startswith("llm_")
    assert data["name"] == "OpenAI" and data["kind"] == "openai"
    assert data["base_url"] == "https://api.openai.com/v1"  # trailing slash removed
    assert data["api_key_set"] is True and data["api_key_last4"] == "6789"
    assert data["default_model"] == "gpt-4o-mini"
    assert data["input_price_per_million"] == 0.15 and data["output_price_per_million"] == 0.6
    assert data["model_prices"] == {}
    assert "api_key" not in data and API_KEY not in response.content.decode()

    row = LlmProvider.objects.get(pk=data["id"])
    assert row.organization == org
    assert row.api_key_encrypted and API_KEY not in row.api_key_encrypted
    from accounts.selectors import provider_api_key

    assert provider_api_key(row) == API_KEY

    for url in (PROVIDERS, f"{PROVIDERS}/{data['id']}"):
        assert API_KEY not in admin_client.get(url).content.decode()


def test_defaults_base_url_per_kind_and_optional_key(admin_client):
    body = provider_body(name="Claude", kind="anthropic", api_key="short", default_model="claude")
    del body["base_url"]
    response = admin_client.post(PROVIDERS, body, format="json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["base_url"] == "https://api.anthropic.com"
    assert data["api_key_set"] is True and data["api_key_last4"] == ""  # short keys show nothing
    body = provider_body(name="Ollama", base_url="http://ollama.internal:11434/v1")
    del body["api_key"]
    response = admin_client.post(PROVIDERS, body, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["api_key_set"] is False


def test_base_url_null_is_a_400_not_a_default(admin_client):
    body = provider_body()
    body["base_url"] = None
    assert admin_client.post(PROVIDERS, body, format="json").status_code == 400


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("kind", "cohere"),
        ("base_url", "ftp://example.com"),
        ("base_url", "https://user:pw@example.com/v1"),
        ("base_url", "https://example.com/v1?key=abc"),
        ("base_url", "not a url"),
        ("input_price_per_million", -1),
        ("output_price_per_million", "lots"),
        ("model_prices", {"gpt-4o": {"input": -1}}),
        ("model_prices", {"gpt-4o": {"inputs": 1}}),
        ("model_prices", ["gpt-4o"]),
        ("default_model", ""),
        ("name", ""),
        ("surprise", 1),
    ],
)
def test_provider_validation(admin_client, field, value):
    response = admin_client.post(PROVIDERS, provider_body(**{field: value}), format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]["fields"]
    assert API_KEY not in response.content.decode()


def test_provider_name_unique_per_organisation(admin_client, outsider_jwt_client):
    create_provider(admin_client)
    response = admin_client.post(PROVIDERS, provider_body(), format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "llm_provider_name_taken"
    assert outsider_jwt_client.post(PROVIDERS, provider_body(), format="json").status_code == 201


def test_update_rotates_the_key_and_audits_without_it(admin_client, org):
    created = create_provider(admin_client, model_prices={"gpt-4o": {"input": 2.5, "output": 10}})
    new_key = "sk-rotated-0000000000000000000000000000wxyz"
    response = admin_client.patch(
        f"{PROVIDERS}/{created['id']}",
        {"api_key": new_key, "default_model": "gpt-4o", "input_price_per_million": "0.2"},
        format="json",
    )
    assert response.status_code == 200, response.content
    data = response.json()
    assert data["api_key_last4"] == "wxyz" and data["default_model"] == "gpt-4o"
    assert data["input_price_per_million"] == 0.2
    assert data["model_prices"] == {"gpt-4o": {"input": 2.5, "output": 10.0}}
    from accounts.selectors import provider_api_key

    assert provider_api_key(LlmProvider.objects.get(pk=created["id"])) == new_key

    response = admin_client.patch(f"{PROVIDERS}/{created['id']}", {"api_key": None}, format="json")
    assert response.json()["api_key_set"] is False

    events = list(
        AuditEvent.objects.filter(organization=org, event__startswith="llm_provider.").order_by("seq")
    )
    assert [e.event for e in events] == [
        "llm_provider.created",
        "llm_provider.updated",
        "llm_provider.updated",
    ]
    assert events[1].data["changes"]["api_key"] == {"changed": True, "set": True}
    assert events[1].data["changes"]["default_model"] == {"from": "gpt-4o-mini", "to": "gpt-4o"}
    assert events[2].data["changes"]["api_key"] == {"changed": True, "set": False}
    dumped = json.dumps([e.data for e in events])
    assert API_KEY not in dumped and new_key not in dumped and "wxyz" not in dumped


def test_patch_validates_and_404s_first(admin_client):
    created = create_provider(admin_client)
    assert (
        admin_client.patch(f"{PROVIDERS}/llm_nope", {"kind": "x"}, format="json").json()["error"]["code"]
        == "llm_provider_not_found"
    )
    response = admin_client.patch(f"{PROVIDERS}/{created['id']}", {"base_url": "gopher://x"}, format="json")
    assert response.status_code == 400


def test_delete_provider_and_in_use_refusal(admin_client, org):
    created = create_provider(admin_client)
    agent = admin_client.post(AGENTS, {"name": "Uses it", "provider_id": created["id"]}, format="json").json()
    response = admin_client.delete(f"{PROVIDERS}/{created['id']}")
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "llm_provider_in_use"
    assert response.json()["error"]["details"]["agent_ids"] == [agent["id"]]
    admin_client.patch(f"{AGENTS}/{agent['id']}", {"provider_id": None}, format="json")
    assert admin_client.delete(f"{PROVIDERS}/{created['id']}").status_code == 204
    assert admin_client.get(f"{PROVIDERS}/{created['id']}").status_code == 404
    assert AuditEvent.objects.filter(organization=org, event="llm_provider.deleted").count() == 1


def test_list_is_paginated(admin_client):
    for i in range(3):
        create_provider(admin_client, name=f"P{i}")
    data = admin_client.get(f"{PROVIDERS}?limit=2").json()
    assert [p["name"] for p in data["llm_providers"]] == ["P0", "P1"]
    assert data["total"] == 3 and data["limit"] == 2 and data["offset"] == 0


def test_idempotent_create_replays_without_a_second_provider(admin_client, org):
    headers = {"HTTP_IDEMPOTENCY_KEY": "create-provider-1"}
    first = admin_client.post(PROVIDERS, provider_body(), format="json", **headers)
    again = admin_client.post(PROVIDERS, provider_body(), format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert LlmProvider.objects.filter(organization=org).count() == 1
    from config.models import IdempotencyRecord

    stored = json.dumps(list(IdempotencyRecord.objects.values("response_body")))
    assert API_KEY not in stored


# --- permissions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_providers_are_admin_only(make_jwt_client, org, member, viewer, role):
    user = member if role == Role.MEMBER else viewer
    client = make_jwt_client(user, org)
    assert client.get(PROVIDERS).status_code == 403
    assert client.post(PROVIDERS, provider_body(), format="json").json()["error"]["code"] == "forbidden"


def test_agents_read_by_viewers_written_by_admins(make_jwt_client, org, viewer, member, admin_client):
    viewer_client = make_jwt_client(viewer, org)
    listing = viewer_client.get(AGENTS)
    assert listing.status_code == 200 and listing.json()["total"] == len(BUILTIN_AGENTS)
    agent_id = listing.json()["agents"][0]["id"]
    assert viewer_client.get(f"{AGENTS}/{agent_id}").status_code == 200
    for client in (viewer_client, make_jwt_client(member, org)):
        assert client.post(AGENTS, {"name": "X"}, format="json").status_code == 403
        assert client.patch(f"{AGENTS}/{agent_id}", {"model": "m"}, format="json").status_code == 403
    assert admin_client.post(AGENTS, {"name": "X"}, format="json").status_code == 201


def test_api_key_scopes(make_key_client):
    reader = make_key_client(["workflows:read"])
    assert reader.get(AGENTS).status_code == 200
    assert reader.get(PROVIDERS).json()["error"]["code"] == "insufficient_scope"
    assert reader.post(AGENTS, {"name": "X"}, format="json").json()["error"]["code"] == "insufficient_scope"
    admin_key = make_key_client(["admin"])
    assert admin_key.post(PROVIDERS, provider_body(), format="json").status_code == 201
    assert admin_key.post(AGENTS, {"name": "X"}, format="json").status_code == 201


def test_other_organisations_objects_are_404(admin_client, outsider_jwt_client):
    provider = create_provider(admin_client)
    agent = admin_client.post(AGENTS, {"name": "Mine"}, format="json").json()
    assert outsider_jwt_client.get(f"{PROVIDERS}/{provider['id']}").json()["error"]["code"] == (
        "llm_provider_not_found"
    )
    assert outsider_jwt_client.get(f"{AGENTS}/{agent['id']}").json()["error"]["code"] == "agent_not_found"
    ids = {a["id"] for a in outsider_jwt_client.get(AGENTS).json()["agents"]}
    assert agent["id"] not in ids
    # Naming another organisation's provider in an agent is a field error, not a reference.
    response = outsider_jwt_client.post(
        AGENTS, {"name": "Sneaky", "provider_id": provider["id"]}, format="json"
    )
    assert response.status_code == 400 and "provider_id" in response.json()["error"]["details"]["fields"]


# --- agents -----------------------------------------------------------------------------------------


def test_builtin_agents_are_seeded_for_every_new_organisation(db):
    org = make_org(name="Fresh")
    agents = Agent.objects.filter(organization=org).order_by("created_at", "id")
    assert [a.builtin_key for a in agents] == [spec["builtin_key"] for spec in BUILTIN_AGENTS]
    assert {a.kind for a in agents} == {"built-in"}
    assert all(a.system_prompt for a in agents)


def test_agent_crud_and_audit(admin_client, org):
    provider = create_provider(admin_client)
    body = {
        "name": "Support triage",
        "model": "gpt-4o",
        "provider_id": provider["id"],
        "system_prompt": "Triage tickets.",
        "temperature": 0.2,
        "max_tokens": 500,
        "description": "Routes tickets",
    }
    response = admin_client.post(AGENTS, body, format="json")
    assert response.status_code == 201, response.content
    agent = response.json()
    assert agent["id"].startswith("agent_") and agent["kind"] == "custom"
    assert {k: agent[k] for k in body} == body

    response = admin_client.patch(
        f"{AGENTS}/{agent['id']}", {"temperature": None, "name": "Triage"}, format="json"
    )
    assert response.status_code == 200 and response.json()["temperature"] is None
    assert response.json()["name"] == "Triage"
    assert admin_client.delete(f"{AGENTS}/{agent['id']}").status_code == 204
    assert admin_client.get(f"{AGENTS}/{agent['id']}").status_code == 404
    events = list(
        AuditEvent.objects.filter(organization=org, event__startswith="agent.")
        .order_by("seq")
        .values_list("event", flat=True)
    )
    assert events == ["agent.created", "agent.updated", "agent.deleted"]


@pytest.mark.parametrize(
    "body",
    [
        {"name": "T", "temperature": 3},
        {"name": "T", "max_tokens": 0},
        {"name": "T", "kind": "built-in"},
        {"name": ""},
        {},
        {"name": "T", "provider_id": "llm_missing"},
    ],
)
def test_agent_validation(admin_client, body):
    response = admin_client.post(AGENTS, body, format="json")
    assert response.status_code == 400, response.content


def test_agent_name_taken(admin_client):
    response = admin_client.post(AGENTS, {"name": "Summarizer"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "agent_name_taken"


def test_builtin_agents_can_be_tuned_but_not_renamed_or_deleted(admin_client, org):
    builtin = Agent.objects.get(organization=org, builtin_key="classifier")
    url = f"{AGENTS}/{builtin.id}"
    response = admin_client.patch(url, {"model": "gpt-4o", "system_prompt": "Pick one."}, format="json")
    assert response.status_code == 200 and response.json()["model"] == "gpt-4o"
    assert response.json()["kind"] == "built-in"
    response = admin_client.patch(url, {"name": "Renamed"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "agent_builtin"
    response = admin_client.delete(url)
    assert response.status_code == 409 and response.json()["error"]["code"] == "agent_builtin"
    assert Agent.objects.filter(pk=builtin.pk).exists()


def _queries(client, url) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_lists_run_no_query_per_row(admin_client):
    create_provider(admin_client, name="First")
    _queries(admin_client, PROVIDERS)  # warm up (the first request of a window creates counters)
    few = (_queries(admin_client, PROVIDERS), _queries(admin_client, AGENTS))
    for i in range(8):
        provider = create_provider(admin_client, name=f"Bulk {i}")
        admin_client.post(AGENTS, {"name": f"Agent {i}", "provider_id": provider["id"]}, format="json")
    assert (_queries(admin_client, PROVIDERS), _queries(admin_client, AGENTS)) == few


def test_admin_pages_are_read_only_and_never_show_the_key(admin_client, db):
    from django.test import Client

    from tests.factories import UserFactory

    provider = create_provider(admin_client)
    client = Client()
    client.force_login(UserFactory(email="root@baton.test", is_staff=True, is_superuser=True))
    row = LlmProvider.objects.get(pk=provider["id"])
    agent = Agent.objects.filter(organization=row.organization).first()
    for page in (
        "/admin/accounts/llmprovider/",
        f"/admin/accounts/llmprovider/{row.id}/change/",
        "/admin/accounts/agent/",
        f"/admin/accounts/agent/{agent.id}/change/",
    ):
        response = client.get(page)
        assert response.status_code == 200, page
        assert (
            API_KEY not in response.content.decode()
            and row.api_key_encrypted not in response.content.decode()
        )
    assert client.get("/admin/accounts/llmprovider/add/").status_code == 403
