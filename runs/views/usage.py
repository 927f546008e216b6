"""Settings → usage: this month's runs, LLM tokens and cost against the plan's limits (runs/quotas.py's
usage_for, as GET /usage), the runs executing now against the concurrency cap, and the schedules."""

from django.shortcuts import render
from django.utils import timezone

from accounts.choices import Role
from accounts.dashboard import dashboard_page
from runs.concurrency import ADMITTED
from runs.models import Run
from runs.quotas import usage_for
from runs.views.overview import meter
from workflows.models import Schedule


@dashboard_page(role=Role.ADMIN)
def usage(request):
    organization = request.principal.organization
    data = usage_for(organization, timezone.now())
    executing = Run.objects.filter(
        organization=organization,
        status__in=list(ADMITTED),
        started_at__isnull=False,
        parent_step_run__isnull=True,
    ).count()
    rows = [
        ("Runs this month", meter(data["runs"]["used"], data["runs"]["limit"])),
        ("LLM tokens this month", meter(data["tokens"]["used"], data["tokens"]["limit"])),
        ("Runs executing now", meter(executing, organization.max_concurrent_runs)),
        (
            "Schedules",
            meter(
                Schedule.objects.filter(organization=organization).count(),
                organization.max_schedules,
            ),
        ),
    ]
    context = {
        "nav_active": "settings",
        "settings_page": "usage",
        "period": data["period"],
        "cost": data["cost_usd"],
        "rows": rows,
        "rates": [
            ("Requests per minute", organization.rate_per_minute),
            ("Requests per day", organization.rate_per_day),
        ],
    }
    return render(request, "settings/usage.html", context)
