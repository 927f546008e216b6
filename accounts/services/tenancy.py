"""Writes for organisations, members and API keys. Each one audits in its transaction.

Every function takes keyword-only arguments and an explicit `actor` (a Principal or SYSTEM); the API,
the dashboard, the admin and the management commands all go through these."""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import keys
from accounts.choices import ALL_SCOPES, DEFAULT_KEY_SCOPES, LIMIT_FIELDS, Role, Scope, plan_limits
from accounts.crypto import encrypt
from accounts.models import ApiKey, Membership, Organization, User
from accounts.network import OutboundError, parse_url
from accounts.principal import SystemActor
from audit.services import audit_chain_start, audit_record
from config import ratelimit
from config.errors import Conflict, Forbidden, InvalidRequest, Unauthorized, not_found


@transaction.atomic
def organization_create(*, name: str, owner: User, plan: str | None = None, actor=None) -> Organization:
    """Create an organisation with the plan's limits (default: settings.BATON_DEFAULT_PLAN), its audit chain,
    and `owner` as owner."""
    plan = plan or settings.BATON_DEFAULT_PLAN
    org = Organization.objects.create(name=name, plan=plan, **plan_limits(plan))
    audit_chain_start(organization=org)
    Membership.objects.create(organization=org, user=owner, role=Role.OWNER)
    from accounts.services import agents_seed_builtin

    agents_seed_builtin(org)  # the built-in agents (docs/llm.md)
    from accounts.principal import Principal

    actor = actor or Principal(organization=org, user=owner, role=Role.OWNER)
    audit_record(
        organization=org,
        event="organization.created",
        actor=actor,
        target=("organization", org.id),
        data={"name": name, "plan": plan},
    )
    audit_record(
        organization=org,
        event="member.added",
        actor=actor,
        target=("user", owner.id),
        data={"email": owner.email, "role": Role.OWNER},
    )
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
    """Create a key and return it with the full secret (shown once). A key creating a key may only
    hand out scopes it has itself, unless it has the `admin` scope."""
    scopes = sorted(set(scopes if scopes is not None else DEFAULT_KEY_SCOPES))
    unknown = [scope for scope in scopes if scope not in ALL_SCOPES]
    if unknown:
        raise InvalidRequest(
            "invalid_request",
            f"Unknown scope(s): {', '.join(unknown)}.",
            details={"fields": {"scopes": [f"Unknown scope '{s}'." for s in unknown]}},
        )
    if not scopes:
        raise InvalidRequest(
            "invalid_request",
            "A key needs at least one scope.",
            details={"fields": {"scopes": ["At least one scope is required."]}},
        )
    if expires_at is not None and expires_at <= timezone.now():
        raise InvalidRequest(
            "invalid_request",
            "expires_at must be in the future.",
            details={"fields": {"expires_at": ["Must be in the future."]}},
        )
    acting_key = getattr(actor, "api_key", None)
    if acting_key is not None and Scope.ADMIN not in acting_key.scopes:
        missing = sorted(set(scopes) - set(acting_key.scopes))
        if missing:
            raise Forbidden(
                "insufficient_scope",
                f"This API key cannot grant scopes it lacks: {', '.join(missing)}.",
                details={"required_scope": missing[0], "missing_scopes": missing},
            )
    raw = keys.generate_key()
    api_key = ApiKey.objects.create(
        organization=organization,
        name=name,
        prefix=keys.display_prefix(raw),
        last4=raw[-4:],
        key_hash=keys.hash_key(raw),
        pepper_id=keys.settings.API_KEY_CURRENT_PEPPER,
        scopes=scopes,
        created_by=actor.user if getattr(actor, "user", None) else None,
        expires_at=expires_at,
    )
    audit_record(
        organization=organization,
        event="api_key.created",
        actor=actor,
        target=("api_key", api_key.id),
        data={"name": name, "scopes": api_key.scopes, "prefix": api_key.prefix},
    )
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
        audit_record(
            organization=api_key.organization,
            event="api_key.revoked",
            actor=actor,
            target=("api_key", api_key.id),
            data={"name": api_key.name},
        )
    return api_key


# --- organisation ---------------------------------------------------------------------------

_UNSET = object()


