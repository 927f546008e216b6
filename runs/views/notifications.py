"""A workflow's failure notices (docs/notifications.md): each person subscribes or unsubscribes themselves,
and admins see and remove anyone's subscription from the workflow's settings page. The workflow page and
the settings page load these sections (htmx); each also stands alone as a page without JavaScript."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.choices import Role
from accounts.dashboard import dashboard_page
from runs.models import WorkflowSubscription
from runs.services.subscriptions import subscribers_of, subscription_remove, subscription_set
from workflows.selectors import workflow_get


def _partial(request) -> bool:
    return bool(request.headers.get("HX-Request"))


@require_http_methods(["GET", "POST"])
@dashboard_page()
def workflow_notifications(request, ref: str):
    """GET: who follows the workflow's failures and whether you do; POST `subscribe` = "1" or "0"."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    if request.method == "POST":
        subscription_set(
            workflow=workflow, actor=request.principal, subscribed=request.POST.get("subscribe") == "1"
        )
        if not _partial(request):
            return redirect("dashboard:workflow-detail", workflow.id)
    context = {
        "workflow": workflow,
        "subscribed": WorkflowSubscription.objects.filter(workflow=workflow, user=request.user).exists(),
        "subscribers": subscribers_of(workflow),
        "nav_active": "workflows",
    }
    return render(request, f"workflows/{'_' if _partial(request) else ''}notifications.html", context)


def _subscribers_response(request, workflow, status: int = 200):
    context = {
        "workflow": workflow,
        "subscribers": subscribers_of(workflow),
        "can_remove": request.principal.has_role(Role.ADMIN),
        "nav_active": "workflows",
    }
    page = "workflows/_subscribers.html" if _partial(request) else "workflows/subscribers.html"
    return render(request, page, context, status=status)


@dashboard_page()
def workflow_subscribers(request, ref: str):
    """Who is told by email when a run fails; admins and owners get a Remove button for each."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    return _subscribers_response(request, workflow)


@require_POST
@dashboard_page(role=Role.ADMIN)
def workflow_subscriber_remove(request, ref: str, user_id: str):
    """Remove one person's subscription (subscription_remove: admins and owners)."""
    workflow = workflow_get(organization=request.principal.organization, ref=ref)
    person = subscription_remove(workflow=workflow, actor=request.principal, user_id=user_id)
    if not _partial(request):
        messages.success(request, f"{person.email} is no longer told when a run of {workflow.name} fails.")
        return redirect("dashboard:workflow-settings", workflow.id)
    return _subscribers_response(request, workflow)
