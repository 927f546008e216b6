"""A workflow's failure notices (docs/notifications.md): each person subscribes or unsubscribes themselves;
the workflow page loads this section (htmx), which also stands alone as a page without JavaScript."""

from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from accounts.dashboard import dashboard_page
from runs.models import WorkflowSubscription
from workflows.selectors import workflow_get


@require_http_methods(["GET", "POST"])
@dashboard_page()
def workflow_notifications(request, ref: str):
    """GET: who follows the workflow's failures and whether you do; POST `subscribe` = "1" or "0"."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    mine = WorkflowSubscription.objects.filter(workflow=workflow, user=request.user)
    if request.method == "POST":
        if request.POST.get("subscribe") == "1":
            WorkflowSubscription.objects.get_or_create(workflow=workflow, user=request.user)
        else:
            mine.delete()
        if not request.headers.get("HX-Request"):
            return redirect("dashboard:workflow-detail", workflow.id)
    subscribers = (
        WorkflowSubscription.objects.filter(
            workflow=workflow, user__memberships__organization=workflow.organization
        )
        .select_related("user")
        .order_by("user__email")
    )
    context = {
        "workflow": workflow,
        "subscribed": mine.exists(),
        "subscribers": [s.user for s in subscribers],
        "nav_active": "workflows",
    }
    partial = bool(request.headers.get("HX-Request"))
    return render(request, f"workflows/{'_' if partial else ''}notifications.html", context)
