"""Writes for organisations, members, API keys and projects. Each one audits in its transaction."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from accounts import keys
from accounts.choices import DEFAULT_KEY_SCOPES, Role, plan_limits
from accounts.models import ApiKey, Membership, Organization, User
from audit.services import audit_chain_start, audit_record


@transaction.atomic
def organization_create(*, name: str, owner: User, plan: str = "starter", actor=None) -> Organization:
    """Create an organisation with the plan's limits, its audit chain, and `owner` as owner."""
    org = Organization.objects.create(name=name, plan=plan, **plan_limits(plan))
    audit_chain_start(organization=org)
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    from accounts.principal import Principal

    actor = actor or Principal(organization=org, user=owner, role=Role.OWNER)
    audit_record(organization=org, event="organization.created", actor=actor, target=("organization", org.id),
                 data={"name": name, "plan": plan})  # fmt: skip
    audit_record(organization=org, event="member.added", actor=actor, target=("user", owner.id),
                 data={"email": owner.email, "role": Role.OWNER})  # fmt: skip
    return org


@dataclass(frozen=True)
class CreatedApiKey:
    api_key: ApiKey
    key: str  # the full key: returned once, never stored


@transaction.atomic
def api_key_create(
    *,
    organization: Organization,
    actor,
    name: str,
    scopes: list[str] | None = None,
    expires_at: datetime | None = None,
) -> CreatedApiKey:
    raw = keys.generate_key()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=keys.display_prefix(raw),
        last4=raw[-4:],
        key_hash=keys.hash_key(raw),
        pepper_id=keys.settings.API_KEY_CURRENT_PEPPER,
        scopes=sorted(set(scopes if scopes is not None else DEFAULT_KEY_SCOPES)),
        created_by=actor.user if getattr(actor, "user", None) else None,
        expires_at=expires_at,
    )
    audit_record(organization=organization, event="api_key.created", actor=actor, target=("api_key", api_key.id),
                 data={"name": name, "scopes": api_key.scopes, "prefix": api_key.prefix})  # fmt: skip
    return CreatedApiKey(api_key=api_key, key=raw)


@transaction.atomic
def api_key_revoke(*, api_key: ApiKey, actor) -> ApiKey:
    """Revoke a key (idempotent: revoking twice changes nothing and audits once)."""
    now = timezone.now()
    changed = ApiKey.objects.filter(pk=api_key.pk, revoked_at__isnull=True).update(
        revoked_at=now, revoked_by=actor.user if getattr(actor, "user", None) else None
    )
    api_key.refresh_from_db()
    if changed:
        audit_record(organization=api_key.organization, event="api_key.revoked", actor=actor,
                     target=("api_key", api_key.id), data={"name": api_key.name})  # fmt: skip
    return api_key
