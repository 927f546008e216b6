"""Schedules over HTTP (API.md "Workflows" schedule rows, docs/schedules.md)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from audit.models import AuditEvent
from workflows.models import Schedule

BODY = {
    "cron_expression": "0 9 * * 1-5",
    "timezone": "America/New_York",
    "input_data": {"who": "x"},
    "enabled": True,
}


def events(org, name):
    return list(AuditEvent.objects.filter(organization=org, event=name))


def create(client, workflow, **overrides):
    return client.post(f"/api/v1/workflows/{workflow.id}/schedules", {**BODY, **overrides}, format="json")


def test_create_answers_201_with_schedule_id_and_next_run_at(api_key_client, workflow, org):
    response = create(api_key_client, workflow)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["schedule_id"].startswith("sched_") and body["id"] == body["schedule_id"]
    assert body["workflow_id"] == workflow.id
    assert body["next_run_at"].endswith("Z")
    assert body["catchup"] == "none" and body["overlap"] == "skip" and body["catchup_window_seconds"] == 3600
    schedule = Schedule.objects.get(pk=body["schedule_id"])
    local = schedule.next_run_at.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    assert (local.hour, local.minute) == (9, 0) and local.weekday() < 5
    assert schedule.next_run_at > timezone.now()
    assert len(events(org, "schedule.created")) == 1


def test_create_is_idempotent_with_a_key(api_key_client, workflow):
    headers = {"HTTP_IDEMPOTENCY_KEY": "sched-1"}
    first = api_key_client.post(f"/api/v1/workflows/{workflow.id}/schedules", BODY, format="json", **headers)
    again = api_key_client.post(f"/api/v1/workflows/{workflow.id}/schedules", BODY, format="json", **headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["schedule_id"] == again.json()["schedule_id"]
    assert Schedule.objects.filter(workflow=workflow).count() == 1


@pytest.mark.parametrize(
    ("overrides", "field", "says"),
    [
        ({"cron_expression": "61 * * * *"}, "cron_expression", "minute field '61'"),
        ({"cron_expression": "@reboot"}, "cron_expression", "Unknown cron alias"),
        ({"cron_expression": "0 9 * *"}, "cron_expression", "has 4 field(s)"),
        ({"timezone": "Mars/Olympus"}, "timezone", "Unknown time zone 'Mars/Olympus'"),
        ({"catchup": "some"}, "catchup", ""),
        ({"overlap": "never"}, "overlap", ""),
        ({"catchup_window_seconds": -1}, "catchup_window_seconds", "from 0"),
        ({"input_data": [1]}, "input_data", "object"),
        ({"colour": "red"}, "colour", "Unknown field"),
    ],
)
def test_invalid_fields_answer_the_envelope_with_a_sentence(api_key_client, workflow, overrides, field, says):
    response = create(api_key_client, workflow, **overrides)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]["fields"]
    assert says in error["message"] + " ".join(error["details"]["fields"][field])


def test_minimum_interval_is_the_plans_never_below_the_servers(api_key_client, workflow, org, settings):
    settings.BATON_SCHEDULE_MIN_INTERVAL_SECONDS = 120
    org.min_schedule_interval_seconds = 300  # the starter plan's
    org.save(update_fields=["min_schedule_interval_seconds"])
    response = create(api_key_client, workflow, cron_expression="*/2 * * * *")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "cron_expression" in error["details"]["fields"]
    assert "plan allows fire times at least 300 s apart" in error["message"]
    assert create(api_key_client, workflow, cron_expression="*/5 * * * *").status_code == 201
    org.min_schedule_interval_seconds = None  # unlimited: the server's floor still holds
    org.save(update_fields=["min_schedule_interval_seconds"])
    response = create(api_key_client, workflow, cron_expression="* * * * *")
    assert "this server allows fire times at least 120 s apart" in response.json()["error"]["message"]
    assert create(api_key_client, workflow, cron_expression="*/2 * * * *").status_code == 201


def test_plan_limits_per_workflow_and_per_organisation(api_key_client, workflow, org, owner):
    from tests.workflows.support.helpers import make_workflow

    org.max_schedules_per_workflow, org.max_schedules = 2, 3
    org.save(update_fields=["max_schedules_per_workflow", "max_schedules"])
    assert create(api_key_client, workflow).status_code == 201
    assert create(api_key_client, workflow).status_code == 201
    third = create(api_key_client, workflow)
    assert third.status_code == 402
    error = third.json()["error"]
    assert error["code"] == "quota_exceeded"
    assert error["details"] == {"quota": "max_schedules_per_workflow", "limit": 2, "used": 2}
    assert error["message"].startswith(f"Workflow {workflow.id} already has 2 schedules")
    other = make_workflow(org, owner, name="Other")
    assert create(api_key_client, other).status_code == 201
    over = create(api_key_client, other)
    assert over.status_code == 402 and over.json()["error"]["details"]["quota"] == "max_schedules"
    assert over.json()["error"]["message"].startswith("The organisation already has 3 schedules")
    org.max_schedules = org.max_schedules_per_workflow = None  # unlimited (the enterprise plan)
    org.save(update_fields=["max_schedules_per_workflow", "max_schedules"])
    assert create(api_key_client, workflow).status_code == 201


def test_plans_carry_the_schedule_limits(jwt_client, org):
    response = jwt_client.patch("/api/v1/organization", {"plan": "growth"}, format="json")
    assert response.status_code == 200, response.content
    limits = response.json()["limits"]
    assert (limits["max_schedules"], limits["max_schedules_per_workflow"]) == (500, 20)
    assert limits["min_schedule_interval_seconds"] == 60
    response = jwt_client.patch("/api/v1/organization", {"plan": "enterprise"}, format="json")
    limits = response.json()["limits"]
    assert [limits[name] for name in ("max_schedules", "max_schedules_per_workflow",
                                      "min_schedule_interval_seconds")] == [None, None, None]  # fmt: skip
    response = jwt_client.patch("/api/v1/organization", {"limits": {"max_schedules": 7}}, format="json")
    assert response.json()["limits"]["max_schedules"] == 7


def test_the_input_is_checked_against_the_workflows_schema(api_key_client, workflow):
    response = create(api_key_client, workflow, input_data={"who": 3, "extra": True})
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert error["message"].startswith(
        f"input_data does not match the input schema of workflow {workflow.id}"
    )
    assert "input_data.who" in error["details"]["fields"]
    missing = create(api_key_client, workflow, input_data={})
    assert missing.json()["error"]["details"]["fields"] == {"input_data.who": ["This field is required."]}
    schedule_id = create(api_key_client, workflow).json()["schedule_id"]
    patch = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"input_data": {}}, format="json")
    assert patch.status_code == 400 and "input_data.who" in patch.json()["error"]["details"]["fields"]
    assert Schedule.objects.get(pk=schedule_id).input_data == {"who": "x"}


def test_a_schedule_enabled_again_is_checked_against_todays_schema(api_key_client, workflow, org, owner):
    from tests.workflows.support.helpers import definition, owner_actor
    from workflows.services import workflow_update

    schedule_id = create(api_key_client, workflow, enabled=False).json()["schedule_id"]
    changed = definition()
    changed["inputs"]["properties"]["count"] = {"type": "integer"}
    changed["inputs"]["required"] = ["who", "count"]
    workflow_update(workflow=workflow, actor=owner_actor(org, owner), definition=changed)
    unrelated = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"overlap": "allow"}, format="json")
    assert unrelated.status_code == 200
    enable = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"enabled": True}, format="json")
    assert enable.status_code == 400
    assert enable.json()["error"]["details"]["fields"] == {"input_data.count": ["This field is required."]}
    fixed = {"enabled": True, "input_data": {"who": "x", "count": 2}}
    assert api_key_client.patch(f"/api/v1/schedules/{schedule_id}", fixed, format="json").status_code == 200


def test_list_get_patch_delete(api_key_client, workflow, org):
    schedule_id = create(api_key_client, workflow).json()["schedule_id"]
    create(api_key_client, workflow, enabled=False)
    listed = api_key_client.get(f"/api/v1/workflows/{workflow.id}/schedules").json()
    assert listed["total"] == 2 and listed["limit"] == 20 and listed["offset"] == 0
    everything = api_key_client.get("/api/v1/schedules").json()
    assert everything["total"] == 2
    assert api_key_client.get("/api/v1/schedules?enabled=false").json()["total"] == 1
    assert api_key_client.get(f"/api/v1/schedules?workflow={workflow.id}").json()["total"] == 2
    assert api_key_client.get("/api/v1/schedules?colour=red").status_code == 400
    assert api_key_client.get("/api/v1/schedules?limit=0").status_code == 400

    got = api_key_client.get(f"/api/v1/schedules/{schedule_id}")
    assert got.status_code == 200 and got.json()["cron_expression"] == "0 9 * * 1-5"

    patched = api_key_client.patch(
        f"/api/v1/schedules/{schedule_id}", {"cron_expression": "@hourly"}, format="json"
    )
    assert patched.status_code == 200, patched.content
    assert patched.json()["cron_expression"] == "0 * * * *"
    # Recomputed for the new expression: the next top of the hour (which between 13:00 and 14:00 UTC on a
    # weekday is also 9:00 in New York, the old expression's next time).
    next_run = Schedule.objects.get(pk=schedule_id).next_run_at
    assert next_run.minute == 0 and timezone.now() < next_run <= timezone.now() + timedelta(hours=1)
    local = next_run.astimezone(__import__("zoneinfo").ZoneInfo("America/New_York"))
    if (local.hour, local.weekday() < 5) != (9, True):
        assert patched.json()["next_run_at"] != got.json()["next_run_at"]
    disabled = api_key_client.patch(
        f"/api/v1/schedules/{schedule_id}", {"enabled": False}, format="json"
    ).json()
    assert disabled["enabled"] is False and disabled["next_run_at"] is None
    bad = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"timezone": "Nowhere"}, format="json")
    assert bad.status_code == 400 and "Unknown time zone" in bad.json()["error"]["message"]
    assert len(events(org, "schedule.updated")) == 2

    assert api_key_client.delete(f"/api/v1/schedules/{schedule_id}").status_code == 204
    assert (
        api_key_client.get(f"/api/v1/schedules/{schedule_id}").json()["error"]["code"] == "schedule_not_found"
    )
    assert len(events(org, "schedule.deleted")) == 1


def test_schedules_appear_in_the_workflow_object(api_key_client, workflow):
    schedule_id = create(api_key_client, workflow).json()["schedule_id"]
    detail = api_key_client.get(f"/api/v1/workflows/{workflow.id}").json()
    assert [s["schedule_id"] for s in detail["schedules"]] == [schedule_id]


def test_viewer_reads_but_cannot_write(make_jwt_client, viewer, org, workflow, api_key_client):
    create(api_key_client, workflow)
    client = make_jwt_client(viewer, org)
    assert client.get(f"/api/v1/workflows/{workflow.id}/schedules").status_code == 200
    assert create(client, workflow).status_code == 403


def test_archiving_disables_and_unarchiving_does_not_enable(
    api_key_client, workflow, django_capture_on_commit_callbacks
):
    schedule_id = create(api_key_client, workflow).json()["schedule_id"]
    with django_capture_on_commit_callbacks(execute=True):
        assert api_key_client.delete(f"/api/v1/workflows/{workflow.id}").status_code == 204
    schedule = Schedule.objects.get(pk=schedule_id)
    assert schedule.enabled is False and schedule.next_run_at is None
    api_key_client.post(f"/api/v1/workflows/{workflow.id}/unarchive")
    assert Schedule.objects.get(pk=schedule_id).enabled is False
    # Enabling it again is the user's choice, once the workflow is back.
    again = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"enabled": True}, format="json")
    assert again.status_code == 200 and again.json()["next_run_at"] is not None


def test_archived_workflow_refuses_enabling_and_creation(api_key_client, workflow):
    schedule_id = create(api_key_client, workflow, enabled=False).json()["schedule_id"]
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    refused = api_key_client.patch(f"/api/v1/schedules/{schedule_id}", {"enabled": True}, format="json")
    assert refused.status_code == 409 and refused.json()["error"]["code"] == "workflow_archived"
    assert create(api_key_client, workflow).status_code == 404


def test_next_run_at_is_within_a_day_for_daily(api_key_client, workflow):
    body = create(api_key_client, workflow, cron_expression="@daily", timezone="UTC").json()
    schedule = Schedule.objects.get(pk=body["schedule_id"])
    assert timedelta(0) < schedule.next_run_at - timezone.now() <= timedelta(days=1)
