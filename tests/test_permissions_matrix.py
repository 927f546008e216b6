"""Roles × scopes for the accounts endpoints, written out by hand (not read from the views' `access`),
so a view declaring the wrong requirement fails here.

Each row: the least role a person needs, and the scope an API key needs to reach the endpoint (None:
any key). Rows marked owner-only are refused to every key (keys never act as owner): 403
`insufficient_scope` without the endpoint's scope, else 403 `forbidden`. Every persona/key gets exactly
the expected answer: allowed (2xx), 403 `forbidden` (role) or 403 `insufficient_scope` (key scope)."""

from dataclasses import dataclass

import pytest
from rest_framework.test import APIClient

from accounts.choices import ALL_SCOPES, ROLE_RANK, Role
from accounts.services import api_key_create
from tests.conftest import jwt_for, key_for, owner_principal
from tests.factories import ProjectFactory, add_member


@dataclass(frozen=True)
class Row:
    name: str
    method: str
    path: str
    body: dict | None
    role: str
    scope: str | None

    @property
    def owner_only(self) -> bool:
        return self.role == Role.OWNER


ROWS = [
    Row("me", "get", "/me", None, Role.VIEWER, None),
    Row("organization-read", "get", "/organization", None, Role.VIEWER, None),
    Row("organization-rename", "patch", "/organization", {"name": "Renamed"}, Role.ADMIN, "admin"),
    Row("organization-plan", "patch", "/organization", {"plan": "growth"}, Role.OWNER, "admin"),
    Row(
        "organization-limits",
        "patch",
        "/organization",
        {"limits": {"rate_per_minute": 5}},
        Role.OWNER,
        "admin",
    ),
    Row("organization-retention", "patch", "/organization", {"retention_days": 30}, Role.OWNER, "admin"),
    Row("usage", "get", "/usage", None, Role.VIEWER, None),
    Row("members-list", "get", "/members", None, Role.ADMIN, "admin"),
    Row("members-add", "post", "/members", {"email": "new@acme.test", "role": "viewer"}, Role.ADMIN, "admin"),
    Row(
        "members-add-owner",
        "post",
        "/members",
        {"email": "new@acme.test", "role": "owner"},
        Role.OWNER,
        "admin",
    ),
    Row("member-role", "patch", "/members/{target}", {"role": "member"}, Role.ADMIN, "admin"),
    Row("member-remove", "delete", "/members/{target}", None, Role.ADMIN, "admin"),
    Row("api-keys-list", "get", "/api-keys", None, Role.ADMIN, "admin"),
    Row("api-keys-create", "post", "/api-keys", {"name": "k", "scopes": ["runs:read"]}, Role.ADMIN, "admin"),
    Row("api-key-revoke", "delete", "/api-keys/{key}", None, Role.ADMIN, "admin"),
    Row("projects-list", "get", "/projects", None, Role.VIEWER, "workflows:read"),
    Row("projects-create", "post", "/projects", {"name": "New"}, Role.MEMBER, "workflows:write"),
    Row("project-read", "get", "/projects/{project}", None, Role.VIEWER, "workflows:read"),
    Row(
        "project-update", "patch", "/projects/{project}", {"name": "Renamed"}, Role.MEMBER, "workflows:write"
    ),
    Row("project-delete", "delete", "/projects/{project}", None, Role.MEMBER, "workflows:write"),
    # LLM providers and agents (detail routes: tests/accounts/test_llm_api.py).
    Row("llm-providers-list", "get", "/llm-providers", None, Role.ADMIN, "admin"),
    Row(
        "llm-providers-create",
        "post",
        "/llm-providers",
        {"name": "P", "kind": "openai", "default_model": "m"},
        Role.ADMIN,
        "admin",
    ),
    Row("agents-list", "get", "/agents", None, Role.VIEWER, "workflows:read"),
    Row("agents-create", "post", "/agents", {"name": "A"}, Role.ADMIN, "admin"),
    # Security policy, secrets, signing secret (detail routes: tests/accounts/test_security_api.py).
    Row("security-policy-read", "get", "/security/policy", None, Role.ADMIN, "admin"),
    Row("security-policy-update", "put", "/security/policy", {"max_steps_per_run": 50}, Role.ADMIN, "admin"),
    Row("signing-secret-read", "get", "/security/signing-secret", None, Role.ADMIN, "admin"),
    Row("signing-secret-rotate", "post", "/security/signing-secret/rotate", {}, Role.ADMIN, "admin"),
    Row("secrets-list", "get", "/secrets", None, Role.ADMIN, "admin"),
    Row("secrets-create", "post", "/secrets", {"name": "X_TOK", "value": "val-1234"}, Role.ADMIN, "admin"),
]

ROLES = [Role.OWNER, Role.ADMIN, Role.MEMBER, Role.VIEWER]
KEYS = ["key_with_scope", "key_without_scope", "key_admin_only"]


def _expected(row: Row, persona: str) -> str | None:
    """None = allowed; else the 403 error code."""
    if persona in ROLES:
        return None if ROLE_RANK[persona] >= ROLE_RANK[row.role] else "forbidden"
    if row.scope is not None and persona == "key_without_scope":
        return "insufficient_scope"
    return "forbidden" if row.owner_only else None


def _key_scopes(row: Row, persona: str) -> list[str]:
    required = row.scope or "admin"
    if persona == "key_with_scope":
        return [required]
    if persona == "key_admin_only":
        return ["admin"]
    return [s for s in ALL_SCOPES if s not in {required, "admin"}]


@pytest.mark.parametrize("persona", ROLES + KEYS)
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_access(row, persona, org, owner, request):
    users = {Role.OWNER: owner}
    for role in (Role.ADMIN, Role.MEMBER, Role.VIEWER):
        users[role] = request.getfixturevalue(role.value)
    client = APIClient()
    if persona in ROLES:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt_for(users[persona], org)}")
    else:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(org, owner, _key_scopes(row, persona))}")

    path = "/api/v1" + row.path.format(
        target=add_member(org, Role.VIEWER).id if "{target}" in row.path else "",
        key=api_key_create(organization=org, actor=owner_principal(org, owner), name="victim").api_key.id
        if "{key}" in row.path
        else "",
        project=ProjectFactory(organization=org).id if "{project}" in row.path else "",
    )
    kwargs = {"format": "json"} if row.body is not None else {}
    response = (
        getattr(client, row.method)(path, row.body, **kwargs)
        if row.body is not None
        else getattr(client, row.method)(path)
    )
    expected = _expected(row, persona)
    if expected is None:
        assert 200 <= response.status_code < 300, (
            f"{persona}: {response.status_code} {response.content[:300]}"
        )
    else:
        assert response.status_code == 403, f"{persona}: {response.status_code} {response.content[:300]}"
        assert response.json()["error"]["code"] == expected


def test_every_accounts_route_is_in_the_matrix():
    from accounts.api.urls import urlpatterns

    covered = {row.path.split("/")[1] for row in ROWS}
    public = {"auth"}
    routes = {str(p.pattern).strip("^$").split("/")[0] for p in urlpatterns}
    assert routes - public <= covered, routes - public - covered


def test_the_audit_api_declares_the_same_access_as_accounts():
    from accounts.permissions import AUDIT_READ
    from audit.api import views

    assert views.AUDIT_READ == AUDIT_READ
