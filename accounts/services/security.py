"""Writes (and the lazy reads that create rows) for the security policy, secrets and the webhook signing
secret. Every change audits in its transaction; secret values never reach the audit log, a response or a
log line. See docs/security.md."""

import secrets as _random
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from accounts import crypto
from accounts.models import Secret, SecurityPolicy, SigningSecret
from accounts.models.security import SECRET_NAME_PATTERN, SECRET_NAME_RE, SECRET_VALUE_MAX_BYTES
from accounts.policy import MIN_REDACT_LENGTH, POLICY_FIELDS
from audit.services import audit_record
from config.errors import Conflict, InvalidRequest

SIGNING_SECRET_PREFIX = "whsec_"
DEFAULT_SIGNING_GRACE_SECONDS = 86_400
MAX_SIGNING_GRACE_SECONDS = 7 * 86_400


def _field_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", message, details={"fields": {field: [message]}})


# --- security policy -----------------------------------------------------------------------------------


def security_policy_get(*, organization) -> SecurityPolicy:
    """The organisation's policy, created with the defaults the first time it is asked for."""
    policy = SecurityPolicy.objects.filter(organization=organization).first()
    if policy is not None:
        return policy
    try:
        with transaction.atomic():
            return SecurityPolicy.objects.create(organization=organization)
    except IntegrityError:  # created concurrently
        return SecurityPolicy.objects.get(organization=organization)


def security_policy_document(policy: SecurityPolicy) -> dict:
    return {field: getattr(policy, field) for field in POLICY_FIELDS}


def security_policy_update(*, organization, actor, changes: dict) -> SecurityPolicy:
    """Apply validated field values (the API's serializer checked types, ranges, entries and patterns).

    Audits `policy.updated` with `{"changes": {field: {"before", "after"}}}` when anything changed."""
    unknown = set(changes) - set(POLICY_FIELDS)
    if unknown:
        raise _field_error(sorted(unknown)[0], "Unknown field.")
    security_policy_get(organization=organization)
    with transaction.atomic():
        policy = SecurityPolicy.objects.select_for_update().get(organization=organization)
        diff = {}
        for field, value in changes.items():
            before = getattr(policy, field)
            if before != value:
                diff[field] = {"before": before, "after": value}
                setattr(policy, field, value)
        if diff:
            policy.updated_by = actor.actor_id
            policy.save()
            audit_record(
                organization=organization,
                event="policy.updated",
                actor=actor,
                target=("security_policy", organization.id),
                data={"changes": diff},
            )
    return policy


# --- secrets -------------------------------------------------------------------------------------------


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not SECRET_NAME_RE.match(name):
        raise _field_error(
            "name",
            "A secret name is 1 to 64 characters: an upper-case letter, then upper-case letters, digits or "
            f"underscores ({SECRET_NAME_PATTERN}).",
        )


def _check_value(value: str) -> None:
    if not isinstance(value, str):
        raise _field_error("value", "The value must be a string.")
    if len(value) < MIN_REDACT_LENGTH:
        raise _field_error(
            "value",
            f"A secret value has at least {MIN_REDACT_LENGTH} characters (shorter values could not be "
            "redacted from run traces).",
        )
    if len(value.encode("utf-8")) > SECRET_VALUE_MAX_BYTES:
        raise _field_error("value", f"A secret value is at most {SECRET_VALUE_MAX_BYTES} bytes (UTF-8).")


def _name_taken(name: str) -> Conflict:
    return Conflict("secret_name_taken", f"A secret named '{name}' already exists in this organisation.")


def secret_create(*, organization, actor, name: str, value: str, description: str = "") -> Secret:
    _check_name(name)
    _check_value(value)
    now = timezone.now()
    try:
        with transaction.atomic():
            secret = Secret.objects.create(
                organization=organization,
                name=name,
                description=description or "",
                value_encrypted=crypto.encrypt(value),
                created_at=now,
                updated_at=now,
                created_by=actor.actor_id,
                updated_by=actor.actor_id,
            )
            audit_record(
                organization=organization,
                event="secret.created",
                actor=actor,
                target=("secret", secret.id),
                data={"name": name},
            )
    except IntegrityError:
        raise _name_taken(name) from None
    return secret


