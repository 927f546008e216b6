import pytest
from django.middleware.csrf import _get_new_csrf_string
from django.test import override_settings
from rest_framework.test import APIClient
from rest_framework_simplejwt.tokens import AccessToken

from accounts.authentication import ORG_CLAIM
from accounts.choices import Role
from accounts.models import Membership
from config.ratelimit import reset_rate_limits
from tests.accounts.conftest import error_code, events
from tests.conftest import PASSWORD
from tests.factories import add_member

TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"


@pytest.fixture(autouse=True)
def _fresh_login_counters(db):
    reset_rate_limits()
    yield
    reset_rate_limits()


def sign_in(client, **body):
    return client.post(TOKEN, body, format="json")


def test_sign_in_returns_tokens_carrying_the_organisation(api_client, owner, org):
    response = sign_in(api_client, email="owner@acme.test", password=PASSWORD)
    assert response.status_code == 200
    body = response.json()
    assert body["organization"]["id"] == org.id
    assert set(body["organization"]) >= {"id", "name", "plan", "limits", "retention_days"}
    assert AccessToken(body["access"])[ORG_CLAIM] == org.id
    me = APIClient()
    me.credentials(HTTP_AUTHORIZATION=f"Bearer {body['access']}")
    assert me.get("/api/v1/me").json()["user"]["email"] == "owner@acme.test"


def test_email_is_case_insensitive(api_client, owner, org):
    assert sign_in(api_client, email="  Owner@ACME.test ", password=PASSWORD).status_code == 200


def test_several_organisations_need_one_named(api_client, owner, org, other_org):
    add_member(other_org, Role.VIEWER, owner)
    response = sign_in(api_client, email="owner@acme.test", password=PASSWORD)
    assert response.status_code == 400
    assert error_code(response) == "organization_required"
    assert {o["id"] for o in response.json()["error"]["details"]["organizations"]} == {org.id, other_org.id}

    chosen = sign_in(api_client, email="owner@acme.test", password=PASSWORD, organization=other_org.id)
    assert chosen.status_code == 200
    assert AccessToken(chosen.json()["access"])[ORG_CLAIM] == other_org.id


def test_naming_an_organisation_one_is_not_in_is_refused(api_client, owner, org, other_org):
    response = sign_in(api_client, email="owner@acme.test", password=PASSWORD, organization=other_org.id)
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


def test_wrong_password_and_unknown_user_get_the_same_generic_401(api_client, owner, org):
    wrong = sign_in(api_client, email="owner@acme.test", password="nope-nope-nope")
    unknown = sign_in(api_client, email="nobody@acme.test", password="nope-nope-nope")
    assert wrong.status_code == unknown.status_code == 401
    assert error_code(wrong) == error_code(unknown) == "unauthorized"
    assert wrong.json()["error"]["message"] == unknown.json()["error"]["message"]


def test_failed_sign_in_is_audited_in_each_organisation_of_the_account(api_client, owner, org, other_org):
    add_member(other_org, Role.MEMBER, owner)
    sign_in(api_client, email="owner@acme.test", password="wrong-password!")
    for organization in (org, other_org):
        [event] = events(organization, "auth.login_failed")
        assert event.target_id == owner.id
        assert event.data["email"] == "owner@acme.test"
        assert event.ip == "127.0.0.1"
    assert "wrong-password!" not in str(events(org, "auth.login_failed")[0].data)


def test_inactive_user_cannot_sign_in(api_client, owner, org):
    owner.is_active = False
    owner.save()
    assert sign_in(api_client, email="owner@acme.test", password=PASSWORD).status_code == 401


def test_invited_user_without_password_cannot_sign_in(api_client, jwt_client, org):
    jwt_client.post("/api/v1/members", {"email": "new@acme.test"}, format="json")
    assert sign_in(api_client, email="new@acme.test", password="").status_code == 400
    assert sign_in(api_client, email="new@acme.test", password="anything-at-all").status_code == 401


def test_missing_fields_are_400(api_client, db):
    response = sign_in(api_client, email="owner@acme.test")
    assert response.status_code == 400
    assert "password" in response.json()["error"]["details"]["fields"]


