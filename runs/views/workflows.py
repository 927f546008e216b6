"""Workflow pages that involve runs: the list (with each workflow's last run) and the run form."""

from django.contrib import messages
from django.shortcuts import redirect, render

from accounts.dashboard import dashboard_page
from config.errors import ApplicationError
from runs.services import run_trigger
from runs.views.selectors import last_runs_attach, workflows_listed
from workflows.choices import WorkflowStatus
from workflows.definition import input_schema
from workflows.forms import SchemaForm
from workflows.models import WorkflowTag
from workflows.selectors import workflow_get, workflow_version_get

PAGE_SIZE = 50


@dashboard_page()
def workflow_list(request):
    """Search by name or slug, filter by status and tag; each row shows its newest run's status."""
    organization = request.principal.organization
    search = request.GET.get("q", "").strip()[:100]
    status = request.GET.get("status", "")
    status = status if status in WorkflowStatus.values else ""
    tag = request.GET.get("tag", "").strip()[:50]
    workflows = list(
        workflows_listed(organization=organization, search=search, status=status, tag=tag)[: PAGE_SIZE + 1]
    )
    last_runs_attach(workflows[:PAGE_SIZE])
    tags = (
        WorkflowTag.objects.filter(workflow__organization=organization)
        .order_by("name")
        .values_list("name", flat=True)
        .distinct()
    )
    context = {
        "nav_active": "workflows",
        "workflows": workflows[:PAGE_SIZE],
        "more": len(workflows) > PAGE_SIZE,
        "filtered": bool(search or status or tag),
        "q": search,
        "status": status,
        "tag": tag,
        "statuses": WorkflowStatus.choices,
        "tags": list(tags),
    }
    return render(request, "workflows/list.html", context)


@dashboard_page(role="member")
def workflow_run(request, ref: str):
    """A form generated from the latest version's input schema. Submitting triggers a run through
    run_trigger (the API's service: same checks, quota and audit) and opens the run's page."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    version = workflow_version_get(workflow=workflow, spec="latest")
    schema = input_schema(version.definition)
    form = SchemaForm(schema, request.POST if request.method == "POST" else None)
    error = None
    status = 200
    if request.method == "POST":
        if form.is_valid():
            try:
                run = run_trigger(
                    workflow=workflow,
                    actor=request.principal,
                    version_spec=version.number,
                    input_data=form.value(),
                )
            except ApplicationError as exc:
                form.add_service_errors((exc.details or {}).get("fields") or {})
                error, status = exc.message, exc.status
            else:
                messages.success(request, f"Run {run.id} started.")
                return redirect("dashboard:run-detail", run_id=run.id)
        else:
            status = 400
    context = {
        "nav_active": "workflows",
        "workflow": workflow,
        "version": version,
        "form": form,
        "error": error,
    }
    return render(request, "workflows/run.html", context, status=status)
