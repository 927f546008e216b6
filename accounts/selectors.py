"""Org-scoped reads for accounts. Every function takes the caller's organisation, so another
organisation's object is simply not found (and answered like one that does not exist)."""

from datetime import UTC, datetime

from django.db.models import Count, QuerySet, Sum

from accounts.models import ApiKey, Membership, Organization, Project
from config.errors import not_found


def memberships_of(organization: Organization) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(organization=organization)
        .select_related("user")
        .order_by("created_at", "id")
    )


def membership_get(*, organization: Organization, user_id: str) -> Membership:
    """The membership of `user_id` in the organisation, or 404 member_not_found."""
    membership = memberships_of(organization).filter(user_id=user_id).first()
    if membership is None:
        raise not_found("member", user_id)
    return membership


def memberships_of_user(user) -> QuerySet[Membership]:
    """Every organisation a person belongs to, oldest membership first."""
    return Membership.objects.filter(user=user).select_related("organization").order_by("created_at", "id")


def api_keys_of(organization: Organization) -> QuerySet[ApiKey]:
    return (
        ApiKey.objects.filter(organization=organization)
        .select_related("created_by")
        .order_by("-created_at", "-id")
    )


def api_key_get(*, organization: Organization, key_id: str) -> ApiKey:
    api_key = api_keys_of(organization).filter(pk=key_id).first()
    if api_key is None:
        raise not_found("api_key", key_id)
    return api_key


def projects_of(organization: Organization) -> QuerySet[Project]:
    return Project.objects.filter(organization=organization).order_by("name", "id")


def project_get(*, organization: Organization, project_id: str) -> Project:
    project = projects_of(organization).filter(pk=project_id).first()
    if project is None:
        raise not_found("project", project_id)
    return project


def usage_period(now: datetime | None = None) -> tuple[str, datetime, datetime]:
    """The current calendar month in UTC: ("YYYY-MM", start, end) with end exclusive."""
    now = (now or datetime.now(UTC)).astimezone(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.strftime("%Y-%m"), start, end


def run_totals(*, organization: Organization, start: datetime, end: datetime) -> tuple[int, int, float]:
    """(runs, tokens, cost in USD) of the organisation's runs created in [start, end), in one aggregate
    query over the (organization, created_at) index. Deleted runs no longer count."""
    from runs.models import Run  # runs depends on accounts, not the other way round at import time

    totals = Run.objects.filter(
        organization=organization, created_at__gte=start, created_at__lt=end
    ).aggregate(runs=Count("pk"), tokens=Sum("total_tokens"), cost=Sum("cost_usd"))
    return totals["runs"], int(totals["tokens"] or 0), float(totals["cost"] or 0)


def usage_for(organization: Organization, now: datetime | None = None) -> dict:
    """The organisation's usage this month against its limits (`limit` None = unlimited)."""
    period, start, end = usage_period(now)
    runs, tokens, cost = run_totals(organization=organization, start=start, end=end)
    return {
        "period": period,
        "runs": {"used": runs, "limit": organization.monthly_run_limit},
        "tokens": {"used": tokens, "limit": organization.monthly_token_quota},
        "cost_usd": cost,
    }


def organization_has_llm_provider(organization: Organization) -> bool:
    """Does the organisation have an LLM provider? (agent steps need one: 400 no_llm_provider otherwise)"""
    from accounts.selectors_llm import organization_has_llm_provider as has_provider

    return has_provider(organization)


# The LLM selectors, under the name every caller imports them by (accounts.selectors).
from accounts.selectors_llm import agent_get, agents_of, llm_provider_get, llm_providers_of  # noqa: E402, F401
from accounts.services_security import secret_get, secrets_of  # noqa: E402, F401
