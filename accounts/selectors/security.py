"""Org-scoped reads of secrets. Another organisation's secret is simply not found."""

from accounts.models import Secret
from config.errors import not_found


def secret_get(*, organization, secret_id: str) -> Secret:
    """The organisation's secret, or 404 secret_not_found (also for another organisation's)."""
    secret = Secret.objects.filter(organization=organization, pk=secret_id).first()
    if secret is None:
        raise not_found("secret", secret_id)
    return secret


def secrets_of(organization):
    return Secret.objects.filter(organization=organization).order_by("name", "id")