def _settings_of(org: Organization) -> dict:
    """What `organization_update` audits: the webhook only as set or none (it is a secret)."""
    return {
        "name": org.name,
        "plan": org.plan,
        "limits": org.limits,
        "retention_days": org.retention_days,
        "require_two_factor": org.require_two_factor,
        "notification_webhook": "set" if org.notification_webhook_encrypted else "none",
    }


OWNER_ONLY_FIELDS = ("plan", "limits", "retention_days")


def actor_is_owner(actor) -> bool:
    """Owners and the system may do owner-only things; API keys never act as owner."""
    if isinstance(actor, SystemActor):
        return True
    return actor.api_key is None and actor.role == Role.OWNER


@transaction.atomic
def organization_update(
    *,
    organization: Organization,
    actor,
    name: str | None = None,
    plan: str | None = None,
    limits: dict | None = None,
    retention_days: int | None = None,
    require_two_factor: bool | None = None,
    notification_webhook_url: str | None = None,
) -> Organization:
    """Change the organisation's settings; None leaves a field alone.

    Admins may rename, require two-factor sign-in and set the notification webhook ("" removes it; it is
    stored encrypted and never shown again, nor audited); only an owner may change plan, limits and
    retention. A new plan resets the limits to the plan's defaults, then `limits` (partial, None =
    unlimited) applies on top."""
    owner_fields = [
        f
        for f, value in zip(OWNER_ONLY_FIELDS, (plan, limits, retention_days), strict=True)
        if value is not None
    ]
    if owner_fields and not actor_is_owner(actor):
        raise Forbidden(
            "forbidden",
            f"Only an organisation owner may change {', '.join(owner_fields)}.",
            details={"required_role": Role.OWNER, "fields": owner_fields},
        )
    if notification_webhook_url:
        try:
            parse_url(notification_webhook_url)
        except OutboundError as exc:
            raise InvalidRequest(
                "invalid_request", exc.message, details={"field": "notification_webhook_url"}
            ) from None
    org = Organization.objects.select_for_update().get(pk=organization.pk)
    before = _settings_of(org)
    if name is not None:
        org.name = name
    if plan is not None and plan != org.plan:
        org.plan = plan
        defaults = plan_limits(plan)
        for field in LIMIT_FIELDS:  # a limit the plan does not name is unlimited
            setattr(org, field, defaults.get(field))
    for field, value in (limits or {}).items():
        if field not in LIMIT_FIELDS:
            raise InvalidRequest("invalid_request", f"Unknown limit '{field}'.")
        setattr(org, field, value)
    if retention_days is not None:
        org.retention_days = retention_days
    if require_two_factor is not None:
        org.require_two_factor = require_two_factor
    if notification_webhook_url is not None:
        org.notification_webhook_encrypted = (
            encrypt(notification_webhook_url) if notification_webhook_url else ""
        )
    after = _settings_of(org)
    if notification_webhook_url:  # a new URL replacing another is a change too (its value is not audited)
        before["notification_webhook"] = "replaced" if before["notification_webhook"] == "set" else "none"
    changes = {
        field: {"from": before[field], "to": after[field]}
        for field in before
        if before[field] != after[field]
    }
    if changes:
        org.save()
        audit_record(
            organization=org,
            event="organization.updated",
            actor=actor,
            target=("organization", org.id),
            data={"changes": changes},
        )
    return org


# --- members --------------------------------------------------------------------------------


def _require_owner_for(actor, role: str, what: str) -> None:
    if role == Role.OWNER and not actor_is_owner(actor):
        raise Forbidden("forbidden", f"Only an owner may {what}.", details={"required_role": Role.OWNER})


@transaction.atomic
def member_add(
    *, organization: Organization, actor, email: str, role: str = Role.MEMBER, name: str = ""
) -> Membership:
    """Add a person by email. An unknown email becomes a user with no usable password (an invitation)."""
    _require_owner_for(actor, role, "make someone an owner")
    email = User.objects.normalize_email(email).lower()
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        user = User.objects.create_user(email=email, password=None, name=name)
    elif Membership.objects.filter(organization=organization, user=user).exists():
        raise Conflict("member_exists", f"{email} is already a member of this organisation.")
    try:
        with transaction.atomic():
            membership = Membership.objects.create(organization=organization, user=user, role=role)
    except IntegrityError:
        raise Conflict("member_exists", f"{email} is already a member of this organisation.") from None
    audit_record(
        organization=organization,
        event="member.added",
        actor=actor,
        target=("user", user.id),
        data={"email": user.email, "role": role},
    )
    return membership


