"""Built-in template loading, organisation templates, list/get/install, and their isolation."""

import json

import pytest

from audit.models import AuditEvent
from tests.workflows.support.helpers import definition, make_workflow, owner_actor, transform
from workflows.models import Workflow, WorkflowTemplate
from workflows.services import template_save_from_workflow
from workflows.templates_loader import BUILTIN_TEMPLATES_DIR, builtin_template_files, templates_sync_builtin

pytestmark = pytest.mark.django_db


def write_template(directory, tpl_id, name, category="reporting", steps=None):
    data = {"id": tpl_id, "name": name, "description": f"{name} template", "category": category,
            "definition": definition(name, steps=steps)}  # fmt: skip
    (directory / f"{tpl_id}.json").write_text(json.dumps(data))
    return data


@pytest.fixture
def builtins(tmp_path):
    write_template(tmp_path, "tpl_report", "Nightly report")
    write_template(tmp_path, "tpl_triage", "Incident triage", category="operations")
    result = templates_sync_builtin(directory=tmp_path)
    assert sorted(result.created) == ["tpl_report", "tpl_triage"]
    return tmp_path


@pytest.fixture
def org_template(org, owner):
    workflow = make_workflow(org, owner, "Lead enrichment")
    return template_save_from_workflow(workflow=workflow, actor=owner_actor(org, owner), category="sales")


def test_sync_is_idempotent_and_follows_the_files(builtins):
    assert WorkflowTemplate.objects.filter(is_builtin=True).count() == 2
    again = templates_sync_builtin(directory=builtins)
    assert (again.created, again.updated, again.removed) == ([], [], [])
    write_template(builtins, "tpl_report", "Nightly report", steps=[transform("only", "changed")])
    (builtins / "tpl_triage.json").unlink()
    changed = templates_sync_builtin(directory=builtins)
    assert (changed.updated, changed.removed) == (["tpl_report"], ["tpl_triage"])
    report = WorkflowTemplate.objects.get(pk="tpl_report")
    assert report.is_builtin and report.organization is None
    assert report.definition["steps"][0]["id"] == "only"


def test_sync_skips_invalid_files(tmp_path):
    (tmp_path / "broken.json").write_text("{not json")
    write_template(tmp_path, "tpl_bad", "Bad", steps=[transform("a", "x", ["ghost"])])
    write_template(tmp_path, "tpl_good", "Good")
    result = templates_sync_builtin(directory=tmp_path)
    assert result.created == ["tpl_good"]
    assert not WorkflowTemplate.objects.filter(pk="tpl_bad").exists()


def test_shipped_templates_are_all_loaded():
    shipped = builtin_template_files(BUILTIN_TEMPLATES_DIR)
    on_disk = list(BUILTIN_TEMPLATES_DIR.glob("*.json")) if BUILTIN_TEMPLATES_DIR.is_dir() else []
    assert len(shipped) == len(on_disk), "a shipped built-in template does not validate"
    templates_sync_builtin()
    assert set(WorkflowTemplate.objects.filter(is_builtin=True).values_list("id", flat=True)) == {
        t["id"] for t in shipped
    }


def test_list_has_builtins_and_own_templates_only(
    api_key_client, builtins, org_template, other_org, outsider
):
    foreign = template_save_from_workflow(
        workflow=make_workflow(other_org, outsider, "Secret sauce"), actor=owner_actor(other_org, outsider)
    )
    body = api_key_client.get("/api/v1/templates").json()
    ids = {t["id"] for t in body["templates"]}
    assert ids == {"tpl_report", "tpl_triage", org_template.id} and foreign.id not in ids
    assert body["total"] == 3
    entry = next(t for t in body["templates"] if t["id"] == "tpl_report")
    assert entry["is_builtin"] is True and entry["step_count"] == 2 and "definition" not in entry


def test_list_filters(api_key_client, builtins, org_template):
    def ids(**params):
        response = api_key_client.get("/api/v1/templates", params)
        assert response.status_code == 200
        return sorted(t["id"] for t in response.json()["templates"])

    assert ids(category="operations") == ["tpl_triage"]
    assert ids(is_builtin="true") == ["tpl_report", "tpl_triage"]
    assert ids(is_builtin="false") == [org_template.id]
    assert ids(search="enrich") == [org_template.id]
    assert api_key_client.get("/api/v1/templates", {"is_builtin": "perhaps"}).status_code == 400


def test_get_template(api_key_client, outsider_key_client, builtins, org_template):
    body = api_key_client.get("/api/v1/templates/tpl_report").json()
    assert body["definition"]["name"] == "Nightly report" and body["input_schema"]["type"] == "object"
    assert outsider_key_client.get("/api/v1/templates/tpl_report").status_code == 200
    hidden = outsider_key_client.get(f"/api/v1/templates/{org_template.id}")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "template_not_found"


def test_install_creates_a_draft_and_audits(api_key_client, org, builtins):
    response = api_key_client.post(
        "/api/v1/templates/tpl_report/install", {"name": "Our report"}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    workflow = Workflow.objects.get(pk=body["workflow_id"], organization=org)
    assert workflow.name == "Our report" and workflow.status == "draft" and workflow.current_version == 1
    assert (
        body["workflow"]["definition"]["steps"]
        == WorkflowTemplate.objects.get(pk="tpl_report").definition["steps"]
    )
    event = AuditEvent.objects.get(organization=org, event="template.installed")
    assert event.target_id == workflow.id and event.data["template_id"] == "tpl_report"
    default_name = api_key_client.post("/api/v1/templates/tpl_report/install", {}, format="json").json()
    assert default_name["workflow"]["name"] == "Nightly report"
    assert default_name["workflow"]["slug"] == "nightly-report"


def test_install_of_another_orgs_template_is_404(outsider_key_client, org_template):
    response = outsider_key_client.post(f"/api/v1/templates/{org_template.id}/install", {}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "template_not_found"


def test_save_as_template(api_key_client, org, workflow):
    url = f"/api/v1/workflows/{workflow.slug}/save-as-template"
    response = api_key_client.post(url, {"name": "Greeting", "category": "demo"}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    template = WorkflowTemplate.objects.get(pk=body["template_id"])
    assert template.organization == org and not template.is_builtin and template.category == "demo"
    assert body["template"]["definition"] == definition() and template.source_workflow_id == workflow.id
    event = AuditEvent.objects.get(organization=org, event="template.created")
    assert event.target_type == "template" and event.target_id == template.id
    assert api_key_client.post(url, {"version": 5}, format="json").status_code == 404


def test_delete_own_template_but_not_builtin(api_key_client, org, builtins, org_template):
    assert api_key_client.delete(f"/api/v1/templates/{org_template.id}").status_code == 204
    assert not WorkflowTemplate.objects.filter(pk=org_template.pk).exists()
    assert AuditEvent.objects.filter(organization=org, event="template.deleted").count() == 1
    builtin = api_key_client.delete("/api/v1/templates/tpl_report")
    assert builtin.status_code == 409 and builtin.json()["error"]["code"] == "template_builtin"
