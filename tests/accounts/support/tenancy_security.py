"""Tenancy-test factories for this area's routes (see tests/support/tenancy_registry.py)."""

from accounts.services import secret_create
from tests.conftest import owner_principal
from tests.support.tenancy_registry import register


@register("secret-detail")
def _secret(org, owner):
    secret = secret_create(
        organization=org, actor=owner_principal(org, owner), name="VICTIM_TOKEN", value="victim-value-123"
    )
    return {"pk": secret.id}
