"""Org-scoped reads for accounts. Every function takes the caller's organisation, so another
organisation's object is simply not found (and answered like one that does not exist)."""

from datetime import UTC, datetime

from django.db.models import QuerySet

from accounts.models import ApiKey, Membership, Organization
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
