"""Webhook signatures: `X-Baton-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

The scheme is Stripe's: the timestamp is signed with the exact body bytes, so a receiver can reject both
tampered bodies and replays older than its tolerance. `verify` is the receiver's side (and what the tests
use). Each organisation has a stored, random, rotatable signing secret (accounts.SigningSecret, encrypted
at rest; `GET /security/signing-secret`); after a rotation the previous secret keeps signing as a second
`v1=` entry for a grace period, so receivers can switch over without rejecting a delivery. See
docs/security.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from accounts.services import signing_secrets_active

SIGNATURE_HEADER = "X-Baton-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def organization_signing_secret(organization_id: str) -> str:
    """The organisation's current webhook signing secret (`whsec_` + 64 hex), created on first use."""
    return organization_signing_secrets(organization_id)[0]


def organization_signing_secrets(organization_id: str) -> list[str]:
    """The secrets a delivery is signed with now: the current one, then the previous one during its grace."""
    return signing_secrets_active(organization_id=organization_id)


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str | list[str], body: bytes, timestamp: int | None = None) -> str:
    """The `X-Baton-Signature` header value for these exact body bytes; one `v1=` entry per secret."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    keys = [secret] if isinstance(secret, str) else list(secret)
    return ",".join([f"t={timestamp}", *(f"v1={_mac(key, timestamp, body)}" for key in keys)])


def verify(
    secret: str,
    body: bytes,
    header: str | None,
    *,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> bool:
    """True when `header` carries a valid v1 signature of `body` made within `tolerance_seconds` of now.

    Several `v1=` entries are accepted (any one matching is enough), so a sender may sign with an old and
    a new secret during a rotation. Comparison is constant-time.
    """
    if not header:
        return False
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1" and value:
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        return False
    expected = _mac(secret, timestamp, body)
    return any(hmac.compare_digest(expected, candidate) for candidate in candidates)
