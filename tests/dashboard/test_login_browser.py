"""Signing in and out of the dashboard in a real browser (Debian's chromium through Playwright)."""

import re

import pytest
from playwright.sync_api import expect

from tests.conftest import PASSWORD

# timeout: chromium: a page that never loads would hang the test
pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]


def fill_login(page, base_url, email, password):
    page.goto(f"{base_url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_sign_in_shows_the_organisation_then_sign_out(page, live_server, org, owner):
    fill_login(page, live_server.url, owner.email, PASSWORD)
    expect(page.get_by_test_id("org-name")).to_have_text("Acme")
    expect(page.get_by_test_id("org-role")).to_have_text("Owner")
    expect(page.get_by_role("link", name=re.compile("Swagger UI"))).to_have_attribute("href", "/api/v1/docs")

    page.get_by_test_id("sign-out").click()
    expect(page).to_have_url(f"{live_server.url}/login/")
    expect(page.get_by_text("You have signed out.")).to_be_visible()
    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(re.compile(r"/login/\?next=/$"))


def test_wrong_password_shows_an_error(page, live_server, org, owner):
    fill_login(page, live_server.url, owner.email, "not-the-password")
    expect(page.get_by_test_id("login-error")).to_have_text("The email address or password is incorrect.")
    expect(page.get_by_test_id("org-name")).to_have_count(0)


def test_stylesheet_is_served(page, live_server, db):
    response = page.goto(f"{live_server.url}/login/")
    assert response.status == 200
    css = page.request.get(f"{live_server.url}/static/baton/baton.css")
    assert css.status == 200 and "--accent" in css.text()
