"""/security/policy, /secrets and /security/signing-secret: validation, permissions, write-only values,
audit, idempotency and encryption at rest."""

import json

import pytest
from django.db import connection

from accounts import crypto
from accounts.choices import Role
from accounts.models import Secret, SecurityPolicy, SigningSecret
from audit.models import AuditEvent
from config.models import IdempotencyRecord
from runs.engine import signing

POLICY = "/api/v1/security/policy"
SECRETS = "/api/v1/secrets"
SIGNING = "/api/v1/security/signing-secret"
VALUE = "s3cr3t-value-Zq9v7X2mW4kP"

DEFAULTS = {
    "allow_script_steps": True,
    "block_private_networks": True,
    "http_allowlist": [],
    "max_run_duration_seconds": 3600,
    "max_steps_per_run": 1000,
    "max_tokens_per_run": None,
    "require_approval_for_envs": ["production"],
    "redact_patterns": [],
}


@pytest.fixture
def admin_client(make_jwt_client, admin, org):
    return make_jwt_client(admin, org)


def create_secret(client, name="API_TOKEN", value=VALUE, **extra):
    response = client.post(SECRETS, {"name": name, "value": value, **extra}, format="json")
    assert response.status_code == 201, response.content
    return response.json()


def audit_dump(org) -> str:
    return json.dumps(list(AuditEvent.objects.filter(organization=org).values()), default=str)


# --- policy -----------------------------------------------------------------------------------------


def test_policy_defaults_are_created_lazily(admin_client, org):
    assert not SecurityPolicy.objects.filter(organization=org).exists()
    response = admin_client.get(POLICY)
    assert response.status_code == 200, response.content
    data = response.json()
    assert {key: data[key] for key in DEFAULTS} == DEFAULTS
    assert data["updated_by"] == ""
    assert SecurityPolicy.objects.filter(organization=org).count() == 1


def test_put_changes_fields_and_audits_before_and_after(admin_client, org, admin):
    body = {
        "allow_script_steps": False,
        "http_allowlist": ["api.internal.example", "*.corp.example", "10.0.0.0/8", "[fd00::1]"],
        "max_run_duration_seconds": 600,
        "max_tokens_per_run": 50_000,
        "require_approval_for_envs": ["production", "staging"],
        "redact_patterns": [r"(?i)bearer\s+[a-z0-9._-]+", r"sk-[A-Za-z0-9]{20,}"],
    }
    response = admin_client.put(POLICY, body, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    assert {key: data[key] for key in body} == body
    assert data["block_private_networks"] is True and data["max_steps_per_run"] == 1000  # untouched
    assert data["updated_by"] == admin.id
    assert admin_client.get(POLICY).json() == data
    (event,) = AuditEvent.objects.filter(organization=org, event="policy.updated")
    assert event.target_type == "security_policy" and event.actor == admin.id
    changes = event.data["changes"]
    assert set(changes) == set(body)
    assert changes["allow_script_steps"] == {"before": True, "after": False}
    assert changes["max_run_duration_seconds"] == {"before": 3600, "after": 600}
    # The same document again changes nothing and is not audited again.
    assert admin_client.put(POLICY, body, format="json").status_code == 200
    assert AuditEvent.objects.filter(organization=org, event="policy.updated").count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"allow_script_steps": "false"}, "allow_script_steps"),
        ({"block_private_networks": 0}, "block_private_networks"),
        ({"max_run_duration_seconds": 0}, "max_run_duration_seconds"),
        ({"max_run_duration_seconds": 2_592_001}, "max_run_duration_seconds"),
        ({"max_run_duration_seconds": "60"}, "max_run_duration_seconds"),
        ({"max_run_duration_seconds": 60.5}, "max_run_duration_seconds"),
        ({"max_run_duration_seconds": True}, "max_run_duration_seconds"),
        ({"max_steps_per_run": 0}, "max_steps_per_run"),
        ({"max_steps_per_run": None}, "max_steps_per_run"),
        ({"max_tokens_per_run": 0}, "max_tokens_per_run"),
        ({"http_allowlist": "10.0.0.0/8"}, "http_allowlist"),
        ({"http_allowlist": ["not a host"]}, "http_allowlist"),
        ({"http_allowlist": ["0177.0.0.1"]}, "http_allowlist"),
        ({"http_allowlist": ["api.example.com:8443"]}, "http_allowlist"),
        ({"http_allowlist": ["api.example.com:³"]}, "http_allowlist"),
        ({"http_allowlist": ["10.0.0.0/33"]}, "http_allowlist"),
        ({"http_allowlist": [""]}, "http_allowlist"),
        ({"http_allowlist": [f"h{i}.example.com" for i in range(101)]}, "http_allowlist"),
        ({"require_approval_for_envs": "production"}, "require_approval_for_envs"),
        ({"require_approval_for_envs": ["bad env"]}, "require_approval_for_envs"),
        ({"redact_patterns": ["("]}, "redact_patterns"),
        ({"redact_patterns": [r"(a)\1"]}, "redact_patterns"),  # backreference: not RE2
        ({"redact_patterns": [r"(?=x)y"]}, "redact_patterns"),  # lookahead: not RE2
        ({"redact_patterns": ["x*"]}, "redact_patterns"),  # matches the empty string
        ({"redact_patterns": ["a" * 501]}, "redact_patterns"),
        ({"redact_patterns": [f"p{i}" for i in range(51)]}, "redact_patterns"),
        ({"redact_patterns": [""]}, "redact_patterns"),
        ({"redact_patterns": [42]}, "redact_patterns"),
        ({"redact_patterns": [["nested"]]}, "redact_patterns"),
        ({"http_allowlist": [["nested"]]}, "http_allowlist"),
        ({"http_allowlist": [None]}, "http_allowlist"),
        ({"require_approval_for_envs": [{"a": 1}]}, "require_approval_for_envs"),
        ({"max_tokens_per_run": 10**13}, "max_tokens_per_run"),
        ({"unknown_field": 1}, "unknown_field"),
        # Read-only fields (updated_at, updated_by) are ignored, not refused: tests/config/test_round_trips.py
    ],
)
def test_put_rejects_invalid_fields(admin_client, org, body, field):
    response = admin_client.put(POLICY, body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]["fields"]
    assert not AuditEvent.objects.filter(organization=org, event="policy.updated").exists()


