import hashlib
import hmac
import zlib
from datetime import timedelta

import pytest
from django.db import connection
from django.test import RequestFactory, override_settings
from django.utils import timezone
from rest_framework.exceptions import AuthenticationFailed
from rest_framework.test import APIClient

from accounts import keys
from accounts.authentication import ApiKeyAuthentication
from accounts.choices import ALL_SCOPES, DEFAULT_KEY_SCOPES
from accounts.models import ApiKey
from accounts.principal import Principal
from accounts.services import api_key_create
from config.errors import Forbidden, InvalidRequest
from config.models import IdempotencyRecord
from tests.accounts.conftest import error_code, events
from tests.conftest import key_for, owner_principal

KEYS = "/api/v1/api-keys"


def client_with(raw, header="bearer"):
    client = APIClient()
    if header == "bearer":
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    else:
        client.credentials(HTTP_X_API_KEY=raw)
    return client


# --- the API --------------------------------------------------------------------------------


def test_create_returns_the_key_once_with_default_scopes(admin_client, org, admin):
    response = admin_client.post(KEYS, {"name": "CI"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert keys.is_well_formed(body["key"])
    assert body["scopes"] == sorted(DEFAULT_KEY_SCOPES)
    assert body["prefix"] == body["key"][:12] and body["last4"] == body["key"][-4:]
    assert body["created_by"]["id"] == admin.id
    listed = admin_client.get(KEYS).json()
    assert listed["total"] == 1
    entry = listed["api_keys"][0]
    assert set(entry) == {
        "id",
        "name",
        "prefix",
        "last4",
        "scopes",
        "created_at",
        "last_used_at",
        "expires_at",
        "revoked_at",
        "created_by",
    }
    assert body["key"] not in str(listed)
    [event] = events(org, "api_key.created")
    assert event.data["scopes"] == sorted(DEFAULT_KEY_SCOPES) and body["key"] not in str(event.data)


@pytest.mark.parametrize("header", ["bearer", "x-api-key"])
def test_new_key_authenticates_with_either_header(admin_client, org, header):
    raw = admin_client.post(KEYS, {"name": "k", "scopes": ["workflows:read"]}, format="json").json()["key"]
    response = client_with(raw, header).get("/api/v1/projects")
    assert response.status_code == 200
    assert ApiKey.objects.get(prefix=raw[:12]).last_used_at is not None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "k", "scopes": ["workflows:delete"]},
        {"name": "k", "scopes": []},
        {"name": "k", "scopes": "admin"},
        {"name": "k", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "k", "expires_at": "tomorrow"},
        {"scopes": ["admin"]},
        {"name": "k", "secret": "mine"},
    ],
)
def test_create_validates(admin_client, org, body):
    response = admin_client.post(KEYS, body, format="json")
    assert response.status_code == 400, response.json()
    assert error_code(response) == "invalid_request"
    assert not ApiKey.objects.filter(organization=org).exists()


def test_create_with_future_expiry(admin_client):
    when = (timezone.now() + timedelta(days=3)).isoformat()
    body = admin_client.post(KEYS, {"name": "k", "expires_at": when}, format="json").json()
    assert body["expires_at"] is not None


