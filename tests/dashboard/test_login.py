"""Dashboard sign-in, sign-out and organisation switching through Django's test client (CSRF on)."""

import pytest
from django.test import Client

from accounts.authentication import SESSION_ORG_KEY
from accounts.choices import Role
from audit.models import AuditEvent
from tests.conftest import PASSWORD
from tests.factories import UserFactory, add_member, make_org


@pytest.fixture
def browser_client():
    return Client(enforce_csrf_checks=True)


def sign_in(client, email, password, next_url=None):
    client.get("/login/")
    data = {"email": email, "password": password, "csrfmiddlewaretoken": client.cookies["csrftoken"].value}
    if next_url:
        data["next"] = next_url
    return client.post("/login/", data)


def test_login_page_renders_form_with_csrf_token(browser_client):
    response = browser_client.get("/login/")
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in body and 'type="email"' in body and 'type="password"' in body


def test_post_without_csrf_token_is_refused(browser_client, org, owner):
    response = browser_client.post("/login/", {"email": owner.email, "password": PASSWORD})
    assert response.status_code == 403
    assert "_auth_user_id" not in browser_client.session


def test_sign_in_sets_session_organisation_and_lands_on_overview(browser_client, org, owner):
    response = sign_in(browser_client, "OWNER@acme.test", PASSWORD)
    assert response.status_code == 302 and response["Location"] == "/"
    assert browser_client.session[SESSION_ORG_KEY] == org.id
    page = browser_client.get("/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "Acme" in body and "Owner" in body and "/api/v1/docs" in body


def test_sign_in_follows_safe_next_but_not_foreign_one(browser_client, org, owner):
    assert sign_in(browser_client, owner.email, PASSWORD, "/api/v1/docs")["Location"] == "/api/v1/docs"
    browser_client.post("/logout/", {"csrfmiddlewaretoken": browser_client.cookies["csrftoken"].value})
    assert sign_in(browser_client, owner.email, PASSWORD, "https://evil.test/")["Location"] == "/"


def test_wrong_password_shows_error_and_audits_in_each_organisation(browser_client, org, owner):
    second = make_org(name="Second", owner=UserFactory())
    add_member(second, Role.VIEWER, owner)
    response = sign_in(browser_client, owner.email, "wrong-password")
    assert response.status_code == 400
    assert "The email address or password is incorrect." in response.content.decode()
    assert "_auth_user_id" not in browser_client.session
    events = AuditEvent.objects.filter(event="auth.login_failed", target_id=owner.id)
    assert sorted(e.organization_id for e in events) == sorted([org.id, second.id])
    assert all(e.data["reason"] == "bad_password" for e in events)


def test_unknown_email_gets_the_same_message(browser_client, org):
    response = sign_in(browser_client, "nobody@acme.test", PASSWORD)
    assert response.status_code == 400
    assert "The email address or password is incorrect." in response.content.decode()
    assert not AuditEvent.objects.filter(event="auth.login_failed").exists()


def test_repeated_failures_lock_the_account(browser_client, org, owner, settings):
    settings.BATON_LOGIN_LIMIT_PER_ACCOUNT = 3
    for _ in range(3):
        assert sign_in(browser_client, owner.email, "wrong-password").status_code == 400
    response = sign_in(browser_client, owner.email, PASSWORD)
    assert response.status_code == 429
    assert "Too many" in response.content.decode()
    assert "_auth_user_id" not in browser_client.session


def test_overview_requires_sign_in(browser_client):
    response = browser_client.get("/")
    assert response.status_code == 302 and response["Location"].startswith("/login/?next=/")


def test_logout_is_post_only_and_ends_the_session(browser_client, org, owner):
    sign_in(browser_client, owner.email, PASSWORD)
    assert browser_client.get("/logout/").status_code == 200  # a confirmation page, still signed in
    assert browser_client.get("/").status_code == 200
    response = browser_client.post(
        "/logout/", {"csrfmiddlewaretoken": browser_client.cookies["csrftoken"].value}
    )
    assert response.status_code == 302 and response["Location"] == "/login/"
    assert browser_client.get("/").status_code == 302


def test_member_of_several_organisations_can_switch(browser_client, org, owner, other_org):
    add_member(other_org, Role.MEMBER, owner)
    sign_in(browser_client, owner.email, PASSWORD)
    assert browser_client.session[SESSION_ORG_KEY] == org.id
    token = browser_client.cookies["csrftoken"].value
    response = browser_client.post(
        "/organization/switch/", {"organization": other_org.id, "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302
    assert browser_client.session[SESSION_ORG_KEY] == other_org.id
    body = browser_client.get("/").content.decode()
    assert "Other" in body and "Member" in body and "Switched to Other." in body


def test_cannot_switch_to_an_organisation_one_is_not_in(browser_client, org, owner, other_org):
    sign_in(browser_client, owner.email, PASSWORD)
    token = browser_client.cookies["csrftoken"].value
    browser_client.post("/organization/switch/", {"organization": other_org.id, "csrfmiddlewaretoken": token})
    assert browser_client.session[SESSION_ORG_KEY] == org.id
    assert "You are not a member of that organisation." in browser_client.get("/").content.decode()


def test_session_switch_reaches_the_api(browser_client, org, owner, other_org):
    add_member(other_org, Role.VIEWER, owner)
    sign_in(browser_client, owner.email, PASSWORD)
    token = browser_client.cookies["csrftoken"].value
    browser_client.post("/organization/switch/", {"organization": other_org.id, "csrfmiddlewaretoken": token})
    me = browser_client.get("/api/v1/me")
    assert me.status_code == 200, me.content
    assert other_org.id in me.content.decode()
