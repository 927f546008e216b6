"""Dashboard pages of the workflows app: a workflow's detail with its DAG drawn as SVG."""

from django.shortcuts import render

from accounts.dashboard import dashboard_page
from workflows.definition import input_schema
from workflows.graph import dag_layout
from workflows.selectors import workflow_get, workflow_version_get, workflow_versions


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
