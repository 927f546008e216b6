"""TOTP two-factor sign-in (RFC 6238 through pyotp; docs/authentication.md).

A person enrols from their profile: `two_factor_begin` makes a secret (stored encrypted), the app reads it
from a QR code or the otpauth URI, `two_factor_confirm` checks a first code and returns ten recovery codes
(shown once; only their hashes are kept). At sign-in `two_factor_check` accepts a current code (each time
step at most once) or an unused recovery code. API keys never ask for a code; a user JWT does
(`POST /auth/token` with `otp`)."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time

import pyotp
import segno
from django.db import transaction
from django.utils import timezone

from accounts.choices import Role, role_at_least
from accounts.crypto import decrypt, encrypt
from accounts.models import Membership, TwoFactor, User
from accounts.principal import Principal
from audit.services import audit_record
from config import ratelimit
from config.errors import Conflict, InvalidRequest, Unauthorized

ISSUER = "Baton"
RECOVERY_CODES = 10
STEP_SECONDS = 30
# A code from the step before or after the server's is accepted too (clock drift of up to 30 s).
DRIFT_STEPS = 1
CODE_FAILED = "The code is not correct (or was already used)."
# Owners, admins and members (who may decide approvals) must enrol when the organisation requires it.
REQUIRED_FROM_ROLE = Role.MEMBER


def _totp(secret: str) -> pyotp.TOTP:
    return pyotp.TOTP(secret, interval=STEP_SECONDS)


def two_factor_of(user: User) -> TwoFactor | None:
    return TwoFactor.objects.filter(user=user).first()


def two_factor_enabled(user: User) -> bool:
    return TwoFactor.objects.filter(user=user, confirmed_at__isnull=False).exists()


def two_factor_required(membership: Membership) -> bool:
    """Whether the organisation requires two-factor sign-in of this member's role."""
    return membership.organization.require_two_factor and role_at_least(membership.role, REQUIRED_FROM_ROLE)


