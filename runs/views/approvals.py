"""The approvals inbox: every run waiting for a decision or an answer the signed-in person may give."""

from django.shortcuts import render

from accounts.dashboard import dashboard_page
from runs.views.selectors import awaiting_person
from workflows.forms import SchemaForm


@dashboard_page()
def approvals_inbox(request):
    """Newest first; approvals are decided in place (htmx posts to the run's decide action and swaps the
    item for the outcome), input requests link to the run's answer form."""
    items = awaiting_person(principal=request.principal)
    for item in items:
        if item.kind == "input":
            item.form = SchemaForm(item.schema, prefix=f"in-{item.step.step_id}")
    context = {"nav_active": "approvals", "items": items, "can_decide": request.principal.has_role("member")}
    return render(request, "approvals/inbox.html", context)