def _locked_membership(organization: Organization, user_id: str) -> tuple[Membership, int]:
    """Lock the organisation's owner memberships (so two requests cannot remove the last two owners
    at once), then the target membership; return it with the number of owners."""
    owners = list(
        Membership.objects.select_for_update()
        .filter(organization=organization, role=Role.OWNER)
        .order_by("pk")
    )
    membership = (
        Membership.objects.select_for_update()
        .select_related("user")
        .filter(organization=organization, user_id=user_id)
        .first()
    )
    if membership is None:
        raise not_found("member", user_id)
    return membership, len(owners)


@transaction.atomic
def member_change_role(*, organization: Organization, actor, user_id: str, role: str) -> Membership:
    """Change a member's role. Only owners grant or take away `owner`; the last owner stays owner."""
    membership, owner_count = _locked_membership(organization, user_id)
    old = membership.role
    if old == role:
        return membership
    _require_owner_for(actor, role, "make someone an owner")
    _require_owner_for(actor, old, "change an owner's role")
    if old == Role.OWNER and owner_count <= 1:
        raise Conflict(
            "last_owner", "The organisation's last owner cannot be demoted; make someone else owner first."
        )
    membership.role = role
    membership.save(update_fields=["role"])
    audit_record(
        organization=organization,
        event="member.role_changed",
        actor=actor,
        target=("user", membership.user_id),
        data={"email": membership.user.email, "from": old, "to": role},
    )
    return membership


@transaction.atomic
def member_remove(*, organization: Organization, actor, user_id: str) -> None:
    """Remove a member (their tokens stop working at once). Only owners remove owners; never the last one."""
    membership, owner_count = _locked_membership(organization, user_id)
    _require_owner_for(actor, membership.role, "remove an owner")
    if membership.role == Role.OWNER and owner_count <= 1:
        raise Conflict("last_owner", "The organisation's last owner cannot be removed.")
    membership.delete()
    audit_record(
        organization=organization,
        event="member.removed",
        actor=actor,
        target=("user", user_id),
        data={"email": membership.user.email, "role": membership.role},
    )


# --- people ---------------------------------------------------------------------------------


def user_profile_update(
    *, user: User, name: str, notify_requests_email: bool, notify_failures_email: bool
) -> User:
    """What a person sets about themselves in their profile: their name and email notifications."""
    user.name = name.strip()
    user.notify_requests_email = notify_requests_email
    user.notify_failures_email = notify_failures_email
    user.save(update_fields=["name", "notify_requests_email", "notify_failures_email"])
    return user


# --- sign-in --------------------------------------------------------------------------------

ANONYMOUS = SystemActor(actor_id="anonymous")


SIGN_IN_FAILED = "The email address or password is incorrect."


def auth_sign_in(*, request, email: str, password: str) -> User:
    """The user whose email and password these are, or Unauthorized (RateLimited when over the
    sign-in limits). Unknown accounts cost the same hashing work as known ones, so timing does not
    reveal which exist; a failure is counted for the IP and the account and audited."""
    email = email.strip().lower()
    ratelimit.login_check(request, email)
    user = User.objects.filter(email__iexact=email).order_by("date_joined").first()
    if user is None:
        make_password(password)
    if user is None or not user.is_active or not user.check_password(password):
        ratelimit.login_failed(request, email)
        reason = "unknown_user" if user is None else "inactive_user" if not user.is_active else "bad_password"
        auth_login_failed(email=email, user=user, reason=reason)
        raise Unauthorized("unauthorized", SIGN_IN_FAILED)
    ratelimit.login_succeeded(request, email)
    return user


def auth_login_failed(*, email: str, user: User | None, reason: str) -> None:
    """Record a failed sign-in in every organisation the account (if it exists) belongs to."""
    if user is None:
        return
    for membership in Membership.objects.filter(user=user).select_related("organization"):
        with transaction.atomic():
            audit_record(
                organization=membership.organization,
                event="auth.login_failed",
                actor=ANONYMOUS,
                target=("user", user.id),
                data={"email": email, "reason": reason},
            )
