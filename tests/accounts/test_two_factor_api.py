"""The organisation's "require two-factor sign-in" holds for the API too: a person who must enrol and has
not is refused (403 two_factor_required) with a dashboard session or a user JWT; API keys are not people
and are unaffected (docs/authentication.md)."""

import time

import pyotp
import pytest
from rest_framework.test import APIClient

from accounts.crypto import decrypt
from accounts.models import Organization, TwoFactor
from accounts.twofactor import STEP_SECONDS, two_factor_begin, two_factor_confirm
from config.ratelimit import reset_rate_limits
from tests.conftest import PASSWORD, client_with_jwt, client_with_key

WORKFLOWS = "/api/v1/workflows"
TOKEN = "/api/v1/auth/token"
REFRESH = "/api/v1/auth/token/refresh"


@pytest.fixture(autouse=True)
def _fresh_login_counters(db):
    reset_rate_limits()
    yield
    reset_rate_limits()


@pytest.fixture
def required(org):
    Organization.objects.filter(pk=org.pk).update(require_two_factor=True)
    org.refresh_from_db()
    return org


def session_of(user) -> APIClient:
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    return client


def turn_on(user) -> None:
    two_factor_begin(user=user)
    secret = decrypt(TwoFactor.objects.get(user=user).secret_encrypted)
    two_factor_confirm(user=user, code=pyotp.TOTP(secret, interval=STEP_SECONDS).at(time.time()))


def assert_two_factor_required(response, org):
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "two_factor_required" and error["status"] == 403
    assert org.name in error["message"] and "/profile/two-factor/" in error["message"]


@pytest.mark.parametrize("persona", ["owner", "admin", "member"])
@pytest.mark.parametrize("credential", ["session", "jwt"])
def test_person_who_must_enrol_is_refused_until_they_do(request, required, persona, credential):
    user = request.getfixturevalue(persona)
    client = session_of(user) if credential == "session" else client_with_jwt(user, required)
    assert_two_factor_required(client.get(WORKFLOWS), required)
    assert_two_factor_required(client.get("/api/v1/runs"), required)
    turn_on(user)
    assert client.get(WORKFLOWS).status_code == 200


@pytest.mark.parametrize("credential", ["session", "jwt"])
def test_viewers_are_not_asked(required, viewer, credential):
    client = session_of(viewer) if credential == "session" else client_with_jwt(viewer, required)
    assert client.get(WORKFLOWS).status_code == 200


def test_api_keys_are_not_asked(required, owner):
    client = client_with_key(required, owner, scopes=["workflows:read", "workflows:write"])
    assert client.get(WORKFLOWS).status_code == 200
    created = client.post(WORKFLOWS, {"name": "Keyed", "definition": {"steps": []}}, format="json")
    assert created.status_code != 403, created.content


def test_without_the_requirement_nobody_is_asked(org, member):
    assert client_with_jwt(member, org).get(WORKFLOWS).status_code == 200
    assert session_of(member).get(WORKFLOWS).status_code == 200


def test_refused_writes_change_nothing(required, member):
    from workflows.models import Workflow

    client = client_with_jwt(member, required)
    response = client.post(WORKFLOWS, {"name": "Nope", "definition": {"steps": []}}, format="json")
    assert_two_factor_required(response, required)
    assert not Workflow.objects.exists()


def test_the_requirement_follows_the_tokens_organisation(required, other_org, outsider, member):
    from tests.factories import add_member

    add_member(other_org, "member", user=member)
    assert client_with_jwt(member, other_org).get(WORKFLOWS).status_code == 200
    assert_two_factor_required(client_with_jwt(member, required).get(WORKFLOWS), required)


def sign_in(user, **body):
    return APIClient().post(TOKEN, {"email": user.email, "password": PASSWORD, **body}, format="json")


@pytest.mark.parametrize("persona", ["owner", "admin", "member"])
def test_no_token_is_issued_to_a_person_who_must_enrol(request, required, persona):
    user = request.getfixturevalue(persona)
    assert_two_factor_required(sign_in(user), required)
    two_factor_begin(user=user)
    secret = decrypt(TwoFactor.objects.get(user=user).secret_encrypted)
    recovery = two_factor_confirm(user=user, code=pyotp.TOTP(secret, interval=STEP_SECONDS).at(time.time()))
    response = sign_in(user, otp=recovery[0])
    assert response.status_code == 200, response.content
    client = APIClient(headers={"Authorization": f"Bearer {response.json()['access']}"})
    assert client.get(WORKFLOWS).status_code == 200


def test_viewers_still_get_tokens(required, viewer):
    assert sign_in(viewer).status_code == 200


def test_the_refusal_at_sign_in_follows_the_chosen_organisation(required, other_org, member):
    from tests.factories import add_member

    add_member(other_org, "member", user=member)
    assert sign_in(member, organization=other_org.id).status_code == 200
    assert_two_factor_required(sign_in(member, organization=required.id), required)
    choose = sign_in(member)
    assert choose.status_code == 400 and choose.json()["error"]["code"] == "organization_required"


def test_a_refresh_token_from_before_the_requirement_is_refused(org, member):
    refresh = sign_in(member).json()["refresh"]
    Organization.objects.filter(pk=org.pk).update(require_two_factor=True)
    org.refresh_from_db()
    assert_two_factor_required(APIClient().post(REFRESH, {"refresh": refresh}, format="json"), org)
    turn_on(member)
    assert APIClient().post(REFRESH, {"refresh": refresh}, format="json").status_code == 200


@pytest.mark.parametrize("otp", ["³" * 6, "١٢٣٤٥٦"])
def test_a_code_of_other_scripts_digits_is_a_wrong_code(owner, otp):
    turn_on(owner)
    response = sign_in(owner, otp=otp)
    assert response.status_code == 401, response.content
    assert response.json()["error"]["code"] == "invalid_code"
