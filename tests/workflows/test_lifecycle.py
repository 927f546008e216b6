"""Status transitions, archive/unarchive, permanent delete, and their 409s and audit events."""

import pytest

from audit.models import AuditEvent
from tests.workflows.support.helpers import definition
from workflows.choices import STATUS_TRANSITIONS, WorkflowStatus
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


def last_event(org):
    return AuditEvent.objects.filter(organization=org).order_by("-seq").first()


def set_status(client, workflow, status):
    return client.patch(f"/api/v1/workflows/{workflow.id}/status", {"status": status}, format="json")


@pytest.mark.parametrize(
    "start, target",
    [
        (a, b)
        for a in ("draft", "active", "paused")
        for b in ("draft", "active", "paused", "archived")
        if a != b
    ],
)
def test_allowed_transitions(api_key_client, org, workflow, start, target):
    Workflow.objects.filter(pk=workflow.pk).update(status=start)
    response = set_status(api_key_client, workflow, target)
    assert response.status_code == 200, response.content
    assert response.json()["status"] == target
    event = last_event(org)
    expected = "workflow.archived" if target == "archived" else "workflow.status_changed"
    assert (event.event, event.data, event.target_id) == (
        expected,
        {"from": start, "to": target},
        workflow.id,
    )


@pytest.mark.parametrize("target", ["draft", "active", "paused"])
def test_archived_cannot_change_status_except_by_unarchive(api_key_client, workflow, target):
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    response = set_status(api_key_client, workflow, target)
    assert response.status_code == 409
    error = response.json()["error"]
    assert error["code"] == "invalid_status_transition"
    assert error["details"] == {"from": "archived", "to": target, "allowed": []}
    assert "unarchive" in error["message"]


def test_transition_table_is_documented_shape():
    assert STATUS_TRANSITIONS[WorkflowStatus.ARCHIVED] == frozenset()
    assert all(WorkflowStatus.ARCHIVED in STATUS_TRANSITIONS[s] for s in ("draft", "active", "paused"))


def test_same_status_is_a_no_op(api_key_client, org, workflow):
    before = last_event(org).seq
    response = set_status(api_key_client, workflow, "draft")
    assert response.status_code == 200 and last_event(org).seq == before


def test_unknown_status_is_400(api_key_client, workflow):
    assert set_status(api_key_client, workflow, "sleeping").status_code == 400


def test_archive_keeps_versions_and_stays_readable(api_key_client, org, workflow):
    response = api_key_client.delete(f"/api/v1/workflows/{workflow.slug}")
    assert response.status_code == 204
    workflow.refresh_from_db()
    assert workflow.status == "archived" and workflow.archived_at is not None
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 1
    assert last_event(org).event == "workflow.archived"
    detail = api_key_client.get(f"/api/v1/workflows/{workflow.id}")
    assert detail.status_code == 200 and detail.json()["status"] == "archived"
    assert api_key_client.get(f"/api/v1/workflows/{workflow.id}/versions").status_code == 200


def test_archive_twice_is_idempotent(api_key_client, org, workflow):
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    seq = last_event(org).seq
    assert api_key_client.delete(f"/api/v1/workflows/{workflow.id}").status_code == 204
    assert last_event(org).seq == seq


@pytest.mark.parametrize(
    "method, suffix, body",
    [
        (
            "put",
            "",
            {"definition": definition(steps=[{"id": "x", "type": "transform", "config": {"value": "1"}}])},
        ),
        ("patch", "", {"name": "New"}),
        ("post", "/publish", {}),
        ("post", "/rollback", {"version": 1}),
    ],
)
def test_writes_to_an_archived_workflow_are_409(api_key_client, workflow, method, suffix, body):
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    response = getattr(api_key_client, method)(
        f"/api/v1/workflows/{workflow.id}{suffix}", body, format="json"
    )
    assert response.status_code == 409 and response.json()["error"]["code"] == "workflow_archived"


def test_unarchive_returns_to_draft(api_key_client, org, workflow):
    Workflow.objects.filter(pk=workflow.pk).update(status="active")
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    response = api_key_client.post(f"/api/v1/workflows/{workflow.id}/unarchive")
    assert response.status_code == 200 and response.json()["status"] == "draft"
    assert response.json()["archived_at"] is None
    event = last_event(org)
    assert event.event == "workflow.unarchived" and event.data == {"from": "archived", "to": "draft"}


def test_unarchive_of_a_live_workflow_is_409(api_key_client, workflow):
    response = api_key_client.post(f"/api/v1/workflows/{workflow.id}/unarchive")
    assert response.status_code == 409 and response.json()["error"]["code"] == "workflow_not_archived"


def test_permanent_delete_requires_archived(jwt_client, workflow):
    response = jwt_client.delete(f"/api/v1/workflows/{workflow.id}/permanent")
    assert response.status_code == 409 and response.json()["error"]["code"] == "workflow_not_archived"
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_permanent_delete_by_owner(jwt_client, org, workflow):
    jwt_client.delete(f"/api/v1/workflows/{workflow.id}")
    response = jwt_client.delete(f"/api/v1/workflows/{workflow.id}/permanent")
    assert response.status_code == 204
    assert not Workflow.objects.filter(pk=workflow.pk).exists()
    assert not WorkflowVersion.objects.filter(workflow_id=workflow.pk).exists()
    event = last_event(org)
    assert event.event == "workflow.deleted" and event.target_id == workflow.id
    assert event.data["slug"] == "greeter"
    assert jwt_client.get(f"/api/v1/workflows/{workflow.id}").json()["error"]["code"] == "workflow_not_found"


def test_permanent_delete_refused_to_admin_and_api_keys(
    api_key_client, make_jwt_client, admin, org, workflow
):
    api_key_client.delete(f"/api/v1/workflows/{workflow.id}")
    for client in (api_key_client, make_jwt_client(admin, org)):
        response = client.delete(f"/api/v1/workflows/{workflow.id}/permanent")
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert Workflow.objects.filter(pk=workflow.pk).exists()


def test_session_client_needs_csrf_for_status_change(session_client, workflow):
    response = session_client.patch(
        f"/api/v1/workflows/{workflow.id}/status", {"status": "active"}, format="json"
    )
    assert response.status_code == 403
    workflow.refresh_from_db()
    assert workflow.status == "draft"