def test_create_is_idempotent_without_storing_the_secret(admin_client, org):
    first = admin_client.post(KEYS, {"name": "k"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = admin_client.post(KEYS, {"name": "k"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 201
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert keys.is_well_formed(first.json()["key"])
    assert again.json()["key"] is None  # shown once: a replay cannot show it again
    assert ApiKey.objects.filter(organization=org).count() == 1
    stored = IdempotencyRecord.objects.get(organization=org, key="abc-1")
    assert first.json()["key"] not in str(stored.response_body)


def test_revoke_stops_the_key_and_keeps_the_row(admin_client, org):
    created = admin_client.post(KEYS, {"name": "k"}, format="json").json()
    key_client = client_with(created["key"])
    assert key_client.get("/api/v1/projects").status_code == 200
    assert admin_client.delete(f"{KEYS}/{created['id']}").status_code == 204
    refused = key_client.get("/api/v1/projects")
    assert refused.status_code == 401 and error_code(refused) == "unauthorized"
    row = ApiKey.objects.get(pk=created["id"])
    assert row.revoked_at is not None
    assert admin_client.delete(f"{KEYS}/{created['id']}").status_code == 204  # idempotent
    assert len(events(org, "api_key.revoked")) == 1


def test_revoke_unknown_or_foreign_key_is_404(admin_client, other_org, outsider):
    foreign = api_key_create(
        organization=other_org, actor=owner_principal(other_org, outsider), name="theirs"
    )
    for key_id in (foreign.api_key.id, "key_missing"):
        response = admin_client.delete(f"{KEYS}/{key_id}")
        assert response.status_code == 404 and error_code(response) == "api_key_not_found"
    assert ApiKey.objects.get(pk=foreign.api_key.id).revoked_at is None


def test_expired_key_is_401(org, owner):
    created = api_key_create(
        organization=org,
        actor=owner_principal(org, owner),
        name="k",
        expires_at=timezone.now() + timedelta(seconds=30),
    )
    ApiKey.objects.filter(pk=created.api_key.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = client_with(created.key).get("/api/v1/me")
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_unknown_well_formed_key_is_401(db):
    response = client_with(keys.generate_key()).get("/api/v1/me")
    assert response.status_code == 401


def test_key_cannot_grant_scopes_it_lacks(org, owner):
    narrow = api_key_create(
        organization=org,
        actor=owner_principal(org, owner),
        name="narrow",
        scopes=["runs:read", "workflows:read"],
    ).api_key
    actor = Principal(organization=org, api_key=narrow, scopes=frozenset(narrow.scopes))
    with pytest.raises(Forbidden) as caught:
        api_key_create(organization=org, actor=actor, name="wider", scopes=["runs:write"])
    assert caught.value.code == "insufficient_scope"
    assert api_key_create(
        organization=org, actor=actor, name="same", scopes=["runs:read"]
    ).api_key.scopes == ["runs:read"]


def test_admin_scoped_key_may_grant_any_scope(make_key_client):
    response = make_key_client(["admin"]).post(KEYS, {"name": "all", "scopes": ALL_SCOPES}, format="json")
    assert response.status_code == 201
    assert response.json()["scopes"] == sorted(ALL_SCOPES)


def test_service_refuses_unknown_scope(org, owner):
    with pytest.raises(InvalidRequest):
        api_key_create(organization=org, actor=owner_principal(org, owner), name="k", scopes=["nope"])


# --- format, checksum, hashing --------------------------------------------------------------


def test_key_format_and_checksum():
    raw = keys.generate_key()
    assert raw.startswith("bt_live_") and len(raw) == 8 + 48
    body, crc = raw[8:48], raw[48:]
    assert crc == f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"
    assert keys.is_well_formed(raw)
    broken_crc = raw[:-1] + ("0" if raw[-1] != "0" else "1")
    assert not keys.is_well_formed(broken_crc)
    assert not keys.is_well_formed(raw.upper())
    assert not keys.is_well_formed(raw + "0")


@pytest.mark.parametrize(
    "raw",
    ["bt_live_short", "bt_live_" + "g" * 48, "bt_test_" + "0" * 48, "bt_live_" + "0" * 40 + "00000000"],
)
def test_malformed_key_is_refused_without_a_query(db, django_assert_num_queries, raw):
    request = RequestFactory().get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    with django_assert_num_queries(0), pytest.raises(AuthenticationFailed):
        ApiKeyAuthentication().authenticate(request)


def test_malformed_key_over_http_is_401(db):
    response = client_with("bt_live_" + "0" * 48, header="x-api-key").get("/api/v1/me")
    assert response.status_code == 401 and error_code(response) == "unauthorized"


def test_stored_hash_is_hmac_sha256_with_the_named_pepper(org, owner):
    from django.conf import settings

    created = api_key_create(organization=org, actor=owner_principal(org, owner), name="k")
    row = created.api_key
    assert row.pepper_id == settings.API_KEY_CURRENT_PEPPER
    pepper = settings.API_KEY_PEPPERS[row.pepper_id]
    assert row.key_hash == hmac.new(pepper.encode(), created.key.encode(), hashlib.sha256).hexdigest()


def test_rotating_secret_key_does_not_break_keys(org, owner):
    raw = key_for(org, owner)
    with override_settings(SECRET_KEY="a-completely-different-secret-key-" + "x" * 30):
        assert client_with(raw).get("/api/v1/me").status_code == 200


def test_rotating_peppers_still_accepts_old_keys(org, owner):
    from django.conf import settings

    old_raw = key_for(org, owner)
    rotated = {"p2": "n" * 64, **settings.API_KEY_PEPPERS}
    with override_settings(API_KEY_PEPPERS=rotated, API_KEY_CURRENT_PEPPER="p2"):
        assert client_with(old_raw).get("/api/v1/me").status_code == 200
        new = api_key_create(organization=org, actor=owner_principal(org, owner), name="after rotation")
        assert new.api_key.pepper_id == "p2"
        assert client_with(new.key).get("/api/v1/me").status_code == 200
    with override_settings(API_KEY_PEPPERS={"p3": "z" * 64}, API_KEY_CURRENT_PEPPER="p3"):
        assert client_with(old_raw).get("/api/v1/me").status_code == 401  # a retired pepper's keys stop


def test_no_plaintext_key_anywhere_in_the_database(admin_client, org):
    raw = admin_client.post(
        KEYS, {"name": "secret holder"}, format="json", HTTP_IDEMPOTENCY_KEY="dump-1"
    ).json()["key"]
    client_with(raw).get("/api/v1/me")  # used once: last_used_at, rate-limit rows, …
    secret_part = raw[8:48]
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump.extend(str(value) for row in cursor.fetchall() for value in row)
    text = "\n".join(dump)
    assert "secret holder" in text  # the dump does see the key's row
    assert raw not in text and secret_part not in text
