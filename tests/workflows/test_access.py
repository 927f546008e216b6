"""Roles and API-key scopes for every workflows and templates endpoint."""

import pytest

from tests.workflows.support.helpers import definition, make_workflow, owner_actor
from workflows.services import template_save_from_workflow

pytestmark = pytest.mark.django_db

READS = [
    ("get", "/api/v1/workflows", None),
    ("get", "/api/v1/workflows/{wf}", None),
    ("get", "/api/v1/workflows/{wf}/versions", None),
    ("get", "/api/v1/workflows/{wf}/versions/1", None),
    ("get", "/api/v1/workflows/{wf}/diff?v1=1&v2=1", None),
    ("get", "/api/v1/workflows/{wf}/input-schema", None),
    ("post", "/api/v1/workflows/validate", {"definition": definition()}),
    ("get", "/api/v1/templates", None),
    ("get", "/api/v1/templates/{tpl}", None),
]
WRITES = [
    ("post", "/api/v1/workflows", {"definition": definition("New one")}),
    ("put", "/api/v1/workflows/{wf}", {"definition": definition("Changed")}),
    ("patch", "/api/v1/workflows/{wf}", {"name": "Renamed"}),
    ("patch", "/api/v1/workflows/{wf}/status", {"status": "active"}),
    ("post", "/api/v1/workflows/{wf}/publish", {}),
    ("post", "/api/v1/workflows/{wf}/rollback", {"version": 1}),
    ("post", "/api/v1/workflows/{wf}/clone", {}),
    ("post", "/api/v1/workflows/{wf}/save-as-template", {}),
    ("post", "/api/v1/templates/{tpl}/install", {}),
    ("delete", "/api/v1/templates/{tpl}", None),
    ("delete", "/api/v1/workflows/{wf}", None),
    ("post", "/api/v1/workflows/{archived}/unarchive", None),
]


@pytest.fixture
def targets(org, owner, api_key_client):
    workflow = make_workflow(org, owner, "Target")
    archived = make_workflow(org, owner, "Archived")
    api_key_client.delete(f"/api/v1/workflows/{archived.id}")
    template = template_save_from_workflow(workflow=workflow, actor=owner_actor(org, owner))
    return {"wf": workflow.id, "archived": archived.id, "tpl": template.id}


def call(client, method, path, body, targets):
    url = path.format(**targets)
    return (
        getattr(client, method)(url, body, format="json")
        if body is not None
        else getattr(client, method)(url)
    )


@pytest.mark.parametrize("method, path, body", READS)
def test_viewer_and_read_scope_may_read(
    make_jwt_client, make_key_client, viewer, org, targets, method, path, body
):
    for client in (make_jwt_client(viewer, org), make_key_client(["workflows:read"])):
        response = call(client, method, path, body, targets)
        assert response.status_code == 200, (path, response.content)


@pytest.mark.parametrize("method, path, body", READS)
def test_key_without_workflow_scopes_cannot_read(make_key_client, targets, method, path, body):
    response = call(make_key_client(["runs:read", "runs:write"]), method, path, body, targets)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope" and error["details"]["required_scope"] == "workflows:read"


@pytest.mark.parametrize("method, path, body", WRITES)
def test_viewer_cannot_write(make_jwt_client, viewer, org, targets, method, path, body):
    response = call(make_jwt_client(viewer, org), method, path, body, targets)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("method, path, body", WRITES)
def test_read_only_key_cannot_write(make_key_client, targets, method, path, body):
    response = call(make_key_client(["workflows:read", "runs:write"]), method, path, body, targets)
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope" and error["details"]["required_scope"] == "workflows:write"


@pytest.mark.parametrize("method, path, body", WRITES)
def test_member_and_write_key_may_write(
    make_jwt_client, make_key_client, member, org, targets, method, path, body
):
    response = call(make_jwt_client(member, org), method, path, body, targets)
    assert response.status_code in (200, 201, 204), (path, response.content)


@pytest.mark.parametrize("method, path, body", WRITES[:3])
def test_write_scope_key_may_write(make_key_client, targets, method, path, body):
    response = call(make_key_client(["workflows:read", "workflows:write"]), method, path, body, targets)
    assert response.status_code in (200, 201), (path, response.content)


def test_member_cannot_delete_permanently(make_jwt_client, member, org, targets):
    response = make_jwt_client(member, org).delete(f"/api/v1/workflows/{targets['archived']}/permanent")
    assert response.status_code == 403 and response.json()["error"]["details"] == {"required_role": "owner"}


def test_unauthenticated_is_401(api_client, targets):
    for url in ("/api/v1/workflows", f"/api/v1/workflows/{targets['wf']}", "/api/v1/templates"):
        response = api_client.get(url)
        assert response.status_code == 401 and response.json()["error"]["code"] == "unauthorized"


def test_jwt_of_another_org_sees_nothing(outsider_jwt_client, targets, org, owner):
    assert outsider_jwt_client.get("/api/v1/workflows").json()["total"] == 0
    assert outsider_jwt_client.get(f"/api/v1/workflows/{targets['wf']}").status_code == 404
    wf = make_workflow(org, owner, "Shared name")
    assert outsider_jwt_client.get(f"/api/v1/workflows/{wf.slug}").status_code == 404
