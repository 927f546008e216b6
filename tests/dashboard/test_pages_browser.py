"""The workflow versions, schedules and settings pages in a real browser (Debian's chromium through
Playwright): create a schedule from its form and pause it, read a version diff; axe-core on every page
of this slice (0 serious or critical violations, also at phone width) and no CSP violation."""

import os
from pathlib import Path

import pytest
from playwright.sync_api import expect

from accounts.models import LlmProvider
from audit.models import AuditEvent
from runs.models import WorkflowSubscription
from tests.dashboard.support.axe import serious_violations
from tests.dashboard.support.helpers import GREET_STEPS, actor, make_workflow
from tests.dashboard.test_dashboard_browser import csp_errors, sign_in  # noqa: F401  (fixture)
from tests.factories import add_member
from workflows.models import Schedule
from workflows.services import workflow_update

pytestmark = pytest.mark.browser


def _two_versions(org, owner):
    workflow = make_workflow(org, owner, name="Greeter")
    steps = [
        *GREET_STEPS,
        {"id": "extra", "type": "transform", "config": {"value": 2}, "depends_on": ["done"]},
    ]
    definition = {"name": "Greeter", "steps": steps}
    workflow_update(workflow=workflow, actor=actor(org, owner), definition=definition, change_summary="More")
    return workflow


def test_create_a_schedule_and_pause_it(page, live_server, org, owner, csp_errors):  # noqa: F811
    workflow = make_workflow(org, owner, name="Nightly")
    sign_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/workflows/{workflow.id}/")
    page.get_by_role("navigation", name="Workflow").get_by_role("link", name="Schedules").click()
    page.get_by_label("Cron expression").fill("0 9 * * 1-5")
    page.get_by_label("Time zone").fill("Europe/Paris")
    page.get_by_label("Input (JSON object)").fill('{"name": "Ada"}')
    page.get_by_label("While the previous run is active").select_option("queue")
    page.get_by_test_id("create-schedule").click()
    schedule = Schedule.objects.get(workflow=workflow)
    row = page.get_by_test_id(f"schedule-{schedule.id}")
    expect(row).to_contain_text("0 9 * * 1-5")
    expect(row).to_contain_text("enabled")
    assert schedule.input_data == {"name": "Ada"} and schedule.overlap == "queue"
    # A bad cron is refused next to its field.
    page.get_by_label("Cron expression").fill("99 * * * *")
    page.get_by_test_id("create-schedule").click()
    expect(page.locator("#id_cron_expression ~ .field-error")).to_be_visible()
    page.get_by_test_id(f"pause-{schedule.id}").click()
    expect(page.get_by_test_id(f"schedule-{schedule.id}")).to_contain_text("paused")
    assert not Schedule.objects.get(pk=schedule.pk).enabled
    assert csp_errors == []


def test_see_what_changed_in_a_version(page, live_server, org, owner, csp_errors):  # noqa: F811
    workflow = _two_versions(org, owner)
    sign_in(page, live_server.url, owner.email)
    page.goto(f"{live_server.url}/workflows/{workflow.id}/")
    page.get_by_role("link", name="Changes in version 2").click()
    expect(page.get_by_test_id("diff-summary")).to_contain_text("Added 1 step")
    added = page.get_by_test_id("diff-table").locator("tr.diff-added")
    expect(added.first).to_contain_text("added")
    expect(page.get_by_test_id("diff-table")).to_contain_text('"id": "extra"')
    page.get_by_label("From version").select_option("2")
    page.get_by_label("To version").select_option("1")
    page.get_by_test_id("compare").click()
    expect(page.get_by_test_id("diff-summary")).to_contain_text("Removed 1 step")
    assert csp_errors == []


def test_every_new_page_has_no_serious_accessibility_violation(browser, live_server, org, owner):
    from workflows.schedules import schedule_create

    workflow = _two_versions(org, owner)
    schedule_create(workflow=workflow, actor=actor(org, owner), values={"cron_expression": "0 9 * * *"})
    provider = LlmProvider.objects.create(
        organization=org, name="Main", kind="openai", default_model="m",
        model_prices={"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    )  # fmt: skip
    follower = add_member(org, "member")
    WorkflowSubscription.objects.create(workflow=workflow, user=follower)
    event = AuditEvent.objects.filter(organization=org).latest("seq")
    context = browser.new_context(bypass_csp=True, viewport={"width": 1200, "height": 800})
    page = context.new_page()
    page.set_default_timeout(15_000)
    sign_in(page, live_server.url, owner.email)
    pages = [
        f"/workflows/{workflow.id}/", f"/workflows/{workflow.id}/versions/",
        f"/workflows/{workflow.id}/schedules/", f"/workflows/{workflow.id}/settings/", "/audit/",
        f"/workflows/{workflow.id}/subscribers/", "/settings/llm-providers/",
        f"/settings/llm-providers/{provider.id}/", "/settings/agents/", "/settings/secrets/",
        "/settings/security/", "/settings/usage/", f"/audit/{event.id}/",
    ]  # fmt: skip
    found = {}
    shots = os.environ.get("BATON_SCREENSHOTS")  # `make screenshots`: the pictures in docs/dashboard.md
    screenshots = {f"/workflows/{workflow.id}/versions/": "versions.png",
                   f"/workflows/{workflow.id}/schedules/": "schedules.png"}  # fmt: skip
    for path in pages:
        page.goto(f"{live_server.url}{path}")
        violations = serious_violations(page)
        if violations:
            found[path] = violations
        if shots and path in screenshots:
            page.screenshot(path=str(Path(shots) / screenshots[path]), full_page=True)
    page.set_viewport_size({"width": 375, "height": 740})
    for path in (f"/workflows/{workflow.id}/schedules/", f"/workflows/{workflow.id}/versions/"):
        page.goto(f"{live_server.url}{path}")
        violations = serious_violations(page)
        if violations:
            found[f"{path} (phone)"] = violations
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375, path
    # The settings page loads its subscribers (htmx); removing one swaps the section, CSRF and all.
    page.set_viewport_size({"width": 1200, "height": 800})
    page.goto(f"{live_server.url}/workflows/{workflow.id}/settings/")
    section = page.get_by_test_id("workflow-subscribers")
    expect(section).to_contain_text(follower.email)
    violations = serious_violations(page)
    if violations:
        found["settings with subscribers"] = violations
    section.get_by_test_id("remove-subscriber").click()
    expect(section).to_contain_text("Nobody is told by email")
    assert not WorkflowSubscription.objects.filter(workflow=workflow).exists()
    context.close()
    assert found == {}
