"""Webhook signatures: `X-Baton-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">`.

The scheme is Stripe's: the timestamp is signed with the exact body bytes, so a receiver can reject both
tampered bodies and replays older than its tolerance. `verify` is the receiver's side (and what the tests
use). Until organisations have a stored, rotatable signing secret (it comes with the security-policy
work), each organisation's secret is derived from `SECRET_KEY` with HMAC: deterministic, different per
organisation, and not computable without the server's key. See docs/engine.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time

from django.conf import settings

SIGNATURE_HEADER = "X-Baton-Signature"
DEFAULT_TOLERANCE_SECONDS = 300
_DERIVATION_LABEL = b"baton.webhook-signing-secret.v1:"


def organization_signing_secret(organization_id: str) -> str:
    """The organisation's webhook signing secret (`whsec_` + 64 hex), derived from SECRET_KEY."""
    digest = hmac.new(
        settings.SECRET_KEY.encode(), _DERIVATION_LABEL + organization_id.encode(), hashlib.sha256
    ).hexdigest()
    return f"whsec_{digest}"


def _mac(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The `X-Baton-Signature` header value for these exact body bytes."""
    timestamp = int(time.time()) if timestamp is None else int(timestamp)
    return f"t={timestamp},v1={_mac(secret, timestamp, body)}"


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
