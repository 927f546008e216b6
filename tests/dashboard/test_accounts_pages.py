"""The accounts side of the dashboard: the profile (name, email notifications), two-factor sign-in (enrol,
sign in with a code or a recovery code, limits, turn off, the organisation's requirement, JWTs) and the
organisation's notification webhook (write-only)."""

import time

import pyotp
import pytest
from django.test import Client

from accounts.models import Organization, TwoFactor, User
from accounts.twofactor import STEP_SECONDS
from audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.dashboard.support.helpers import signed_in


def events(org, name):
    return list(AuditEvent.objects.filter(organization=org, event=name).order_by("seq"))


def code_for(user, offset_steps=0):
    from accounts.crypto import decrypt

    secret = decrypt(TwoFactor.objects.get(user=user).secret_encrypted)
    return pyotp.TOTP(secret).at(time.time() + offset_steps * STEP_SECONDS)


def enrol(client, user) -> list[str]:
    """Turn two-factor on through the pages; returns the recovery codes."""
    page = client.get("/profile/two-factor/")
    assert page.status_code == 200
    done = client.post("/profile/two-factor/", {"code": code_for(user)})
    assert done.status_code == 200, done.content.decode()
    return list(done.context["recovery_codes"])


def sign_in(email, password=PASSWORD) -> tuple[Client, object]:
    client = Client()
    return client, client.post("/login/", {"email": email, "password": password})


# --- profile -------------------------------------------------------------------------------------------


def test_profile_sets_the_name_shown_in_the_nav_and_the_members_list(org, owner, member):
    client = signed_in(member, org)
    data = {"name": "Grace Hopper", "notify_requests_email": "on"}
    assert client.post("/profile/", data).status_code == 302
    member.refresh_from_db()
    assert (member.name, member.notify_requests_email, member.notify_failures_email) == (
        "Grace Hopper",
        True,
        False,
    )
    assert 'data-testid="current-user-name">Grace Hopper<' in client.get("/").content.decode()
    assert "Grace Hopper" in signed_in(owner, org).get("/settings/members/").content.decode()
    too_long = client.post("/profile/", {"name": "x" * 151})
    assert too_long.status_code == 400 and 'class="field-error"' in too_long.content.decode()


def test_profile_is_signed_in_only(db):
    assert Client().get("/profile/").status_code == 302
    assert Client().post("/profile/two-factor/").status_code == 302


# --- two-factor: enrol, sign in, turn off --------------------------------------------------------------


def test_enrol_shows_a_qr_code_and_the_secret_then_recovery_codes_once(org, owner):
    client = signed_in(owner, org)
    page = client.get("/profile/two-factor/").content.decode()
    assert "<svg" in page and "otpauth://totp/Baton:" in page and 'data-testid="totp-secret"' in page
    row = TwoFactor.objects.get(user=owner)
    assert row.confirmed_at is None and row.secret_encrypted.startswith("gAAAA")  # a Fernet token
    from accounts.crypto import decrypt

    plain = decrypt(row.secret_encrypted)  # shown grouped by four characters
    assert plain not in row.secret_encrypted and plain[:4] + " " + plain[4:8] in page
    wrong = client.post(
        "/profile/two-factor/", {"code": "000000" if code_for(owner) != "000000" else "111111"}
    )
    assert wrong.status_code == 400 and "not correct" in wrong.content.decode()
    for digits in ("³" * 6, "١٢٣٤٥٦"):  # isdigit() yes; not a code
        other = client.post("/profile/two-factor/", {"code": digits})
        assert other.status_code == 400 and "not correct" in other.content.decode()
    codes = enrol(client, owner)
    assert len(codes) == 10 and len(set(codes)) == 10
    row.refresh_from_db()
    assert row.confirmed_at is not None and all(c not in str(row.recovery_hashes) for c in codes)
    [event] = events(org, "user.2fa_enabled")
    assert (event.actor, event.target_id, event.data) == (owner.id, owner.id, {"email": owner.email})
    # Already on: the page sends the person back to the profile, which says so.
    assert client.get("/profile/two-factor/").status_code == 302
    assert "<strong>On.</strong>" in client.get("/profile/").content.decode()


def test_sign_in_asks_for_the_code_once_the_password_is_right(org, owner):
    codes = enrol(signed_in(owner, org), owner)
    client, response = sign_in(owner.email)
    assert response.status_code == 302 and response["Location"] == "/login/code/"
    assert client.get("/").status_code == 302  # not signed in yet
    wrong = client.post("/login/code/", {"code": "12345"})
    assert wrong.status_code == 400
    assert events(org, "auth.login_failed")[-1].data["reason"] == "bad_2fa_code"
    # The code used to enrol was accepted once: the next step's code signs in.
    done = client.post("/login/code/", {"code": code_for(owner, 1)})
    assert done.status_code == 302 and done["Location"] == "/"
    assert client.get("/").status_code == 200
    # A recovery code works once.
    other, _ = sign_in(owner.email)
    assert other.post("/login/code/", {"code": codes[0].upper()}).status_code == 302
    again, _ = sign_in(owner.email)
    assert again.post("/login/code/", {"code": codes[0]}).status_code == 400


def test_a_code_is_accepted_once(org, owner):
    enrol(signed_in(owner, org), owner)
    first, _ = sign_in(owner.email)
    code = code_for(owner, 1)
    assert first.post("/login/code/", {"code": code}).status_code == 302
    second, _ = sign_in(owner.email)
    assert second.post("/login/code/", {"code": code}).status_code == 400


