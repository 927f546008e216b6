import pytest

from tests.accounts.conftest import error_code, events
from tests.factories import ProjectFactory
from workflows.models import Project

PROJECTS = "/api/v1/projects"


def test_create_list_get_update_delete(member_client, viewer_client, org):
    created = member_client.post(PROJECTS, {"name": "Billing", "description": "Invoices"}, format="json")
    assert created.status_code == 201
    project = created.json()
    assert set(project) == {"id", "name", "description", "created_at", "updated_at"}
    assert project["id"].startswith("proj_")

    listed = viewer_client.get(PROJECTS).json()
    assert listed["total"] == 1 and listed["projects"][0]["id"] == project["id"]
    assert viewer_client.get(f"{PROJECTS}/{project['id']}").json()["name"] == "Billing"

    updated = member_client.patch(f"{PROJECTS}/{project['id']}", {"name": "Billing v2"}, format="json")
    assert updated.status_code == 200 and updated.json()["name"] == "Billing v2"
    assert updated.json()["description"] == "Invoices"

    assert member_client.delete(f"{PROJECTS}/{project['id']}").status_code == 204
    assert not Project.objects.filter(pk=project["id"]).exists()
    assert [e.event for e in events(org) if e.event.startswith("project.")] == [
        "project.created",
        "project.updated",
        "project.deleted",
    ]
    assert events(org, "project.updated")[0].data == {
        "changes": {"name": {"from": "Billing", "to": "Billing v2"}}
    }


def test_viewer_cannot_write(viewer_client, org):
    response = viewer_client.post(PROJECTS, {"name": "Nope"}, format="json")
    assert response.status_code == 403 and error_code(response) == "forbidden"


def test_name_is_unique_per_organisation(member_client, org, other_org):
    ProjectFactory(organization=org, name="Ops")
    ProjectFactory(organization=other_org, name="Shared")
    taken = member_client.post(PROJECTS, {"name": "Ops"}, format="json")
    assert taken.status_code == 409 and error_code(taken) == "project_name_taken"
    assert member_client.post(PROJECTS, {"name": "Shared"}, format="json").status_code == 201
    other = ProjectFactory(organization=org, name="Other")
    rename = member_client.patch(f"{PROJECTS}/{other.id}", {"name": "Ops"}, format="json")
    assert rename.status_code == 409 and error_code(rename) == "project_name_taken"


def test_unknown_project_is_404(member_client, db):
    for response in (
        member_client.get(f"{PROJECTS}/proj_nope"),
        member_client.patch(f"{PROJECTS}/proj_nope", {"name": "x"}, format="json"),
        member_client.delete(f"{PROJECTS}/proj_nope"),
    ):
        assert response.status_code == 404 and error_code(response) == "project_not_found"


@pytest.mark.parametrize("body", [{}, {"name": ""}, {"name": "x" * 201}, {"name": "ok", "owner": "me"}])
def test_create_validates(member_client, body):
    response = member_client.post(PROJECTS, body, format="json")
    assert response.status_code == 400 and error_code(response) == "invalid_request"


def test_list_is_paginated(viewer_client, org):
    for n in range(3):
        ProjectFactory(organization=org, name=f"P{n}")
    body = viewer_client.get(PROJECTS, {"limit": 2}).json()
    assert [p["name"] for p in body["projects"]] == ["P0", "P1"] and body["total"] == 3
    assert viewer_client.get(PROJECTS, {"limit": 201}).status_code == 400


def test_put_is_not_allowed(member_client, org):
    project = ProjectFactory(organization=org)
    assert member_client.put(f"{PROJECTS}/{project.id}", {"name": "x"}, format="json").status_code == 405


def test_create_is_idempotent(member_client, org):
    first = member_client.post(PROJECTS, {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    again = member_client.post(PROJECTS, {"name": "Once"}, format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    assert first.status_code == again.status_code == 201 and again.json()["id"] == first.json()["id"]
    other = member_client.post(PROJECTS, {"name": "Twice"}, format="json", HTTP_IDEMPOTENCY_KEY="p-1")
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    assert Project.objects.filter(organization=org).count() == 1