def test_put_rejects_a_non_object_body(admin_client):
    response = admin_client.put(POLICY, [1, 2], format="json")
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"


def test_catastrophic_looking_patterns_are_linear_time(admin_client):
    """RE2 has no backtracking: the classic ReDoS pattern is accepted and cannot hang a worker."""
    import time

    from runs.engine.redaction import Redactor

    assert admin_client.put(POLICY, {"redact_patterns": [r"(a+)+$"]}, format="json").status_code == 200
    started = time.monotonic()
    assert Redactor(patterns=[r"(a+)+$"]).text("a" * 50_000 + "b") == "a" * 50_000 + "b"
    assert time.monotonic() - started < 1


# --- secrets ----------------------------------------------------------------------------------------


def test_create_secret_never_returns_or_stores_the_plaintext(admin_client, org, admin):
    response = admin_client.post(
        SECRETS, {"name": "API_TOKEN", "value": VALUE, "description": "Partner API"}, format="json"
    )
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["id"].startswith("sec_") and data["name"] == "API_TOKEN"
    assert data["description"] == "Partner API"
    assert data["created_by"] == data["updated_by"] == admin.id
    assert "value" not in data and VALUE not in response.content.decode()
    # Encryption at rest: the column holds a Fernet token, not the value.
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT value_encrypted FROM {Secret._meta.db_table} WHERE id = %s", [data["id"]])
        (stored,) = cursor.fetchone()
    assert VALUE not in stored and stored.startswith("gAAAA")
    assert crypto.decrypt(stored) == VALUE
    for response in (admin_client.get(SECRETS), admin_client.get(f"{SECRETS}/{data['id']}")):
        assert response.status_code == 200 and VALUE not in response.content.decode()
    assert admin_client.get(SECRETS).json()["secrets"][0]["name"] == "API_TOKEN"
    (event,) = AuditEvent.objects.filter(organization=org, event="secret.created")
    assert event.data == {"name": "API_TOKEN"} and event.target_id == data["id"]
    assert VALUE not in audit_dump(org)


