"""Roles and scopes: reads need viewer / runs:read, writes member / runs:write."""

import pytest

from runs.models import Run
from tests.runs.api.conftest import GreeterRunFactory

WRITES = [
    ("post", "/workflows/{wf}/run", {"input_data": {"who": "A"}}),
    ("post", "/runs/{run}/cancel", {}),
    ("post", "/runs/{run}/terminate", {}),
    ("delete", "/runs/{run}", None),
    ("post", "/runs/{run}/pin", None),
    ("delete", "/runs/{run}/pin", None),
    ("post", "/runs/bulk/cancel", {"ids": ["{run}"]}),
    ("post", "/runs/bulk/delete", {"ids": ["{run}"]}),
]
READS = ["/runs", "/workflows/{wf}/runs", "/runs/{run}", "/runs/{run}/events"]


def _call(client, method, path, body, workflow, run):
    path = "/api/v1" + path.format(wf=workflow.id, run=run.id)
    if body is not None and "ids" in body:
        body = {"ids": [run.id]}
    return (
        getattr(client, method)(path, body, format="json")
        if body is not None
        else getattr(client, method)(path)
    )


@pytest.fixture
def run(workflow, actor):
    return GreeterRunFactory(workflow=workflow, actor=actor, status="completed")


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_viewer_cannot_write(make_jwt_client, viewer, org, workflow, run, method, path, body):
    response = _call(make_jwt_client(viewer, org), method, path, body, workflow, run)

    assert response.status_code == 403, response.content
    assert response.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("method", "path", "body"), WRITES)
def test_key_without_runs_write_gets_insufficient_scope(make_key_client, workflow, run, method, path, body):
    response = _call(make_key_client(["runs:read", "workflows:read"]), method, path, body, workflow, run)

    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "insufficient_scope" and error["details"]["required_scope"] == "runs:write"


@pytest.mark.parametrize("path", READS)
def test_viewer_and_read_key_can_read(make_jwt_client, make_key_client, viewer, org, workflow, run, path):
    for client in (make_jwt_client(viewer, org), make_key_client(["runs:read"])):
        assert _call(client, "get", path, None, workflow, run).status_code == 200


@pytest.mark.parametrize("path", READS)
def test_key_without_runs_read_gets_insufficient_scope(make_key_client, workflow, run, path):
    response = _call(make_key_client(["workflows:read"]), "get", path, None, workflow, run)

    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_member_triggers_and_is_recorded_as_the_trigger(make_jwt_client, member, org, workflow):
    response = make_jwt_client(member, org).post(
        f"/api/v1/workflows/{workflow.id}/run", {"input_data": {"who": "A"}}, format="json"
    )

    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert (run.triggered_by, run.triggered_by_type) == (member.id, "user")


def test_session_trigger_needs_csrf(session_client, workflow):
    response = session_client.post(
        f"/api/v1/workflows/{workflow.id}/run", {"input_data": {"who": "A"}}, format="json"
    )

    assert response.status_code == 403
    assert not Run.objects.exists()


def test_unauthenticated_is_401(api_client, workflow, run):
    assert api_client.get("/api/v1/runs").status_code == 401
    assert api_client.post(f"/api/v1/workflows/{workflow.id}/run", {}, format="json").status_code == 401
