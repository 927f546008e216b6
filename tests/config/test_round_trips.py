"""Round trips a client expects, generated from the OpenAPI document so new routes are covered:

- every PUT accepts the body its GET returned (read-only fields such as `updated_at` are ignored,
  not refused);
- every POST that creates something honours Idempotency-Key: the schema declares it, and the same
  key with the same body replays the first response (`Idempotent-Replayed: true`, the same created
  object) instead of creating again.

A new PUT or POST route fails here until it is classified below (a creating POST needs a body in
CREATE_BODIES; a POST that creates nothing goes in NOT_CREATING with the reason). Path parameters are
filled from the tenancy registry (tests/support/tenancy_registry.py), which every route with one has."""

import re
from datetime import timedelta

import pytest
from django.urls import resolve
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from tests.factories import UserFactory
from tests.support.tenancy_registry import load_all
from tests.workflows.support.helpers import definition
from workflows.models import Schedule

REGISTRY = load_all()
_SCHEMA = SchemaGenerator().get_schema(request=None, public=True)
_PARAMETER = re.compile(r"\{([^}]+)\}")


def _operations(method: str) -> dict[str, dict]:
    return {path: item[method] for path, item in _SCHEMA["paths"].items() if method in item}


PUTS = _operations("put")
POSTS = _operations("post")


def _build(path: str, org, owner) -> tuple[str, dict]:
    """The URL of `path` for objects of `org` (made by the route's tenancy factory), and its kwargs."""
    if "{" not in path:
        return path, {}
    match = resolve(_PARAMETER.sub("x", path))
    entry = REGISTRY.get(match.url_name)
    assert entry, f"{path} ({match.url_name}) has no tenancy registry entry to build its objects"
    kwargs = entry.factory(org, owner)
    # The schema may name a parameter differently from the URL pattern (`{id}` for `pk`): in order.
    values = iter([str(kwargs[name]) for name in match.kwargs])
    return _PARAMETER.sub(lambda _: next(values), path), kwargs


# --- PUT ----------------------------------------------------------------------------------------------


def test_there_are_puts_to_check():
    assert set(PUTS) >= {"/api/v1/security/policy", "/api/v1/workflows/{ref}"}


@pytest.mark.parametrize("path", sorted(PUTS))
def test_put_accepts_the_body_its_get_returned(path, api_key_client, org, owner):
    url, _ = _build(path, org, owner)
    read = api_key_client.get(url)
    assert read.status_code == 200, read.content
    body = read.json()

    written = api_key_client.put(url, body, format="json")

    assert written.status_code == 200, written.content
    assert set(written.json()) == set(body)


def test_put_security_policy_applies_the_writable_fields_of_a_read_body(api_key_client):
    body = api_key_client.get("/api/v1/security/policy").json()
    assert body["updated_at"]  # the read-only field is sent back

    body["max_steps_per_run"] = 77
    written = api_key_client.put("/api/v1/security/policy", body, format="json")

    assert written.status_code == 200, written.content
    assert written.json()["max_steps_per_run"] == 77
    assert written.json()["updated_at"] != body["updated_at"]


