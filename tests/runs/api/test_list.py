"""GET /runs and GET /workflows/{ref}/runs: filters, validation, pagination and the entry shape."""

from datetime import UTC, datetime, timedelta

import pytest

from runs.models import Run
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import GreeterRunFactory
from workflows.services import workflow_update


def ids(response) -> list[str]:
    assert response.status_code == 200, response.content
    return [entry["id"] for entry in response.json()["runs"]]


@pytest.fixture
def runs(org, actor, workflow):
    """Five runs, oldest first: r0 … r4, with varied status, env, metadata and workflows."""
    other = WorkflowFactory(organization=org, actor=actor, definition={"name": "Other flow", "steps": [
        {"id": "x", "type": "transform", "config": {"value": 1}}]})  # fmt: skip
    base = datetime(2026, 11, 1, 12, tzinfo=UTC)
    specs = [
        (workflow, "completed", {"customer": "acme", "tier": "gold"}, "prod"),
        (workflow, "failed", {"customer": "acme", "tier": "free"}, None),
        (other, "completed", {"customer": "globex", "priority": 2}, "prod"),
        (workflow, "cancelled", {"customer": "acme", "vip": True}, "staging"),
        (other, None, {}, None),
    ]
    made = []
    for index, (flow, status, metadata, env) in enumerate(specs):
        input_data = {"who": "A"} if flow == workflow else {}
        made.append(
            GreeterRunFactory(workflow=flow, actor=actor, status=status, metadata=metadata, env=env,
                              input_data=input_data, created_at=base + timedelta(hours=index))
        )  # fmt: skip
    return made


def test_lists_newest_first_with_pagination(api_key_client, runs):
    response = api_key_client.get("/api/v1/runs?limit=2&offset=1")

    assert ids(response) == [runs[3].id, runs[2].id]
    body = response.json()
    assert (body["total"], body["limit"], body["offset"]) == (5, 2, 1)


def test_entry_is_the_run_without_steps_plus_step_count(api_key_client, runs, workflow):
    entry = api_key_client.get("/api/v1/runs").json()["runs"][-1]

    assert entry["id"] == runs[0].id
    assert "steps" not in entry
    assert entry["step_count"] == 2
    assert entry["workflow_id"] == workflow.id and entry["workflow_name"] == "Greeter"
    assert entry["workflow_version"] == 1
    assert entry["metadata"] == {"customer": "acme", "tier": "gold"}
    assert entry["created_at"] == "2026-11-01T12:00:00.000000Z"
    assert entry["duration_ms"] is not None and entry["current_step_ids"] == []
    active = api_key_client.get("/api/v1/runs").json()["runs"][0]
    assert active["current_step_ids"] == ["x"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=completed", [2, 0]),
        ("status=completed&status=failed", [2, 1, 0]),
        ("env=prod", [2, 0]),
        ("trigger=api", [4, 3, 2, 1, 0]),
        ("trigger=schedule", []),
        ("metadata.customer=acme", [3, 1, 0]),
        ("metadata.customer=acme&metadata.tier=gold", [0]),
        ("metadata.priority=2", [2]),
        ("metadata.vip=true", [3]),
        ("metadata.customer=nobody", []),
        ("metadata.customer=NaN", []),
        ("metadata.priority=Infinity", []),
        ("metadata.priority=2.0", [2]),
        ("created_after=2026-11-01T13:00:00Z", [4, 3, 2, 1]),
        ("created_before=2026-11-01T14:00:00Z", [1, 0]),
        (f"created_after={int(datetime(2026, 11, 1, 14, tzinfo=UTC).timestamp())}", [4, 3, 2]),
        ("created_after=2026-11-01T13:00:00Z&created_before=2026-11-01T15:00:00Z", [2, 1]),
        ("workflow=greeter", [3, 1, 0]),
        ("status=completed&metadata.customer=acme", [0]),
    ],
)
def test_filters(api_key_client, runs, query, expected):
    assert ids(api_key_client.get(f"/api/v1/runs?{query}")) == [runs[i].id for i in expected]


def test_workflow_filter_by_id_and_version(api_key_client, runs, workflow, actor):
    changed = {**workflow.versions.get(number=1).definition, "description": "v2"}
    workflow, _ = workflow_update(workflow=workflow, actor=actor, definition=changed)
    newer = GreeterRunFactory(workflow=workflow, actor=actor)

    assert ids(api_key_client.get(f"/api/v1/runs?workflow={workflow.id}")) == [
        newer.id, runs[3].id, runs[1].id, runs[0].id
    ]  # fmt: skip
    assert ids(api_key_client.get(f"/api/v1/runs?workflow={workflow.id}&version=2")) == [newer.id]
    assert ids(api_key_client.get("/api/v1/runs?version=1&status=failed")) == [runs[1].id]


def test_workflow_runs_endpoint_scopes_to_the_workflow(api_key_client, runs, workflow):
    by_slug = api_key_client.get(f"/api/v1/workflows/{workflow.slug}/runs?status=completed")
    by_id = api_key_client.get(f"/api/v1/workflows/{workflow.id}/runs")

    assert ids(by_slug) == [runs[0].id]
    assert ids(by_id) == [runs[3].id, runs[1].id, runs[0].id]
    assert api_key_client.get(f"/api/v1/workflows/{workflow.id}/runs?workflow=x").status_code == 400
    missing = api_key_client.get("/api/v1/workflows/nope/runs")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "workflow_not_found"


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("status=done", "status"),
        ("trigger=carrier-pigeon", "trigger"),
        ("version=0", "version"),
        ("version=two", "version"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2026-13-45", "created_before"),
        ("stauts=failed", "stauts"),
        ("env=a&env=b", "env"),
        ("metadata.bad key=1", "metadata.bad key"),
        ("limit=501", "limit"),
        ("limit=0", "limit"),
        ("offset=-1", "offset"),
    ],
)
def test_bad_parameters_are_400(api_key_client, runs, query, field):
    response = api_key_client.get(f"/api/v1/runs?{query}")

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]["fields"]


def test_limit_up_to_500(api_key_client, runs):
    assert api_key_client.get("/api/v1/runs?limit=500").json()["limit"] == 500


def test_other_organisation_sees_none_of_them(outsider_key_client, runs):
    assert ids(outsider_key_client.get("/api/v1/runs")) == []
    assert ids(outsider_key_client.get("/api/v1/runs?metadata.customer=acme")) == []


def test_metadata_keys_are_matched_literally(api_key_client, workflow, actor):
    tricky = GreeterRunFactory(workflow=workflow, actor=actor, metadata={"a__b": "1", "x.y": "2"})
    GreeterRunFactory(workflow=workflow, actor=actor, metadata={"a": "1"})

    assert ids(api_key_client.get("/api/v1/runs?metadata.a__b=1")) == [tricky.id]
    assert ids(api_key_client.get("/api/v1/runs?metadata.x.y=2")) == [tricky.id]


def test_list_does_not_load_definitions(api_key_client, runs, django_assert_max_num_queries):
    assert Run.objects.count() == 5
    with django_assert_max_num_queries(12) as captured:
        api_key_client.get("/api/v1/runs?limit=500")
    assert not any('"definition"' in query["sql"] for query in captured.captured_queries)
