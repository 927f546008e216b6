"""Dashboard pages of the workflows app: a workflow's detail with its DAG drawn as SVG, templates."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts.choices import Role
from accounts.dashboard import dashboard_page
from workflows.definition import input_schema
from workflows.graph import dag_layout
from workflows.selectors import (
    template_get,
    template_list,
    workflow_get,
    workflow_version_get,
    workflow_versions,
)
from workflows.services import template_install


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