def test_put_still_refuses_unknown_fields(api_key_client):
    body = api_key_client.get("/api/v1/security/policy").json()
    response = api_key_client.put("/api/v1/security/policy", {**body, "colour": "red"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"]["details"]["fields"] == {"colour": ["Unknown field."]}


# --- creating POST -------------------------------------------------------------------------------------


def _backfill(org, owner, kwargs):
    # The registry's schedule has no input; its workflow requires `who`.
    Schedule.objects.filter(pk=kwargs["schedule_id"]).update(input_data={"who": "Ada"})
    now = timezone.now()
    return {"start": (now - timedelta(days=3)).isoformat(), "end": (now - timedelta(hours=1)).isoformat()}


# path → the body of a request that creates (called with the org, its owner and the path kwargs).
CREATE_BODIES = {
    "/api/v1/agents": lambda org, owner, kw: {"name": "Scribe"},
    "/api/v1/api-keys": lambda org, owner, kw: {"name": "ci", "scopes": ["runs:read"]},
    "/api/v1/llm-providers": lambda org, owner, kw: {
        "name": "Local", "kind": "openai", "default_model": "gpt-4o-mini", "api_key": "sk-test",
    },
    "/api/v1/members": lambda org, owner, kw: {"email": UserFactory().email, "role": "member"},
    "/api/v1/projects": lambda org, owner, kw: {"name": "Billing"},
    "/api/v1/secrets": lambda org, owner, kw: {"name": "TOKEN", "value": "s3cret"},
    "/api/v1/templates/{id}/install": lambda org, owner, kw: {"name": "Installed"},
    "/api/v1/workflows": lambda org, owner, kw: {"definition": definition("Created")},
    "/api/v1/workflows/{ref}/clone": lambda org, owner, kw: {"name": "Clone"},
    "/api/v1/workflows/{ref}/save-as-template": lambda org, owner, kw: {"name": "Saved"},
    "/api/v1/workflows/{ref}/schedules": lambda org, owner, kw: {
        "cron_expression": "@hourly",
        "input_data": {"who": "round trip"},
    },
    "/api/v1/workflows/{ref}/rollback": lambda org, owner, kw: {"version": 1},
    "/api/v1/workflows/{ref}/run": lambda org, owner, kw: {"input_data": {"who": "Ada"}},
    "/api/v1/runs/{run_id}/rerun": lambda org, owner, kw: {},
    "/api/v1/schedules/{schedule_id}/backfill": _backfill,
}  # fmt: skip

# Fields shown once that a replay answers null (the idempotency store never keeps them).
SHOWN_ONCE = {"/api/v1/api-keys": {"key"}}

# Creating POSTs covered elsewhere, with the reason.
CREATE_ELSEWHERE = {
    "/api/v1/hooks/{workflow_id}": "inbound webhook (no API key): tests/runs/test_hooks.py replays by key",
    "/api/v1/hooks/{workflow_id}/{token}": "inbound webhook (no API key): tests/runs/test_hooks.py",
}

# POSTs that create nothing, with what they do instead.
NOT_CREATING = {
    "/api/v1/auth/token": "issues a JWT (stateless: nothing is stored)",
    "/api/v1/auth/token/refresh": "issues a JWT from a refresh token",
    "/api/v1/runs/{run_id}/approve": "a decision on an existing run",
    "/api/v1/runs/{run_id}/reject": "a decision on an existing run",
    "/api/v1/runs/{run_id}/cancel": "a state change of an existing run",
    "/api/v1/runs/{run_id}/terminate": "a state change of an existing run",
    "/api/v1/runs/{run_id}/pause": "a state change of an existing run",
    "/api/v1/runs/{run_id}/resume": "continues an existing run in place",
    "/api/v1/runs/{run_id}/pin": "a flag of an existing run",
    "/api/v1/runs/bulk/cancel": "state changes of existing runs",
    "/api/v1/runs/bulk/delete": "deletes existing runs",
    "/api/v1/security/signing-secret/rotate": "replaces the signing secret (its response holds the secret)",
    "/api/v1/workflows/{ref}/publish": "marks an existing version published",
    "/api/v1/workflows/{ref}/unarchive": "a state change of an existing workflow",
    "/api/v1/workflows/{ref}/webhook-secret/rotate": "replaces the webhook secret (its response holds it)",
    "/api/v1/workflows/validate": "validates a definition; stores nothing",
}


def _is_creating(path: str) -> bool:
    return path in CREATE_BODIES or path in CREATE_ELSEWHERE


def test_every_post_is_classified():
    unclassified = sorted(set(POSTS) - set(CREATE_BODIES) - set(CREATE_ELSEWHERE) - set(NOT_CREATING))
    assert not unclassified, (
        f"classify these POSTs in {__name__}: creating (CREATE_BODIES) or not (NOT_CREATING): {unclassified}"
    )
    stale = sorted((set(CREATE_BODIES) | set(CREATE_ELSEWHERE) | set(NOT_CREATING)) - set(POSTS))
    assert not stale, f"no such POST in the schema: {stale}"


def test_a_post_answering_201_is_a_creating_post():
    answering_201 = {path for path, operation in POSTS.items() if "201" in operation["responses"]}
    assert answering_201 <= set(CREATE_BODIES) | set(CREATE_ELSEWHERE)


@pytest.mark.parametrize("path", sorted(path for path in POSTS if _is_creating(path)))
def test_creating_post_declares_idempotency_key(path):
    operation = POSTS[path]
    headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
    assert "Idempotency-Key" in headers, path
    assert {"409", "422"} <= set(operation["responses"]), path


@pytest.mark.parametrize("path", sorted(CREATE_BODIES))
def test_creating_post_replays_the_same_key_and_body(path, api_key_client, org, owner):
    url, kwargs = _build(path, org, owner)
    body = CREATE_BODIES[path](org, owner, kwargs)

    first = api_key_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"round-trip {path}")
    again = api_key_client.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY=f"round-trip {path}")

    assert first.status_code < 300, first.content
    assert "Idempotent-Replayed" not in first.headers
    assert again.status_code == first.status_code
    assert again.headers["Idempotent-Replayed"] == "true"
    withheld = SHOWN_ONCE.get(path, set())
    assert all(again.json()[name] is None for name in withheld)
    # The same object: nothing was created the second time.
    assert {k: v for k, v in again.json().items() if k not in withheld} == {
        k: v for k, v in first.json().items() if k not in withheld
    }
