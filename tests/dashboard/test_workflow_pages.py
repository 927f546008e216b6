"""A workflow's versions diff, settings (concurrency, retention, webhook) and schedules in the dashboard,
per role, through the API's services (docs/dashboard.md)."""

import re

from audit.models import AuditEvent
from tests.dashboard.support.helpers import GREET_STEPS, actor, make_workflow, signed_in
from workflows.models import Schedule, Workflow
from workflows.services import workflow_update

SCHEDULE = {"cron_expression": "@daily", "timezone": "UTC", "catchup": "none",
            "catchup_window_seconds": "3600", "overlap": "skip"}  # fmt: skip


def _two_versions(org, owner):
    workflow = make_workflow(org, owner)
    steps = [
        *GREET_STEPS,
        {"id": "extra", "type": "transform", "config": {"value": 2}, "depends_on": ["done"]},
    ]
    definition = {"name": workflow.name, "steps": steps}
    workflow_update(workflow=workflow, actor=actor(org, owner), definition=definition, change_summary="more")
    return workflow


# --- versions diff ---------------------------------------------------------------------------------------


def test_version_diff_is_a_readable_line_diff_with_the_summary(org, owner, viewer):
    workflow = _two_versions(org, owner)
    client = signed_in(viewer, org)  # viewers read versions
    response = client.get(f"/workflows/{workflow.id}/versions/")
    assert response.status_code == 200
    body = response.content.decode()
    assert "Added 1 step" in body
    assert body.count('class="diff-added"') >= 5 and 'class="diff-removed"' not in body
    assert "&quot;extra&quot;" in body and "added</td>" in body  # the change is a word, not only a colour
    assert 'class="diff-hunk"' in body and "“more”" in body
    # Chosen versions, either way round; the same version twice says so.
    reverse = client.get(f"/workflows/{workflow.id}/versions/?v1=2&v2=1").content.decode()
    assert "Removed 1 step" in reverse and 'class="diff-removed"' in reverse
    same = client.get(f"/workflows/{workflow.id}/versions/?v1=1&v2=1").content.decode()
    assert "the same definition" in same
    assert client.get(f"/workflows/{workflow.id}/versions/?v1=9").status_code == 404
    assert client.get(f"/workflows/{workflow.id}/versions/?v1=x").status_code == 400


def test_detail_links_each_version_to_its_changes(org, owner):
    workflow = _two_versions(org, owner)
    body = signed_in(owner, org).get(f"/workflows/{workflow.id}/").content.decode()
    assert f"/workflows/{workflow.id}/versions/?v1=1&amp;v2=2" in body
    assert f'href="/workflows/{workflow.id}/schedules/"' in body


def test_line_diff_of_key_order_changes_is_empty():
    from workflows.diff import definition_line_diff

    rows, cut = definition_line_diff({"a": 1, "b": [1, 2]}, {"b": [1, 2], "a": 1})
    assert rows == [] and not cut
    rows, cut = definition_line_diff({"a": list(range(50))}, {"a": list(range(1, 51))}, limit=10)
    assert len(rows) == 10 and cut


# --- settings --------------------------------------------------------------------------------------------


