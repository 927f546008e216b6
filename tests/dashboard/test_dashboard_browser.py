"""The dashboard in a real browser (Debian's chromium through Playwright): run a workflow from its
generated form and watch it finish live, approve from the inbox, create an API key and use it, verify the
audit log; axe-core on every page (0 serious or critical violations) and no Content-Security-Policy
violation anywhere."""

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts.models import ApiKey
from runs.models import Run
from runs.services import run_create
from tests.conftest import PASSWORD
from tests.dashboard.support.asgi_server import asgi_server
from tests.dashboard.support.axe import serious_violations
from tests.dashboard.support.helpers import APPROVAL_STEPS, INPUTS, actor, make_workflow

pytestmark = pytest.mark.browser


def sign_in(page, base_url, email):
    page.goto(f"{base_url}/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("current-user")).to_have_text(email)


@pytest.fixture
def csp_errors(page):
    """Console messages about refused content: the pages must need nothing the policy forbids."""
    errors = []
    page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    return errors


@pytest.fixture
def asgi_url(transactional_db):
    with asgi_server() as url:
        yield url


def test_run_a_workflow_from_its_form_and_watch_it_complete_live(
    page, asgi_url, org, owner, manual_engine, settings, csp_errors
):
    settings.BATON_INSTANT_STEPS_MS = 0  # every step goes through the (manual) queue: the run waits for us
    workflow = make_workflow(org, owner, name="Greeter", inputs=INPUTS)
    sign_in(page, asgi_url, owner.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    page.get_by_role("link", name="Greeter").click()
    expect(page.get_by_test_id("dag").locator("g.node")).to_have_count(3)
    page.get_by_test_id("run-link").click()
    page.get_by_label("name").fill("Ada")
    page.get_by_label("count", exact=True).fill("2")
    page.get_by_label("mood", exact=True).select_option(label="busy")
    page.get_by_label("tags", exact=True).fill("one\ntwo")
    page.get_by_test_id("start-run").click()

    run = Run.objects.get(workflow=workflow)
    expect(page).to_have_url(f"{asgi_url}/runs/{run.id}/")
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    assert run.input_data == {
        "name": "Ada",
        "count": 2,
        "mood": "busy",
        "tags": ["one", "two"],
        "loud": False,
    }

    url_before = page.url
    # The engine runs one step at a time now; the page learns of each over the open event stream.
    with page.expect_request_finished(lambda r: "/live/" in r.url):
        assert manual_engine.drain(limit=1) == 1  # the first step only: the run is still running
    expect(page.locator('g.node[data-step="greet"]')).to_have_attribute("data-status", "completed")
    expect(page.get_by_test_id("run-status")).to_have_text("running")
    manual_engine.drain()
    expect(page.get_by_test_id("run-status")).to_have_text("completed", timeout=20_000)
    expect(page.locator('g.node[data-step="shout"]')).to_have_attribute("data-status", "completed")
    expect(page.get_by_text("Run " + run.id + " started.")).to_be_visible()  # the page was never reloaded
    assert page.url == url_before
    assert csp_errors == []


def test_create_a_workflow_from_a_template_and_see_its_dag(page, live_server, org, owner, csp_errors):
    from workflows.models import Workflow, WorkflowTemplate

    steps = [
        {"id": "fetch", "type": "transform", "config": {"value": 1}},
        {"id": "decide", "type": "approval", "config": {"message": "OK?"}, "depends_on": ["fetch"]},
    ]
    definition = {"name": "Review flow", "steps": steps}
    WorkflowTemplate.objects.create(organization=org, name="Review flow", definition=definition)
    sign_in(page, live_server.url, owner.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Workflows").click()
    page.get_by_test_id("template-gallery").click()
    card = page.get_by_test_id("template").filter(has_text="Review flow")
    card.get_by_label("Workflow name (optional)").fill("Our review")
    card.get_by_role("button", name="Create workflow").click()
    expect(page.get_by_role("heading", name="Our review")).to_be_visible()
    expect(page.get_by_test_id("dag").locator("g.node")).to_have_count(2)
    expect(page.get_by_test_id("dag").locator("path.edge")).to_have_count(1)
    assert Workflow.objects.filter(organization=org, name="Our review").exists()
    assert csp_errors == []


def test_the_definition_editor_checks_as_you_type(page, live_server, org, owner, csp_errors):
    workflow = make_workflow(org, owner)
    sign_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/workflows/{workflow.id}/")
    page.get_by_test_id("edit-link").click()
    editor = page.get_by_label("Definition (JSON)")
    editor.fill('{"name": "Greeter", "steps": [{"id": "a", "type": "nope"}]}')
    expect(page.get_by_test_id("definition-errors")).to_contain_text("nope")
    editor.fill('{"name": "Greeter", "steps": [{"id": "a", "type": "transform", "config": {"value": 2}}]}')
    expect(page.get_by_test_id("definition-ok")).to_be_visible()
    page.get_by_test_id("save-definition").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    expect(page.get_by_test_id("dag").locator("g.node")).to_have_count(1)
    assert csp_errors == []


def test_approve_from_the_inbox(page, live_server, org, owner, manual_engine, csp_errors):
    run = run_create(workflow=make_workflow(org, owner, name="Release", steps=APPROVAL_STEPS),
                     actor=actor(org, owner), input_data={})  # fmt: skip
    manual_engine.drain()
    sign_in(page, live_server.url, owner.email)
    expect(page.get_by_test_id("inbox-badge")).to_contain_text("1")
    page.get_by_role("link", name=re.compile("^Approvals")).click()
    item = page.get_by_test_id("inbox-item")
    expect(item).to_contain_text("Ship it?")
    item.get_by_label("Note (optional)").fill("Go")
    item.get_by_test_id("approve").click()
    expect(page.get_by_test_id("decided")).to_contain_text("Approved")
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert csp_errors == []


def test_answer_an_input_request(page, asgi_url, org, owner, manual_engine, csp_errors):
    # The run page opens the run's event stream: served by ASGI, it ends when the browser leaves.
    schema = {
        "type": "object",
        "required": ["size"],
        "properties": {"size": {"type": "integer", "title": "Size"}},
    }
    steps = [{"id": "ask", "type": "input", "config": {"message": "How many?", "schema": schema}}]
    run = run_create(
        workflow=make_workflow(org, owner, name="Ask", steps=steps), actor=actor(org, owner), input_data={}
    )
    manual_engine.drain()
    sign_in(page, asgi_url, owner.email)
    page.goto(f"{asgi_url}/approvals/")
    item = page.get_by_test_id("inbox-item")
    expect(item).to_contain_text("How many?")
    item.get_by_label("Size").fill("2.5")
    item.get_by_role("button", name="Send answer").click()
    expect(
        page.get_by_text("Enter a whole number.")
    ).to_be_visible()  # back on the run page, next to the field
    page.get_by_label("Size").fill("3")
    page.get_by_test_id("send-answer").click()
    expect(page.get_by_text("Answer sent.")).to_be_visible()
    manual_engine.drain()
    assert Run.objects.get(pk=run.pk).status == "completed"
    assert csp_errors == []


def test_create_an_api_key_and_use_it(page, live_server, org, owner, csp_errors):
    sign_in(page, live_server.url, owner.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("CI")
    page.get_by_role("checkbox", name=re.compile("runs:write")).uncheck()
    page.get_by_test_id("create-key").click()
    raw = page.get_by_test_id("new-key-value").inner_text().strip()
    assert raw.startswith("bt_")
    response = page.request.get(f"{live_server.url}/api/v1/runs", headers={"Authorization": f"Bearer {raw}"})
    assert response.status == 200
    key = ApiKey.objects.get(name="CI")
    assert "runs:write" not in key.scopes
    page.goto(f"{live_server.url}/settings/api-keys/")
    expect(page.get_by_test_id("new-key-value")).to_have_count(0)  # shown once: never stored to show again
    expect(page.get_by_test_id("key-table")).to_contain_text(key.prefix)
    assert csp_errors == []


def test_verify_the_audit_log(page, live_server, org, owner, csp_errors):
    sign_in(page, live_server.url, owner.email)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit").click()
    page.get_by_test_id("verify").click()
    expect(page.get_by_test_id("verify-result")).to_contain_text("The chain is intact")
    expect(page).to_have_url(f"{live_server.url}/audit/")  # swapped in place by htmx
    assert csp_errors == []


def test_timestamps_show_in_the_browsers_zone(browser, live_server, org, owner):
    make_workflow(org, owner)
    context = browser.new_context(timezone_id="Asia/Tokyo", locale="en-GB")
    page = context.new_page()
    sign_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/workflows/")
    stamp = page.locator("time").first
    expect(stamp).to_have_attribute("data-localized", "1")
    assert stamp.get_attribute("title").endswith("UTC")
    assert "UTC" not in stamp.inner_text()
    context.close()


def test_the_axe_check_finds_a_violation(browser):
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.set_content(
        '<html lang="en"><body><main><img src="chart.png"><button></button></main></body></html>'
    )
    ids = {v["id"] for v in serious_violations(page)}
    context.close()
    assert {"image-alt", "button-name"} <= ids


def test_every_page_has_no_serious_accessibility_violation(browser, asgi_url, org, owner, manual_engine):
    workflow = make_workflow(org, owner, name="Release", steps=APPROVAL_STEPS, inputs=INPUTS)
    run = run_create(workflow=workflow, actor=actor(org, owner), input_data={"name": "Ada"})
    greeter = make_workflow(org, owner, name="Greeter", tags=["demo"])
    for _ in range(3):
        run_create(workflow=greeter, actor=actor(org, owner), input_data={"name": "Ada"})
    manual_engine.drain()
    screenshots = {
        "/": "overview.png",
        f"/workflows/{workflow.id}/": "workflow.png",
        "/runs/": "runs.png",
        f"/runs/{run.id}/": "run.png",
        "/approvals/": "approvals.png",
    }
    context = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{asgi_url}/login/")
    assert serious_violations(page) == []
    sign_in(page, asgi_url, owner.email)
    pages = [
        "/", "/workflows/", "/templates/", f"/workflows/{workflow.id}/", f"/workflows/{workflow.id}/run/",
        f"/workflows/{workflow.id}/edit/", "/runs/", f"/runs/{run.id}/", "/approvals/",
        "/settings/", "/settings/api-keys/", "/settings/members/", "/audit/", "/profile/",
    ]  # fmt: skip
    found = {}
    shots = os.environ.get("BATON_SCREENSHOTS")  # `make screenshots`: the pictures in docs/dashboard.md
    for path in pages:
        page.goto(f"{asgi_url}{path}")
        violations = serious_violations(page)
        if violations:
            found[path] = violations
        if shots and path in screenshots:
            page.screenshot(path=str(Path(shots) / screenshots[path]), full_page=True)
    # A phone-sized screen too (approvals are decided from phones).
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(f"{asgi_url}/approvals/")
    phone = serious_violations(page)
    if phone:
        found["/approvals/ (phone)"] = phone
    assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
    context.close()
    assert found == {}
