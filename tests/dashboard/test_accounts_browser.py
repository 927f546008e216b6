"""The accounts side of the dashboard in a real browser: turn on two-factor sign-in from the profile and
sign in with a code; invite a person and accept the invitation in a second browser context; follow a
workflow's failures. axe-core on each new page (0 serious or critical violations), no CSP violation."""

import time

import pyotp
import pytest
from playwright.sync_api import expect

from accounts.crypto import decrypt
from accounts.models import TwoFactor, User
from runs.models import WorkflowSubscription
from tests.conftest import PASSWORD
from tests.dashboard.support.axe import serious_violations
from tests.dashboard.support.helpers import make_workflow

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]


@pytest.fixture
def csp_errors(page):
    errors = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


def fill_login(page, base_url, email, password=PASSWORD):
    page.goto(f"{base_url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def no_violations(page):
    """axe-core on the current page (the page is loaded under the CSP: the script is added as a file)."""
    violations = serious_violations(page)
    assert violations == [], violations


def test_turn_on_two_factor_then_sign_in_with_a_code(browser, live_server, org, owner):
    context = browser.new_context(bypass_csp=True)  # axe-core is injected into the pages
    page = context.new_page()
    page.set_default_timeout(15_000)
    fill_login(page, live_server.url, owner.email)
    page.get_by_test_id("current-user").click()
    no_violations(page)
    page.get_by_test_id("enable-two-factor").click()
    expect(page.get_by_test_id("qr-code").locator("svg")).to_be_visible()
    no_violations(page)
    secret = page.get_by_test_id("totp-secret").inner_text().replace(" ", "")
    assert secret == decrypt(TwoFactor.objects.get(user=owner).secret_encrypted)
    totp = pyotp.TOTP(secret)
    page.get_by_label("Code from your authenticator app").fill(totp.now())
    page.get_by_test_id("confirm-two-factor").click()
    expect(page.get_by_test_id("recovery-codes").locator("li")).to_have_count(10)
    no_violations(page)

    page.get_by_test_id("sign-out").click()
    fill_login(page, live_server.url, owner.email)
    expect(page).to_have_url(f"{live_server.url}/login/code/")
    no_violations(page)
    page.get_by_label("Code from your authenticator app").fill(
        "000000" if totp.now() != "000000" else "111111"
    )
    page.get_by_test_id("submit-code").click()
    expect(page.get_by_test_id("login-error")).to_contain_text("not correct")
    # The code used to enrol is spent: the next time step's code signs in.
    page.get_by_label("Code from your authenticator app").fill(totp.at(time.time() + 30))
    page.get_by_test_id("submit-code").click()
    expect(page.get_by_test_id("current-user")).to_have_text(owner.email)
    expect(page).to_have_url(f"{live_server.url}/")
    context.close()


def test_invite_a_member_who_accepts_in_another_browser(browser, live_server, org, owner):
    admin_context = browser.new_context(bypass_csp=True)
    admin_page = admin_context.new_page()
    admin_page.set_default_timeout(15_000)
    fill_login(admin_page, live_server.url, owner.email)
    admin_page.goto(f"{live_server.url}/settings/members/")
    admin_page.get_by_label("Email").fill("newcomer@acme.test")
    admin_page.get_by_label("Role").last.select_option("member")
    admin_page.get_by_test_id("add-member").click()
    url = admin_page.get_by_test_id("invitation-url").inner_text().strip()
    assert url.startswith(f"{live_server.url}/invitation/")
    no_violations(admin_page)

    guest_context = browser.new_context(bypass_csp=True)
    guest = guest_context.new_page()
    guest.set_default_timeout(15_000)
    guest.goto(url)
    expect(guest.get_by_role("heading", name="Join Baton")).to_be_visible()
    no_violations(guest)
    guest.locator("#id_new_password1").fill("a brand new passphrase")
    guest.locator("#id_new_password2").fill("a brand new passphrase")
    guest.get_by_test_id("set-password").click()
    expect(guest.get_by_test_id("current-user")).to_have_text("newcomer@acme.test")
    assert User.objects.get(email="newcomer@acme.test").check_password("a brand new passphrase")
    # The link worked once.
    guest.goto(url)
    expect(guest.get_by_test_id("link-invalid")).to_be_visible()
    admin_page.goto(f"{live_server.url}/settings/members/")
    expect(admin_page.get_by_test_id("member-table")).not_to_contain_text("has not joined yet")
    guest_context.close()
    admin_context.close()


def test_follow_a_workflows_failures(page, live_server, org, owner, csp_errors):
    workflow = make_workflow(org, owner)
    fill_login(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/workflows/{workflow.id}/")
    section = page.get_by_test_id("workflow-notifications")
    section.get_by_role("button", name="Tell me when a run fails").click()
    expect(section.get_by_role("button", name="Stop telling me")).to_be_visible()
    expect(section).to_contain_text(f"Told by email when a run fails: {owner.name}.")
    assert WorkflowSubscription.objects.filter(workflow=workflow, user=owner).exists()
    expect(page).to_have_url(f"{live_server.url}/workflows/{workflow.id}/")  # swapped in place by htmx
    assert csp_errors == []