@override_settings(BATON_LOGIN_LIMIT_PER_ACCOUNT=3, BATON_LOGIN_LIMIT_PER_IP=100)
def test_sign_in_attempts_are_limited_per_account(api_client, owner, org):
    for _ in range(3):
        assert sign_in(api_client, email="owner@acme.test", password="wrong-wrong-1").status_code == 401
    blocked = sign_in(api_client, email="owner@acme.test", password=PASSWORD)
    assert blocked.status_code == 429
    assert error_code(blocked) == "rate_limited"
    assert int(blocked["Retry-After"]) >= 1
    # Another account from the same address is not locked out.
    assert sign_in(api_client, email="someone@else.test", password="x-x-x-x-x-x").status_code == 401


@override_settings(BATON_LOGIN_LIMIT_PER_ACCOUNT=100, BATON_LOGIN_LIMIT_PER_IP=4)
def test_sign_in_attempts_are_limited_per_ip(api_client, owner, org):
    for n in range(4):
        assert sign_in(api_client, email=f"user{n}@x.test", password="wrong-wrong-1").status_code == 401
    assert sign_in(api_client, email="owner@acme.test", password=PASSWORD).status_code == 429
    elsewhere = APIClient(REMOTE_ADDR="10.9.8.7")
    assert sign_in(elsewhere, email="owner@acme.test", password=PASSWORD).status_code == 200


@override_settings(BATON_LOGIN_LIMIT_PER_ACCOUNT=3, BATON_LOGIN_LIMIT_PER_IP=100)
def test_success_clears_the_account_failures(api_client, owner, org):
    for _ in range(2):
        sign_in(api_client, email="owner@acme.test", password="wrong-wrong-1")
    assert sign_in(api_client, email="owner@acme.test", password=PASSWORD).status_code == 200
    for _ in range(2):
        sign_in(api_client, email="owner@acme.test", password="wrong-wrong-1")
    assert sign_in(api_client, email="owner@acme.test", password=PASSWORD).status_code == 200


def test_refresh_gives_a_new_access_token_for_the_same_organisation(api_client, owner, org):
    tokens = sign_in(api_client, email="owner@acme.test", password=PASSWORD).json()
    response = api_client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 200
    assert AccessToken(response.json()["access"])[ORG_CLAIM] == org.id
    assert response.json()["organization"]["id"] == org.id


def test_refresh_rechecks_membership(api_client, owner, org, admin):
    tokens = sign_in(api_client, email="admin@acme.test", password=PASSWORD).json()
    Membership.objects.filter(user=admin, organization=org).delete()
    response = api_client.post(REFRESH, {"refresh": tokens["refresh"]}, format="json")
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


@pytest.mark.parametrize("token", ["garbage", "access"])
def test_refresh_refuses_invalid_tokens(api_client, owner, org, token):
    tokens = sign_in(api_client, email="owner@acme.test", password=PASSWORD).json()
    value = tokens["access"] if token == "access" else "not-a-token"
    response = api_client.post(REFRESH, {"refresh": value}, format="json")
    assert response.status_code == 401


def test_jwt_of_a_removed_member_is_refused(make_jwt_client, org, admin):
    client = make_jwt_client(admin, org)
    assert client.get("/api/v1/me").status_code == 200
    Membership.objects.filter(user=admin, organization=org).delete()
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert error_code(response) == "unauthorized"


def test_jwt_for_another_organisation_is_refused(make_jwt_client, org, admin, other_org):
    response = make_jwt_client(admin, other_org).get("/api/v1/me")
    assert response.status_code == 401


def test_session_needs_csrf_for_unsafe_methods(session_client, org):
    assert session_client.get("/api/v1/projects").status_code == 200
    refused = session_client.post("/api/v1/projects", {"name": "No token"}, format="json")
    assert refused.status_code == 403
    assert error_code(refused) == "csrf_failed"
    token = _get_new_csrf_string()
    session_client.cookies["csrftoken"] = token
    accepted = session_client.post(
        "/api/v1/projects", {"name": "With token"}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201
