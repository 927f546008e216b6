"""Dashboard pages of the workflows app: a workflow's detail with its DAG drawn as SVG, templates."""

import json

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.choices import Role
from accounts.dashboard import dashboard_page
from config.errors import ApplicationError, Forbidden, InvalidRequest
from workflows.choices import WorkflowStatus
from workflows.definition import input_schema
from workflows.graph import dag_layout
from workflows.selectors import (
    template_get,
    template_list,
    workflow_get,
    workflow_version_get,
    workflow_versions,
)
from workflows.services import (
    definition_errors,
    template_install,
    workflow_archive,
    workflow_create,
    workflow_delete_permanent,
    workflow_publish,
    workflow_rollback,
    workflow_set_status,
    workflow_unarchive,
    workflow_update,
)


@dashboard_page()
def workflow_detail(request, ref: str):
    """The workflow's facts, its latest version's DAG (layered layout computed here), each step's
    config, the inputs it takes and its versions. Another organisation's workflow is a 404."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    version = workflow_version_get(workflow=workflow, spec="latest")
    definition = version.definition
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "version": version,
        "layout": dag_layout(definition),
        "steps": [step for step in definition.get("steps") or [] if isinstance(step, dict)],
        "inputs": (input_schema(definition).get("properties") or {}),
        "versions": workflow_versions(workflow=workflow).only(
            "number", "change_summary", "created_at", "created_by", "workflow_id"
        )[:20],
    }
    return render(request, "workflows/detail.html", context)


@dashboard_page()
def template_gallery(request):
    """The built-in templates and the organisation's own, each with its steps drawn; members install one
    as a new draft workflow (template_install, as POST /templates/{id}/install does)."""
    templates = list(template_list(organization=request.principal.organization).order_by("category", "name"))
    for template in templates:
        template.layout = dag_layout(template.definition) if isinstance(template.definition, dict) else None
    return render(request, "workflows/templates.html", {"nav_active": "workflows", "templates": templates})


@require_POST
@dashboard_page(role=Role.MEMBER)
def template_install_view(request, template_id: str):
    organization = request.principal.organization
    template = template_get(organization=organization, template_id=template_id)
    name = (request.POST.get("name") or "").strip() or None
    workflow = template_install(
        template=template, organization=organization, actor=request.principal, name=name
    )
    messages.success(request, f"Workflow {workflow.name} created from the template {template.name}.")
    return redirect("dashboard:workflow-detail", ref=workflow.id)


WORKFLOW_MESSAGES = {
    "archive": "Archived: hidden from the list and refusing runs; its versions and runs are kept.",
    "unarchive": "Unarchived: it is a draft again.",
    "activate": "Active.",
    "pause": "Paused: new runs are refused until it is active again.",
    "publish": "Published: runs asking for the published version get this one.",
    "rollback": "Rolled back: a new version with that version's definition.",
}


def _number(text: str) -> int | None:
    """A form's version number (ASCII digits only: `int()` would take other scripts' digits or raise)."""
    return int(text) if text.isascii() and text.isdigit() else None


@require_POST
@dashboard_page(role=Role.MEMBER)
def workflow_action(request, ref: str):
    """Archive, unarchive, activate, pause, publish a version, roll back to one (members), or delete an
    archived workflow for good (owners), through the API's services."""
    organization, actor = request.principal.organization, request.principal
    workflow = workflow_get(organization=organization, ref=ref)
    action = request.POST.get("action", "")
    version = request.POST.get("version", "")
    if action == "delete":
        if not request.principal.has_role(Role.OWNER):
            raise Forbidden("forbidden", "Only an owner may delete a workflow for good.")
        workflow_delete_permanent(workflow=workflow, actor=actor)
        messages.success(request, f"Workflow {workflow.name} deleted.")
        return redirect("dashboard:workflow-list")
    if action not in WORKFLOW_MESSAGES or (action == "rollback" and _number(version) is None):
        raise InvalidRequest("invalid_request", "Unknown action.")
    if action == "archive":
        workflow_archive(workflow=workflow, actor=actor)
    elif action == "unarchive":
        workflow_unarchive(workflow=workflow, actor=actor)
    elif action in ("activate", "pause"):
        status = WorkflowStatus.ACTIVE if action == "activate" else WorkflowStatus.PAUSED
        workflow_set_status(workflow=workflow, actor=actor, status=status)
    elif action == "publish":
        workflow_publish(workflow=workflow, actor=actor, version=_number(version))
    else:
        workflow_rollback(workflow=workflow, actor=actor, version=_number(version))
    messages.success(request, WORKFLOW_MESSAGES[action])
    return redirect("dashboard:workflow-detail", ref=workflow.id)


def _parse(text: str) -> tuple[dict | None, list[str]]:
    """The definition typed in the editor, or the reasons it cannot be saved."""
    try:
        definition = json.loads(text)
    except ValueError as exc:
        return None, [f"Not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."]
    if not isinstance(definition, dict):
        return None, ["The definition must be a JSON object."]
    return definition, definition_errors(definition)


BLANK = {
    "name": "New workflow",
    "steps": [{"id": "hello", "type": "transform", "config": {"value": "Hello"}}],
}


@dashboard_page(role=Role.MEMBER)
def workflow_edit(request, ref: str | None = None):
    """The definition as JSON, checked as you type (`definition_validate`) and saved as a new version
    through workflow_update (or a new workflow through workflow_create when `ref` is None). A save based
    on an older version than the latest is refused (409 version_conflict), so nobody's edit is lost."""
    organization, actor = request.principal.organization, request.principal
    workflow = workflow_get(organization=organization, ref=ref) if ref else None
    latest = workflow_version_get(workflow=workflow, spec="latest") if workflow else None
    text = json.dumps(latest.definition if latest else BLANK, indent=2, ensure_ascii=False)
    errors, status = [], 200
    if request.method == "POST":
        text = request.POST.get("definition", "")
        definition, errors = _parse(text)
        summary = request.POST.get("change_summary", "")[:500]
        if not errors:
            try:
                if workflow is None:
                    workflow = workflow_create(organization=organization, actor=actor, definition=definition)
                else:
                    base = request.POST.get("base_version", "")
                    workflow, _ = workflow_update(
                        workflow=workflow, actor=actor, definition=definition, change_summary=summary,
                        base_version=_number(base),
                    )  # fmt: skip
            except ApplicationError as exc:
                errors, status = (exc.details or {}).get("errors") or [exc.message], exc.status
            else:
                created = latest is None or workflow.current_version != latest.number
                messages.success(request, "Saved." if created else "No change: it equals the latest version.")
                return redirect("dashboard:workflow-detail", ref=workflow.id)
        else:
            status = 400
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "latest": latest,
        "text": text,
        "errors": errors,
    }
    return render(request, "workflows/edit.html", context, status=status)


@require_POST
@dashboard_page()
def definition_validate(request):
    """The editor's live check (htmx, on typing): the definition's problems, or that it may be saved."""
    _, errors = _parse(request.POST.get("definition", ""))
    return render(request, "workflows/_errors.html", {"errors": errors, "checked": True})