def test_codes_are_rate_limited_like_passwords(org, owner, settings):
    settings.BATON_LOGIN_LIMIT_PER_ACCOUNT = 3
    enrol(signed_in(owner, org), owner)
    client, _ = sign_in(owner.email)
    statuses = [client.post("/login/code/", {"code": "999999x"}).status_code for _ in range(4)]
    assert statuses == [400, 400, 400, 429]
    assert client.post("/login/code/", {"code": code_for(owner, 1)}).status_code == 429


def test_the_code_step_expires(org, owner, monkeypatch):
    enrol(signed_in(owner, org), owner)
    client, _ = sign_in(owner.email)
    later = time.time() + 301
    monkeypatch.setattr("accounts.views.time.time", lambda: later)
    response = client.post("/login/code/", {"code": code_for(owner, 1)})
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert Client().get("/login/code/")["Location"] == "/login/"  # no password given at all


def test_turn_off_needs_the_password_and_a_code(org, owner):
    client = signed_in(owner, org)
    enrol(client, owner)
    refused = client.post("/profile/two-factor/disable/", {"password": "wrong", "code": code_for(owner, 1)})
    assert refused.status_code == 302 and TwoFactor.objects.filter(user=owner).exists()
    done = client.post("/profile/two-factor/disable/", {"password": PASSWORD, "code": code_for(owner, 1)})
    assert done.status_code == 302 and not TwoFactor.objects.filter(user=owner).exists()
    assert events(org, "user.2fa_disabled")[0].data == {"email": owner.email}
    _, response = sign_in(owner.email)
    assert response["Location"] == "/"  # no code asked any more


def test_jwt_needs_the_code_too(org, owner):
    from rest_framework.test import APIClient

    enrol(signed_in(owner, org), owner)
    api = APIClient()
    body = {"email": owner.email, "password": PASSWORD}
    missing = api.post("/api/v1/auth/token", body, format="json")
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "otp_required"
    wrong = api.post("/api/v1/auth/token", {**body, "otp": "000001"}, format="json")
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_code"
    assert (
        api.post("/api/v1/auth/token", {**body, "otp": code_for(owner, 1)}, format="json").status_code == 200
    )


# --- the organisation's requirement --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("persona", "sent_to_enrol"), [("owner", True), ("admin", True), ("member", True), ("viewer", False)]
)
def test_required_two_factor_sends_those_without_it_to_enrol(request, org, owner, persona, sent_to_enrol):
    user = request.getfixturevalue(persona)
    Organization.objects.filter(pk=org.pk).update(require_two_factor=True)
    client = signed_in(user, org)
    response = client.get("/runs/")
    if sent_to_enrol:
        assert response.status_code == 302 and response["Location"] == "/profile/two-factor/"
        assert client.get("/profile/").status_code == 200  # where they can enrol
        enrol(client, user)
        assert client.get("/runs/").status_code == 200
    else:
        assert response.status_code == 200


def test_admin_requires_two_factor_and_sets_the_webhook_write_only(org, owner, admin, member):
    client = signed_in(admin, org)
    enrol(client, admin)  # or the requirement would send this admin to enrol
    data = {"name": org.name, "plan": org.plan, "retention_days": org.retention_days}
    url = "https://hooks.example.com/services/T000/B000/XXXX"
    saved = client.post("/settings/", {**data, "require_two_factor": "on", "notification_webhook_url": url})
    assert saved.status_code == 302
    org.refresh_from_db()
    assert org.require_two_factor and org.notification_webhook_encrypted
    assert url not in org.notification_webhook_encrypted
    page = client.get("/settings/").content.decode()
    assert url not in page and "Notification webhook: set" in page
    [event] = events(org, "organization.updated")
    assert event.actor == admin.id
    assert event.data["changes"] == {
        "require_two_factor": {"from": False, "to": True},
        "notification_webhook": {"from": "none", "to": "set"},
    }
    assert url not in str(AuditEvent.objects.values_list("data", flat=True))
    # Saving without a URL keeps it; a bad URL is refused; removing clears it.
    client.post("/settings/", {**data, "require_two_factor": "on"})
    org.refresh_from_db()
    assert org.notification_webhook_encrypted
    bad = client.post("/settings/", {**data, "notification_webhook_url": "ftp://example.com/x"})
    assert bad.status_code == 400
    client.post("/settings/", {**data, "require_two_factor": "on", "remove_notification_webhook": "on"})
    org.refresh_from_db()
    assert org.notification_webhook_encrypted == ""
    Organization.objects.filter(pk=org.pk).update(require_two_factor=False)
    assert signed_in(member, org).post("/settings/", {**data, "require_two_factor": ""}).status_code == 403


def test_invited_user_without_password_cannot_enrol_or_sign_in(org, admin):
    client = signed_in(admin, org)
    client.post("/settings/members/", {"email": "new@acme.test", "role": "member"})
    assert not User.objects.get(email="new@acme.test").has_usable_password()
    _, response = sign_in("new@acme.test", "anything at all")
    assert response.status_code == 400


def test_turning_off_is_limited_like_signing_in(org, owner, settings):
    settings.BATON_LOGIN_LIMIT_PER_ACCOUNT = 2
    client = signed_in(owner, org)
    enrol(client, owner)
    for _ in range(3):
        client.post("/profile/two-factor/disable/", {"password": "wrong", "code": "123456"})
    response = client.post(
        "/profile/two-factor/disable/", {"password": PASSWORD, "code": code_for(owner, 1)}, follow=True
    )
    assert "Too many" in response.content.decode() and TwoFactor.objects.filter(user=owner).exists()