_UNSET = object()


def secret_update(*, secret: Secret, actor, name=_UNSET, value=_UNSET, description=_UNSET) -> Secret:
    """Rename, re-describe and/or replace the value. Audits `secret.updated` with the name and which
    fields changed (`"value"` is named, never shown)."""
    changed = []
    data = {"name": secret.name}
    if name is not _UNSET and name != secret.name:
        _check_name(name)
        data = {"name": name, "previous_name": secret.name}
        secret.name = name
        changed.append("name")
    if description is not _UNSET and (description or "") != secret.description:
        secret.description = description or ""
        changed.append("description")
    if value is not _UNSET:
        _check_value(value)
        secret.value_encrypted = crypto.encrypt(value)
        changed.append("value")
    if not changed:
        return secret
    secret.updated_at = timezone.now()
    secret.updated_by = actor.actor_id
    try:
        with transaction.atomic():
            secret.save()
            audit_record(
                organization=secret.organization,
                event="secret.updated",
                actor=actor,
                target=("secret", secret.id),
                data={**data, "changed": changed},
            )
    except IntegrityError:
        raise _name_taken(secret.name) from None
    return secret


def secret_delete(*, secret: Secret, actor) -> None:
    with transaction.atomic():
        audit_record(
            organization=secret.organization,
            event="secret.deleted",
            actor=actor,
            target=("secret", secret.id),
            data={"name": secret.name},
        )
        secret.delete()


# --- webhook signing secret ---------------------------------------------------------------------------


def _new_signing_secret() -> str:
    return SIGNING_SECRET_PREFIX + _random.token_hex(32)


def signing_secret_get(*, organization_id: str) -> SigningSecret:
    """The organisation's signing secret row, created (random `whsec_` + 64 hex) on first use."""
    row = SigningSecret.objects.filter(organization_id=organization_id).first()
    if row is not None:
        return row
    try:
        with transaction.atomic():
            return SigningSecret.objects.create(
                organization_id=organization_id, secret_encrypted=crypto.encrypt(_new_signing_secret())
            )
    except IntegrityError:  # created concurrently
        return SigningSecret.objects.get(organization_id=organization_id)


def signing_secrets_active(*, organization_id: str, now=None) -> list[str]:
    """The secrets deliveries are signed with: the current one, then the previous one during its grace."""
    row = signing_secret_get(organization_id=organization_id)
    active = [crypto.decrypt(row.secret_encrypted)]
    now = now or timezone.now()
    if row.previous_secret_encrypted and row.previous_expires_at and row.previous_expires_at > now:
        active.append(crypto.decrypt(row.previous_secret_encrypted))
    return active


def signing_secret_rotate(*, organization, actor, grace_seconds: int = DEFAULT_SIGNING_GRACE_SECONDS):
    """A new random secret; the old one keeps signing (as a second signature) for `grace_seconds`."""
    if isinstance(grace_seconds, bool) or not isinstance(grace_seconds, int):
        raise _field_error("grace_seconds", "Must be an integer.")
    if not 0 <= grace_seconds <= MAX_SIGNING_GRACE_SECONDS:
        raise _field_error("grace_seconds", f"Must be between 0 and {MAX_SIGNING_GRACE_SECONDS}.")
    signing_secret_get(organization_id=organization.id)
    now = timezone.now()
    with transaction.atomic():
        row = SigningSecret.objects.select_for_update().get(organization=organization)
        row.previous_secret_encrypted = row.secret_encrypted if grace_seconds else ""
        row.previous_expires_at = now + timedelta(seconds=grace_seconds) if grace_seconds else None
        row.secret_encrypted = crypto.encrypt(_new_signing_secret())
        row.rotated_at = now
        row.save()
        audit_record(
            organization=organization,
            event="signing_secret.rotated",
            actor=actor,
            target=("signing_secret", organization.id),
            data={"grace_seconds": grace_seconds},
        )
    return row