def test_secret_name_is_unique_per_organisation(admin_client, make_jwt_client, outsider, other_org):
    create_secret(admin_client)
    response = admin_client.post(SECRETS, {"name": "API_TOKEN", "value": "another-value"}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "secret_name_taken"
    # Another organisation may use the same name.
    create_secret(make_jwt_client(outsider, other_org))


@pytest.mark.parametrize(
    "body",
    [
        {"name": "api_token", "value": VALUE},
        {"name": "1TOKEN", "value": VALUE},
        {"name": "TOKEN-X", "value": VALUE},
        {"name": "T" * 65, "value": VALUE},
        {"name": "TOKEN", "value": "abc"},  # too short to redact
        {"name": "TOKEN", "value": "x" * (64 * 1024 + 1)},
        {"name": "TOKEN", "value": "é" * (32 * 1024 + 1)},  # over 64 KB in UTF-8
        {"name": "TOKEN", "value": 12345},
        {"name": "TOKEN"},
        {"value": VALUE},
        {"name": "TOKEN", "value": VALUE, "extra": 1},
    ],
)
def test_secret_validation(admin_client, org, body):
    response = admin_client.post(SECRETS, body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "invalid_request"
    assert not Secret.objects.filter(organization=org).exists()
    if isinstance(body.get("value"), str):
        assert body["value"] not in response.content.decode()


def test_update_and_delete_audit_names_only(admin_client, org):
    secret = create_secret(admin_client)
    url = f"{SECRETS}/{secret['id']}"
    new_value = "rotated-value-8d7f6e5c4b3a"
    response = admin_client.patch(url, {"value": new_value, "description": "rotated"}, format="json")
    assert response.status_code == 200 and new_value not in response.content.decode()
    assert response.json()["description"] == "rotated"
    assert crypto.decrypt(Secret.objects.get(pk=secret["id"]).value_encrypted) == new_value
    response = admin_client.patch(url, {"name": "PARTNER_TOKEN"}, format="json")
    assert response.status_code == 200 and response.json()["name"] == "PARTNER_TOKEN"
    updates = list(AuditEvent.objects.filter(organization=org, event="secret.updated").order_by("seq"))
    assert updates[0].data == {"name": "API_TOKEN", "changed": ["description", "value"]}
    assert updates[1].data == {"name": "PARTNER_TOKEN", "previous_name": "API_TOKEN", "changed": ["name"]}
    create_secret(admin_client, name="OTHER")
    clash = admin_client.patch(url, {"name": "OTHER"}, format="json")
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "secret_name_taken"
    assert admin_client.patch(url, {"value": "ab"}, format="json").status_code == 400
    assert admin_client.patch(url, {"nope": 1}, format="json").status_code == 400
    assert admin_client.delete(url).status_code == 204
    assert admin_client.get(url).json()["error"]["code"] == "secret_not_found"
    assert admin_client.delete(url).status_code == 404
    (deleted,) = AuditEvent.objects.filter(organization=org, event="secret.deleted")
    assert deleted.data == {"name": "PARTNER_TOKEN"}
    dump = audit_dump(org)
    assert VALUE not in dump and new_value not in dump


def test_idempotent_create_replays_without_storing_the_value(admin_client, org):
    headers = {"HTTP_IDEMPOTENCY_KEY": "create-secret-1"}
    body = {"name": "API_TOKEN", "value": VALUE}
    first = admin_client.post(SECRETS, body, format="json", **headers)
    again = admin_client.post(SECRETS, body, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true" and again.json() == first.json()
    assert Secret.objects.filter(organization=org).count() == 1
    stored = json.dumps(list(IdempotencyRecord.objects.values("response_body")))
    assert VALUE not in stored
    reused = admin_client.post(SECRETS, {**body, "value": "different-value"}, format="json", **headers)
    assert reused.status_code == 422 and reused.json()["error"]["code"] == "idempotency_key_reused"


def test_secret_values_never_reach_the_logs(admin_client, caplog):
    import logging

    with caplog.at_level(logging.DEBUG):
        secret = create_secret(admin_client)
        admin_client.patch(f"{SECRETS}/{secret['id']}", {"value": VALUE + "-2"}, format="json")
        admin_client.post(SECRETS, {"name": "bad name", "value": VALUE}, format="json")
    assert VALUE not in caplog.text


def test_list_is_paginated(admin_client):
    for index in range(3):
        create_secret(admin_client, name=f"TOKEN_{index}")
    page = admin_client.get(f"{SECRETS}?limit=2&offset=1").json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 1
    assert [s["name"] for s in page["secrets"]] == ["TOKEN_1", "TOKEN_2"]
    assert admin_client.get(f"{SECRETS}?limit=0").status_code == 400


def test_other_organisations_secret_is_404(admin_client, outsider_jwt_client):
    secret = create_secret(admin_client)
    for method in ("get", "patch", "delete"):
        response = getattr(outsider_jwt_client, method)(f"{SECRETS}/{secret['id']}", {}, format="json")
        assert response.status_code == 404 and response.json()["error"]["code"] == "secret_not_found"
    assert outsider_jwt_client.get(SECRETS).json()["total"] == 0


# --- permissions ------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", [Role.MEMBER, Role.VIEWER])
def test_security_endpoints_are_admin_only(make_jwt_client, org, member, viewer, role):
    client = make_jwt_client(member if role == Role.MEMBER else viewer, org)
    calls = [
        client.get(POLICY),
        client.put(POLICY, {"allow_script_steps": False}, format="json"),
        client.get(SECRETS),
        client.post(SECRETS, {"name": "X_TOKEN", "value": VALUE}, format="json"),
        client.get(SIGNING),
        client.post(f"{SIGNING}/rotate", {}, format="json"),
    ]
    for response in calls:
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert SecurityPolicy.objects.filter(allow_script_steps=False).count() == 0


def test_api_key_needs_the_admin_scope(make_key_client, admin_client):
    secret = create_secret(admin_client)
    reader = make_key_client(["workflows:read", "workflows:write", "runs:read", "runs:write", "audit:read"])
    calls = [
        reader.get(POLICY),
        reader.put(POLICY, {"max_steps_per_run": 5}, format="json"),
        reader.get(SECRETS),
        reader.post(SECRETS, {"name": "X_TOKEN", "value": VALUE}, format="json"),
        reader.patch(f"{SECRETS}/{secret['id']}", {"value": VALUE}, format="json"),
        reader.delete(f"{SECRETS}/{secret['id']}"),
        reader.get(SIGNING),
        reader.post(f"{SIGNING}/rotate", {}, format="json"),
    ]
    for response in calls:
        assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"
    admin_key = make_key_client(["admin"])
    assert admin_key.put(POLICY, {"max_steps_per_run": 5}, format="json").json()["max_steps_per_run"] == 5
    assert admin_key.post(SECRETS, {"name": "X_TOKEN", "value": VALUE}, format="json").status_code == 201
    assert admin_key.get(SIGNING).status_code == 200


# --- signing secret ---------------------------------------------------------------------------------


def test_signing_secret_is_shown_and_stored_encrypted(admin_client, org):
    response = admin_client.get(SIGNING)
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    data = response.json()
    assert data["secret"].startswith("whsec_") and len(data["secret"]) == 6 + 64
    assert data["header"] == "X-Baton-Signature" and data["previous_secret_expires_at"] is None
    assert admin_client.get(SIGNING).json()["secret"] == data["secret"]  # stable
    assert signing.organization_signing_secret(org.id) == data["secret"]
    row = SigningSecret.objects.get(organization=org)
    assert data["secret"] not in row.secret_encrypted
    assert crypto.decrypt(row.secret_encrypted) == data["secret"]


def test_rotation_keeps_the_previous_secret_signing_during_the_grace(admin_client, org, admin):
    old = admin_client.get(SIGNING).json()["secret"]
    response = admin_client.post(f"{SIGNING}/rotate", {"grace_seconds": 3600}, format="json")
    assert response.status_code == 200, response.content
    data = response.json()
    new = data["secret"]
    assert new != old and new.startswith("whsec_") and data["previous_secret_expires_at"] is not None
    assert signing.organization_signing_secrets(org.id) == [new, old]
    body = b'{"event":"x"}'
    header = signing.sign(signing.organization_signing_secrets(org.id), body)
    assert signing.verify(new, body, header) and signing.verify(old, body, header)
    (event,) = AuditEvent.objects.filter(organization=org, event="signing_secret.rotated")
    assert event.data == {"grace_seconds": 3600} and event.actor == admin.id
    assert new not in audit_dump(org) and old not in audit_dump(org)
    # Without a grace period (the body may be empty) only the new secret signs.
    newest = admin_client.post(f"{SIGNING}/rotate", {"grace_seconds": 0}, format="json").json()["secret"]
    assert signing.organization_signing_secrets(org.id) == [newest]
    header = signing.sign(signing.organization_signing_secrets(org.id), body)
    assert not signing.verify(new, body, header)


def test_previous_secret_stops_signing_when_the_grace_ends(admin_client, org):
    from datetime import timedelta

    from django.utils import timezone

    admin_client.get(SIGNING)
    new = admin_client.post(f"{SIGNING}/rotate", format="json").json()["secret"]  # default grace 86400
    assert len(signing.organization_signing_secrets(org.id)) == 2
    SigningSecret.objects.filter(organization=org).update(
        previous_expires_at=timezone.now() - timedelta(seconds=1)
    )
    assert signing.organization_signing_secrets(org.id) == [new]
    assert admin_client.get(SIGNING).json()["previous_secret_expires_at"] is None


@pytest.mark.parametrize("grace", [-1, 7 * 86_400 + 1, "60", None, 1.5])
def test_rotation_validates_the_grace(admin_client, org, grace):
    response = admin_client.post(f"{SIGNING}/rotate", {"grace_seconds": grace}, format="json")
    assert response.status_code == 400 and "grace_seconds" in response.json()["error"]["details"]["fields"]
    assert not AuditEvent.objects.filter(organization=org, event="signing_secret.rotated").exists()


def test_secret_list_runs_no_query_per_row(admin_client):
    from django.test.utils import CaptureQueriesContext

    create_secret(admin_client, name="FIRST")

    def count() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(SECRETS).status_code == 200
        return len(captured.captured_queries)

    few = count()
    for index in range(10):
        create_secret(admin_client, name=f"TOKEN_{index}")
    assert count() == few