def test_member_changes_concurrency_retention_and_webhook(org, owner, member):
    workflow = make_workflow(org, owner)
    client = signed_in(member, org)
    url = f"/workflows/{workflow.id}/settings/"
    page = client.get(url).content.decode()
    assert 'name="concurrency_limit"' in page and "hook-urls" not in page  # the hook URL is for admins
    response = client.post(
        url,
        {"concurrency_limit": "2", "concurrency_key": "{{ inputs.name }}", "on_limit": "reject",
         "retention_days": "30", "webhook_enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    workflow.refresh_from_db()
    assert workflow.concurrency == {"limit": 2, "key": "{{ inputs.name }}", "on_limit": "reject"}
    assert workflow.retention_days == 30 and workflow.webhook_enabled
    event = AuditEvent.objects.filter(event="workflow.updated").latest("seq")
    assert set(event.data["metadata"]) == {"concurrency", "retention_days", "webhook_enabled"}
    # Clearing the limit and retention; the toggle off.
    assert client.post(url, {"on_limit": "queue"}).status_code == 302
    workflow.refresh_from_db()
    assert workflow.concurrency is None and workflow.retention_days is None and not workflow.webhook_enabled


def test_settings_errors_are_shown_next_to_the_fields(org, owner, member):
    workflow = make_workflow(org, owner)
    client = signed_in(member, org)
    url = f"/workflows/{workflow.id}/settings/"
    response = client.post(url, {"concurrency_limit": "100000", "on_limit": "queue"})  # the service's bound
    assert response.status_code == 400
    assert re.search(
        r'id="id_concurrency_limit".*?field-error" role="alert">.*?limit', response.content.decode(), re.S
    )
    response = client.post(url, {"retention_days": "0", "on_limit": "queue"})  # the form's bound
    assert response.status_code == 400 and "field-error" in response.content.decode()
    workflow.refresh_from_db()
    assert workflow.concurrency is None


def test_viewer_reads_settings_but_cannot_change_them(org, owner, viewer):
    workflow = make_workflow(org, owner)
    client = signed_in(viewer, org)
    page = client.get(f"/workflows/{workflow.id}/settings/").content.decode()
    assert "no limit of its own" in page and '<form method="post" novalidate' not in page
    response = client.post(
        f"/workflows/{workflow.id}/settings/", {"webhook_enabled": "on", "on_limit": "queue"}
    )
    assert response.status_code == 403
    assert not Workflow.objects.get(pk=workflow.pk).webhook_enabled


def test_admin_sees_the_hook_url_and_rotates_the_secret(org, owner, admin, member):
    workflow = make_workflow(org, owner)
    old = workflow.webhook_secret
    client = signed_in(admin, org)
    page = client.get(f"/workflows/{workflow.id}/settings/").content.decode()
    assert f"/api/v1/hooks/{workflow.id}/{old}" in page
    assert signed_in(member, org).post(f"/workflows/{workflow.id}/webhook/rotate/").status_code == 403
    assert client.post(f"/workflows/{workflow.id}/webhook/rotate/").status_code == 302
    workflow.refresh_from_db()
    assert workflow.webhook_secret != old
    assert AuditEvent.objects.filter(event="workflow.webhook_secret_rotated", target_id=workflow.id).exists()
    assert old not in client.get(f"/workflows/{workflow.id}/settings/").content.decode()


# --- schedules -------------------------------------------------------------------------------------------


def test_member_creates_pauses_resumes_and_deletes_a_schedule(org, owner, member):
    workflow = make_workflow(org, owner)
    client = signed_in(member, org)
    url = f"/workflows/{workflow.id}/schedules/"
    assert "No schedule yet" in client.get(url).content.decode()
    response = client.post(
        url,
        {"cron_expression": "0 9 * * 1-5", "timezone": "Europe/Paris", "input_data": '{"name": "Ada"}',
         "catchup": "last", "catchup_window_seconds": "600", "overlap": "queue", "enabled": "on"},
    )  # fmt: skip
    assert response.status_code == 302
    schedule = Schedule.objects.get(workflow=workflow)
    assert (schedule.cron_expression, schedule.timezone, schedule.input_data) == (
        "0 9 * * 1-5",
        "Europe/Paris",
        {"name": "Ada"},
    )
    assert (schedule.catchup, schedule.catchup_window_seconds, schedule.overlap) == ("last", 600, "queue")
    assert schedule.enabled and schedule.next_run_at is not None
    page = client.get(url).content.decode()
    assert "0 9 * * 1-5" in page and "Europe/Paris" in page and "<time" in page
    assert client.post(f"/schedules/{schedule.id}/toggle/", {"enabled": "false"}).status_code == 302
    schedule.refresh_from_db()
    assert not schedule.enabled and schedule.next_run_at is None
    assert client.post(f"/schedules/{schedule.id}/toggle/", {"enabled": "true"}).status_code == 302
    schedule.refresh_from_db()
    assert schedule.enabled and schedule.next_run_at is not None
    assert client.post(f"/schedules/{schedule.id}/delete/").status_code == 302
    assert not Schedule.objects.exists()
    events = list(AuditEvent.objects.filter(event__startswith="schedule.").values_list("event", flat=True))
    assert events == ["schedule.created", "schedule.updated", "schedule.updated", "schedule.deleted"]


def test_schedule_errors_are_shown_next_to_their_fields(org, owner, member, settings):
    workflow = make_workflow(org, owner)
    client = signed_in(member, org)
    url = f"/workflows/{workflow.id}/schedules/"
    base = {"timezone": "UTC", "catchup": "none", "catchup_window_seconds": "3600", "overlap": "skip"}

    def error_of(data, field):
        response = client.post(url, {**base, **data})
        assert response.status_code == 400, response.status_code
        body = response.content.decode()
        match = re.search(rf'id="id_{field}".*?<p class="field-error" role="alert">([^<]+)', body, re.S)
        assert match, body[-3000:]
        return match.group(1)

    assert error_of({"cron_expression": "61 * * * *"}, "cron_expression")
    assert error_of({"cron_expression": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone")
    assert "JSON" in error_of({"cron_expression": "0 9 * * *", "input_data": "{nope"}, "input_data")
    assert "object" in error_of({"cron_expression": "0 9 * * *", "input_data": "[1]"}, "input_data")
    settings.BATON_SCHEDULE_MIN_INTERVAL_SECONDS = 3600
    assert "at least 3600 s apart" in error_of({"cron_expression": "*/5 * * * *"}, "cron_expression")
    assert not Schedule.objects.exists()


def test_schedule_limit_is_the_services(org, owner, member):
    org.max_schedules_per_workflow = 1
    org.save(update_fields=["max_schedules_per_workflow"])
    workflow = make_workflow(org, owner)
    client = signed_in(member, org)
    url = f"/workflows/{workflow.id}/schedules/"
    data = SCHEDULE
    assert client.post(url, data).status_code == 302
    response = client.post(url, data)
    assert response.status_code == 402 and "limit" in response.content.decode()


def test_viewer_reads_schedules_but_cannot_change_them(org, owner, viewer):
    from workflows.schedules import schedule_create

    workflow = make_workflow(org, owner)
    schedule = schedule_create(
        workflow=workflow, actor=actor(org, owner), values={"cron_expression": "@daily"}
    )
    client = signed_in(viewer, org)
    page = client.get(f"/workflows/{workflow.id}/schedules/").content.decode()
    assert schedule.cron_expression in page and "schedule-form" not in page and "pause-" not in page
    assert (
        client.post(f"/workflows/{workflow.id}/schedules/", {"cron_expression": "@daily"}).status_code == 403
    )
    assert client.post(f"/schedules/{schedule.id}/toggle/", {"enabled": "false"}).status_code == 403
    assert client.post(f"/schedules/{schedule.id}/delete/").status_code == 403
    assert Schedule.objects.get(pk=schedule.pk).enabled


def test_archived_workflows_schedules_cannot_be_created(org, owner):
    from workflows.services import workflow_archive

    workflow = make_workflow(org, owner)
    workflow_archive(workflow=workflow, actor=actor(org, owner))
    client = signed_in(owner, org)
    page = client.get(f"/workflows/{workflow.id}/schedules/").content.decode()
    assert "schedule-form" not in page
    response = client.post(f"/workflows/{workflow.id}/schedules/", SCHEDULE)
    assert response.status_code == 404
