"""The overview: the last 24 hours by status, what waits for a person, recent failures, usage."""

from django.shortcuts import render
from django.utils import timezone

from accounts.dashboard import dashboard_page
from accounts.models import Membership
from runs.choices import RunStatus
from runs.quotas import usage_for
from runs.views.selectors import awaiting_person_preview, last_day, recent_runs, runs_by_status_since

STATUS_ORDER = [
    RunStatus.COMPLETED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.RUNNING,
    RunStatus.QUEUED,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.AWAITING_INPUT,
    RunStatus.PAUSED,
]


def meter(used: int, limit: int | None) -> dict:
    percent = min(100, round(100 * used / limit)) if limit else None
    return {"used": used, "limit": limit, "percent": percent}


@dashboard_page()
def overview(request):
    """Runs of the last 24 h by status (numbers and a bar), runs waiting for a person, recent failures,
    this month's usage against the plan's limits."""
    organization = request.principal.organization
    counts = runs_by_status_since(organization=organization, since=last_day())
    total = sum(counts.values())
    # The bar's segments are whole percentages; CSS classes (not inline styles) keep the CSP strict.
    segments = [
        {"status": status, "label": status.label, "count": counts.get(status, 0),
         "percent": round(100 * counts.get(status, 0) / total) if total else 0}
        for status in STATUS_ORDER
    ]  # fmt: skip
    offset = 0
    for segment in segments:
        segment["offset"] = offset
        offset += segment["percent"]
    usage = usage_for(organization, timezone.now())
    context = {
        "nav_active": "home",
        "organization": organization,
        "membership": request.membership,
        "memberships": Membership.objects.filter(user=request.user)
        .select_related("organization")
        .order_by("organization__name"),
        "total": total,
        "segments": segments,
        "waiting": awaiting_person_preview(principal=request.principal),
        "failures": recent_runs(organization=organization, statuses=[RunStatus.FAILED]),
        "usage": usage,
        "run_meter": meter(usage["runs"]["used"], usage["runs"]["limit"]),
        "token_meter": meter(usage["tokens"]["used"], usage["tokens"]["limit"]),
    }
    return render(request, "dashboard/overview.html", context)