def provisioning_uri(user: User, secret: str) -> str:
    return _totp(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_svg(uri: str) -> str:
    """The otpauth URI as an SVG QR code (no XML declaration: it is inlined in the page)."""
    return segno.make(uri, error="m").svg_inline(scale=4, dark="#111", light="#fff", title="QR code")


def _hash_recovery(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace("-", "").encode()).hexdigest()


def _new_recovery_codes() -> list[str]:
    codes = []
    for _ in range(RECOVERY_CODES):
        raw = secrets.token_hex(5)  # 40 bits, written as xxxxx-xxxxx
        codes.append(f"{raw[:5]}-{raw[5:]}")
    return codes


def _accept_code(two_factor: TwoFactor, code: str, now: float | None = None) -> bool:
    """Accept a TOTP code of a step after the last accepted one (within the drift), or a recovery code
    (consumed); saves what it used. `two_factor` must be locked by the caller."""
    code = (code or "").strip().replace(" ", "")
    if not code or len(code) > 32:
        return False
    if code.isascii() and code.isdigit() and len(code) == 6:
        totp = _totp(decrypt(two_factor.secret_encrypted))
        current = int((time.time() if now is None else now) // STEP_SECONDS)
        for step in range(current - DRIFT_STEPS, current + DRIFT_STEPS + 1):
            if step > two_factor.last_step and hmac.compare_digest(totp.at(step * STEP_SECONDS), code):
                two_factor.last_step = step
                two_factor.save(update_fields=["last_step"])
                return True
        return False
    digest = _hash_recovery(code)
    for stored in two_factor.recovery_hashes:
        if hmac.compare_digest(stored, digest):
            two_factor.recovery_hashes = [h for h in two_factor.recovery_hashes if h != stored]
            two_factor.save(update_fields=["recovery_hashes"])
            return True
    return False


def _audit_everywhere(user: User, event: str, data: dict) -> None:
    """Record `event` in every organisation the person belongs to (as they acted on their own account)."""
    for membership in Membership.objects.filter(user=user).select_related("organization"):
        actor = Principal(organization=membership.organization, user=user, role=membership.role)
        audit_record(
            organization=membership.organization,
            event=event,
            actor=actor,
            target=("user", user.id),
            data=data,
        )


@transaction.atomic
def two_factor_begin(*, user: User) -> str:
    """Start (or restart) an enrolment: a new secret, returned; Conflict when two-factor is already on."""
    existing = TwoFactor.objects.select_for_update().filter(user=user).first()
    if existing is not None and existing.enabled:
        raise Conflict("two_factor_enabled", "Two-factor sign-in is already on; turn it off first.")
    secret = pyotp.random_base32()
    TwoFactor.objects.update_or_create(
        user=user,
        defaults={
            "secret_encrypted": encrypt(secret),
            "confirmed_at": None,
            "last_step": 0,
            "recovery_hashes": [],
        },
    )
    return secret


def pending_secret(user: User) -> str | None:
    """The secret of an enrolment in progress, or None."""
    two_factor = two_factor_of(user)
    if two_factor is None or two_factor.enabled:
        return None
    return decrypt(two_factor.secret_encrypted)


@transaction.atomic
def two_factor_confirm(*, user: User, code: str) -> list[str]:
    """Finish the enrolment with a code from the app: two-factor is on; returns the recovery codes (the
    only time they exist in clear). InvalidRequest for a wrong code, Conflict when nothing is pending."""
    two_factor = TwoFactor.objects.select_for_update().filter(user=user).first()
    if two_factor is None or two_factor.enabled:
        raise Conflict("no_enrolment", "There is no two-factor enrolment to confirm; start again.")
    if not re.fullmatch(r"[0-9]+", (code or "").strip()) or not _accept_code(two_factor, code):
        raise InvalidRequest("invalid_code", CODE_FAILED, details={"field": "code"})
    codes = _new_recovery_codes()
    two_factor.recovery_hashes = [_hash_recovery(c) for c in codes]
    two_factor.confirmed_at = timezone.now()
    two_factor.save(update_fields=["recovery_hashes", "confirmed_at"])
    _audit_everywhere(user, "user.2fa_enabled", {"email": user.email})
    return codes


@transaction.atomic
def two_factor_disable(*, user: User, password: str, code: str) -> None:
    """Turn two-factor off: needs the password and a current code (or a recovery code)."""
    two_factor = TwoFactor.objects.select_for_update().filter(user=user).first()
    if two_factor is None or not two_factor.enabled:
        raise Conflict("two_factor_disabled", "Two-factor sign-in is not on.")
    if not user.check_password(password or ""):
        raise InvalidRequest(
            "invalid_password", "The password is not correct.", details={"field": "password"}
        )
    if not _accept_code(two_factor, code):
        raise InvalidRequest("invalid_code", CODE_FAILED, details={"field": "code"})
    two_factor.delete()
    _audit_everywhere(user, "user.2fa_disabled", {"email": user.email})


def two_factor_check(*, request, user: User, code: str) -> None:
    """The second sign-in step: accept `code` or raise Unauthorized (RateLimited over the sign-in limits,
    which count wrong codes as wrong passwords, per IP and per account)."""
    from accounts.services import auth_login_failed

    ratelimit.login_check(request, user.email)
    with transaction.atomic():
        two_factor = (
            TwoFactor.objects.select_for_update().filter(user=user, confirmed_at__isnull=False).first()
        )
        accepted = two_factor is None or _accept_code(two_factor, code)
    if not accepted:
        ratelimit.login_failed(request, user.email)
        auth_login_failed(email=user.email, user=user, reason="bad_2fa_code")
        raise Unauthorized("invalid_code", CODE_FAILED)
    ratelimit.login_succeeded(request, user.email)


__all__ = [
    "CODE_FAILED",
    "pending_secret",
    "provisioning_uri",
    "qr_svg",
    "two_factor_begin",
    "two_factor_check",
    "two_factor_confirm",
    "two_factor_disable",
    "two_factor_enabled",
    "two_factor_of",
    "two_factor_required",
]
