"""The rules the contract fuzzing found the schema and the server disagreeing on (docs/reliability.md,
"Contract fuzzing"), pinned at the API: what the server accepts and refuses, as the schema now says."""

import pytest

from tests.factories import WorkflowFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("version", "status"), [("2147483647", 200), ("2147483648", 400), ("²", 400)])
def test_run_list_version_is_a_database_integer(api_key_client, version, status):
    assert api_key_client.get("/api/v1/runs", {"version": version}).status_code == status


@pytest.mark.parametrize("filters", [{"version": 2**31}, {"status": []}, {"trigger": None, "status": []}])
def test_bulk_actions_refuse_a_filter_the_schema_refuses(api_key_client, filters):
    response = api_key_client.post("/api/v1/runs/bulk/delete", {"filter": filters}, format="json")
    assert response.status_code == 400, response.content


def test_bulk_filter_trigger_may_be_null(api_key_client):
    response = api_key_client.post("/api/v1/runs/bulk/delete", {"filter": {"trigger": None}}, format="json")
    assert response.status_code == 200, response.content


@pytest.mark.parametrize("name", ["actor", "event", "target", "target_type", "cursor"])
def test_an_empty_audit_filter_is_no_filter(api_key_client, name):
    everything = api_key_client.get("/api/v1/audit/logs").json()["events"]
    response = api_key_client.get("/api/v1/audit/logs", {name: ""})
    assert response.status_code == 200, response.content
    assert response.json()["events"] == everything


@pytest.mark.parametrize(
    ("concurrency", "status"),
    [({"limit": 1}, 200), ({}, 400), ({"limit": 1001}, 400), ({"limit": 1, "key": "  "}, 400),
     ({"limit": 1, "other": 1}, 400), (None, 200)],
)  # fmt: skip
def test_patch_concurrency_follows_its_schema(api_key_client, org, concurrency, status):
    workflow = WorkflowFactory(organization=org)
    body = {"concurrency": concurrency}
    response = api_key_client.patch(f"/api/v1/workflows/{workflow.id}", body, format="json")
    assert response.status_code == status, response.content


@pytest.mark.parametrize(("version", "status"), [(" 1 ", 200), ("", 200), ("\n", 200), ("latest", 200),
                                                 ("²", 400), ("0", 400), ("x", 400)])  # fmt: skip
def test_version_spec_is_read_as_its_schema_says(api_key_client, org, version, status):
    workflow = WorkflowFactory(organization=org)
    response = api_key_client.get(f"/api/v1/workflows/{workflow.id}/input-schema", {"version": version})
    assert response.status_code == status, response.content


@pytest.mark.parametrize(("value", "status"), [("TRUE", 200), (" no\n", 200), ("", 200), ("maybe", 400)])
def test_is_builtin_is_read_as_its_schema_says(api_key_client, value, status):
    assert api_key_client.get("/api/v1/templates", {"is_builtin": value}).status_code == status


@pytest.mark.parametrize("number", ["³", "0", "x"])
def test_a_version_number_that_is_no_number_is_not_found(api_key_client, org, number):
    workflow = WorkflowFactory(organization=org)
    response = api_key_client.get(f"/api/v1/workflows/{workflow.id}/versions/{number}")
    assert response.status_code == 404, response.content


@pytest.mark.parametrize(("value", "status"), [("", 200), ("TRUE", 200), ("0", 200), ("on", 400), ("x", 400)])
def test_audit_verify_full_is_read_as_its_schema_says(api_key_client, value, status):
    assert api_key_client.get("/api/v1/audit/verify", {"full": value}).status_code == status


@pytest.mark.parametrize(
    ("description", "status"),
    [("d" * 2000, 201), (" " + "d" * 2000, 400), ("d" * 2000 + "\n", 400), (" " + "d" * 1999, 201)],
)
def test_a_maximum_length_holds_for_the_string_as_sent(api_key_client, description, status):
    """maxLength counts the whitespace around the string too (DRF checked the trimmed string)."""
    body = {"name": "P", "description": description}
    response = api_key_client.post("/api/v1/projects", body, format="json")
    assert response.status_code == status, response.content
