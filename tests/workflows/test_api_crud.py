"""Create, read, update (new version), metadata PATCH, list filters, references by id and slug."""

import pytest

from audit.models import AuditEvent
from tests.factories import ProjectFactory
from tests.workflows.support.helpers import definition, make_workflow, transform
from workflows.models import Workflow, WorkflowVersion

pytestmark = pytest.mark.django_db


def events(org, event):
    return list(AuditEvent.objects.filter(organization=org, event=event).order_by("seq"))


def test_create_returns_201_with_id_and_workflow(api_key_client, org):
    response = api_key_client.post(
        "/api/v1/workflows", {"definition": definition("Fetch and notify")}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    wf = body["workflow"]
    assert body["id"] == wf["id"] and wf["id"].startswith("wf_")
    assert wf["name"] == "Fetch and notify" and wf["description"] == "Greets someone."
    assert wf["slug"] == "fetch-and-notify"
    assert wf["status"] == "draft" and wf["trigger_type"] == "api"
    assert wf["current_version"] == 1 and wf["version"] == 1 and wf["published_version"] is None
    assert wf["definition"] == definition("Fetch and notify")
    assert wf["input_schema"]["required"] == ["who"]
    assert wf["project"] is None and wf["tags"] == []
    assert len(wf["content_hash"]) == 64
    [event] = events(org, "workflow.created")
    assert event.target_type == "workflow" and event.target_id == wf["id"] and event.data["version"] == 1


def test_create_with_metadata_embeds_project(api_key_client, org):
    project = ProjectFactory(organization=org, name="Ops")
    body = {
        "definition": definition(),
        "trigger_type": "schedule",
        "tags": ["nightly", " ops ", "nightly"],
        "project": project.id,
        "status": "active",
        "concurrency": {"limit": 2, "key": "{{ inputs.who }}", "on_limit": "reject"},
        "retention_days": 30,
        "webhook_enabled": True,
    }
    wf = api_key_client.post("/api/v1/workflows", body, format="json").json()["workflow"]
    assert wf["project"] == {"id": project.id, "name": "Ops"}
    assert wf["tags"] == ["nightly", "ops"]
    assert wf["status"] == "active" and wf["trigger_type"] == "schedule"
    assert wf["concurrency"] == {"limit": 2, "key": "{{ inputs.who }}", "on_limit": "reject"}
    assert wf["retention_days"] == 30 and wf["webhook_enabled"] is True


def test_invalid_definition_is_422_with_every_sentence(api_key_client, org):
    bad = definition(steps=[transform("a", "x", ["missing"])])
    response = api_key_client.post("/api/v1/workflows", {"definition": bad}, format="json")
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_definition"
    assert "Step 'a' depends on 'missing' which doesn't exist" in error["details"]["errors"]
    assert not Workflow.objects.exists() and not events(org, "workflow.created")


def test_definition_that_is_not_an_object_is_422(api_key_client):
    response = api_key_client.post("/api/v1/workflows", {"definition": ["steps"]}, format="json")
    assert response.status_code == 422 and response.json()["error"]["details"]["errors"]


@pytest.mark.parametrize(
    "body, field",
    [
        ({}, "definition"),
        ({"definition": definition(), "status": "archived"}, "status"),
        ({"definition": definition(), "trigger_type": "cron"}, "trigger_type"),
        ({"definition": definition(), "tags": ["x"] * 0 + ["t"] * 1 + [f"t{i}" for i in range(20)]}, "tags"),
        ({"definition": definition(), "tags": ["x" * 51]}, "tags"),
        ({"definition": definition(), "tags": [" "]}, "tags"),
        ({"definition": definition(), "concurrency": {"limit": 0}}, "concurrency"),
        ({"definition": definition(), "concurrency": {"limit": 1, "on_limit": "drop"}}, "concurrency"),
        ({"definition": definition(), "concurrency": {"limit": 1, "extra": 1}}, "concurrency"),
        ({"definition": definition(), "retention_days": 0}, "retention_days"),
        ({"definition": definition(), "project": "proj_nope"}, "project"),
        ({"definition": definition(), "colour": "red"}, "colour"),
    ],
)
def test_create_rejects_bad_fields_with_400(api_key_client, body, field):
    response = api_key_client.post("/api/v1/workflows", body, format="json")
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and field in error["details"]["fields"]
    assert not Workflow.objects.exists()


def test_other_orgs_project_is_refused(api_key_client, other_org):
    project = ProjectFactory(organization=other_org)
    response = api_key_client.post(
        "/api/v1/workflows", {"definition": definition(), "project": project.id}, format="json"
    )
    assert response.status_code == 400 and "project" in response.json()["error"]["details"]["fields"]


def test_body_over_the_request_limit_is_413(api_key_client, settings):
    big = definition(steps=[transform("a", "x" * 1_100_000)])
    response = api_key_client.post("/api/v1/workflows", {"definition": big}, format="json")
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "payload_too_large"


def test_slugs_are_deduplicated_per_organisation(org, owner, other_org, outsider):
    first, second, third = (make_workflow(org, owner, "Daily Report") for _ in range(3))
    assert [first.slug, second.slug, third.slug] == ["daily-report", "daily-report-2", "daily-report-3"]
    assert make_workflow(other_org, outsider, "Daily Report").slug == "daily-report"


def test_slugs_never_look_like_ids_or_routes(org, owner):
    assert make_workflow(org, owner, "wf_01abc").slug == "wf-01abc"
    assert make_workflow(org, owner, "Validate").slug == "validate-2"
    assert make_workflow(org, owner, "!!!").slug == "workflow"


def test_get_by_id_and_by_slug(api_key_client, workflow):
    by_id = api_key_client.get(f"/api/v1/workflows/{workflow.id}")
    by_slug = api_key_client.get(f"/api/v1/workflows/{workflow.slug}")
    assert by_id.status_code == by_slug.status_code == 200
    assert by_id.json() == by_slug.json()
    assert by_id.json()["definition"]["steps"][0]["id"] == "hello"


def test_unknown_ref_is_workflow_not_found(api_key_client):
    for ref in ("wf_nothing", "no-such-slug"):
        response = api_key_client.get(f"/api/v1/workflows/{ref}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "workflow_not_found"


def test_other_org_workflow_is_404_by_id_and_slug(outsider_key_client, workflow):
    for ref in (workflow.id, workflow.slug):
        response = outsider_key_client.get(f"/api/v1/workflows/{ref}")
        assert response.status_code == 404 and response.json()["error"]["code"] == "workflow_not_found"


def test_get_with_version_parameter(api_key_client, workflow):
    new = definition(steps=[transform("only", "v2")])
    assert (
        api_key_client.put(f"/api/v1/workflows/{workflow.id}", {"definition": new}, format="json").status_code
        == 200
    )
    url = f"/api/v1/workflows/{workflow.id}"
    assert api_key_client.get(url).json()["version"] == 2
    assert api_key_client.get(url, {"version": "latest"}).json()["definition"] == new
    assert api_key_client.get(url, {"version": "1"}).json()["definition"] == definition()
    missing = api_key_client.get(url, {"version": "published"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"
    assert api_key_client.get(url, {"version": "9"}).json()["error"]["code"] == "version_not_found"
    assert api_key_client.get(url, {"version": "first"}).status_code == 400
    api_key_client.post(f"{url}/publish", {"version": 1}, format="json")
    assert api_key_client.get(url, {"version": "published"}).json()["version"] == 1


def test_put_creates_a_new_version_and_keeps_old_ones(api_key_client, org, workflow):
    new = definition("Greeter v2", steps=[transform("hello", "Hi {{ inputs.who }}")])
    response = api_key_client.put(
        f"/api/v1/workflows/{workflow.slug}", {"definition": new, "change_summary": "Shorter"}, format="json"
    )
    assert response.status_code == 200, response.content
    wf = response.json()
    assert wf["current_version"] == 2 and wf["name"] == "Greeter v2" and wf["change_summary"] == "Shorter"
    assert wf["slug"] == "greeter"  # slugs stay stable across renames
    assert WorkflowVersion.objects.filter(workflow=workflow).count() == 2
    assert WorkflowVersion.objects.get(workflow=workflow, number=1).definition == definition()
    [event] = events(org, "workflow.updated")
    assert event.data == {"version": 2, "change_summary": "Shorter"}


def test_put_with_identical_definition_creates_no_version(api_key_client, org, workflow):
    response = api_key_client.put(
        f"/api/v1/workflows/{workflow.id}", {"definition": definition()}, format="json"
    )
    assert response.status_code == 200 and response.json()["current_version"] == 1
    assert not events(org, "workflow.updated")


def test_put_invalid_definition_is_422_and_changes_nothing(api_key_client, workflow):
    bad = definition(steps=[transform("a", "x", ["a"])])
    response = api_key_client.put(f"/api/v1/workflows/{workflow.id}", {"definition": bad}, format="json")
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_definition"
    workflow.refresh_from_db()
    assert workflow.current_version == 1


def test_put_base_version_is_compare_and_set(api_key_client, workflow):
    url = f"/api/v1/workflows/{workflow.id}"
    new = definition(steps=[transform("x", "1")])
    assert api_key_client.put(url, {"definition": new, "base_version": 1}, format="json").status_code == 200
    other = definition(steps=[transform("y", "2")])
    stale = api_key_client.put(url, {"definition": other, "base_version": 1}, format="json")
    assert stale.status_code == 409 and stale.json()["error"]["code"] == "version_conflict"


def test_patch_changes_metadata_without_a_version(api_key_client, org, workflow):
    project = ProjectFactory(organization=org, name="Growth")
    body = {
        "name": "Renamed",
        "description": "New words",
        "tags": ["a", "b"],
        "project": project.id,
        "concurrency": {"limit": 1, "key": None, "on_limit": "queue"},
        "retention_days": 7,
        "webhook_enabled": True,
    }
    response = api_key_client.patch(f"/api/v1/workflows/{workflow.id}", body, format="json")
    assert response.status_code == 200, response.content
    wf = response.json()
    assert wf["current_version"] == 1 and wf["name"] == "Renamed" and wf["tags"] == ["a", "b"]
    assert wf["project"] == {"id": project.id, "name": "Growth"} and wf["retention_days"] == 7
    [event] = events(org, "workflow.updated")
    assert event.data["metadata"]["name"] == {"from": "Greeter", "to": "Renamed"}
    assert event.data["metadata"]["project"] == {"from": None, "to": project.id}
    cleared = api_key_client.patch(f"/api/v1/workflows/{workflow.id}", {"project": None, "concurrency": None},
                                   format="json").json()  # fmt: skip
    assert cleared["project"] is None and cleared["concurrency"] is None


def test_patch_refuses_definition_and_unknown_fields(api_key_client, workflow):
    for body in ({"definition": definition()}, {"status": "active"}, {"slug": "x"}):
        response = api_key_client.patch(f"/api/v1/workflows/{workflow.id}", body, format="json")
        assert response.status_code == 400


def test_patch_with_no_change_writes_no_event(api_key_client, org, workflow):
    api_key_client.patch(f"/api/v1/workflows/{workflow.id}", {"name": "Greeter"}, format="json")
    assert not events(org, "workflow.updated")


def test_webhook_secret_only_for_admins_and_never_in_lists(api_key_client, make_key_client, make_jwt_client,
                                                           member, workflow):  # fmt: skip
    assert (
        api_key_client.get(f"/api/v1/workflows/{workflow.id}").json()["webhook_secret"]
        == workflow.webhook_secret
    )
    member_view = (
        make_jwt_client(member, workflow.organization).get(f"/api/v1/workflows/{workflow.id}").json()
    )
    assert "webhook_secret" not in member_view
    reader = make_key_client(["workflows:read"])
    assert "webhook_secret" not in reader.get(f"/api/v1/workflows/{workflow.id}").json()
    listed = api_key_client.get("/api/v1/workflows").json()["workflows"][0]
    assert "webhook_secret" not in listed and "definition" not in listed


def test_validate_endpoint(api_key_client):
    ok = api_key_client.post("/api/v1/workflows/validate", {"definition": definition()}, format="json")
    assert ok.status_code == 200 and ok.json() == {"valid": True, "errors": []}
    cycle = definition(steps=[transform("step_a", "1", ["step_b"]), transform("step_b", "2", ["step_a"])])
    bad = api_key_client.post("/api/v1/workflows/validate", {"definition": cycle}, format="json").json()
    assert bad["valid"] is False
    assert any(error.startswith("Cycle detected: ") for error in bad["errors"])
    assert api_key_client.post("/api/v1/workflows/validate", {}, format="json").status_code == 400


def test_input_schema_endpoint(api_key_client, workflow):
    response = api_key_client.get(f"/api/v1/workflows/{workflow.slug}/input-schema")
    assert response.status_code == 200
    assert response.json() == {"workflow_id": workflow.id, "version": 1, "schema": definition()["inputs"]}


class TestList:
    @pytest.fixture
    def fleet(self, org, owner):
        ops = ProjectFactory(organization=org, name="Ops")
        return {
            "report": make_workflow(org, owner, "Nightly report", tags=["nightly", "ops"], project_id=ops.id,
                                    trigger_type="schedule", status="active"),
            "triage": make_workflow(org, owner, "Incident triage", tags=["ops"], trigger_type="webhook"),
            "enrich": make_workflow(org, owner, "Lead enrichment", tags=["sales"], status="paused"),
            "old": make_workflow(org, owner, "Old thing", tags=["ops"]),
            "ops": ops,
        }  # fmt: skip

    @pytest.fixture
    def archived(self, api_key_client, fleet):
        assert api_key_client.delete(f"/api/v1/workflows/{fleet['old'].id}").status_code == 204
        return fleet["old"]

    def names(self, client, **params):
        response = client.get("/api/v1/workflows", params)
        assert response.status_code == 200, response.content
        return sorted(wf["name"] for wf in response.json()["workflows"])

    def test_shape_and_archived_hidden_by_default(self, api_key_client, fleet, archived):
        body = api_key_client.get("/api/v1/workflows").json()
        assert set(body) == {"workflows", "total", "limit", "offset"}
        assert body["total"] == 3 and body["limit"] == 20 and body["offset"] == 0
        assert "Old thing" in self.names(api_key_client, include_archived="true")
        assert self.names(api_key_client, status="archived") == ["Old thing"]

    def test_filters(self, api_key_client, fleet, archived):
        assert self.names(api_key_client, status="active") == ["Nightly report"]
        assert self.names(api_key_client, trigger_type="webhook") == ["Incident triage"]
        assert self.names(api_key_client, tag="ops") == ["Incident triage", "Nightly report"]
        assert self.names(api_key_client, tag="ops", include_archived="1") == [
            "Incident triage", "Nightly report", "Old thing"]  # fmt: skip
        assert self.names(api_key_client, project=fleet["ops"].id) == ["Nightly report"]
        assert self.names(api_key_client, search="TRIAGE") == ["Incident triage"]
        assert self.names(api_key_client, search="greets") == [
            "Incident triage",
            "Lead enrichment",
            "Nightly report",
        ]

    def test_repeated_tags_must_all_match(self, api_key_client, fleet):
        response = api_key_client.get("/api/v1/workflows?tag=ops&tag=nightly")
        assert [wf["name"] for wf in response.json()["workflows"]] == ["Nightly report"]

    @pytest.mark.parametrize(
        "params", [{"limit": "201"}, {"limit": "0"}, {"offset": "-1"}, {"status": "sleeping"},
                   {"include_archived": "maybe"}, {"trigger_type": "cron"}]
    )  # fmt: skip
    def test_bad_query_values_are_400(self, api_key_client, fleet, params):
        response = api_key_client.get("/api/v1/workflows", params)
        assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_request"

    def test_pagination(self, api_key_client, fleet):
        page = api_key_client.get("/api/v1/workflows", {"limit": 2, "offset": 1}).json()
        assert page["total"] == 4 and len(page["workflows"]) == 2 and page["limit"] == 2
        assert api_key_client.get("/api/v1/workflows", {"limit": 200}).status_code == 200

    def test_other_org_lists_nothing(self, outsider_key_client, fleet):
        assert outsider_key_client.get("/api/v1/workflows").json()["total"] == 0
