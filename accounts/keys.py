"""API key format and hashing.

A key is `bt_live_` + 40 random hex + the 8-hex CRC32 of those 40, so a malformed key is refused
before any database lookup and secret scanners can recognise keys. Only HMAC-SHA256(pepper, key)
is stored, with the pepper's id, so peppers can rotate and SECRET_KEY is not involved."""

import hashlib
import hmac
import re
import secrets
import zlib

from django.conf import settings

KEY_PREFIX = "bt_live_"
_KEY_RE = re.compile(r"^bt_live_([0-9a-f]{40})([0-9a-f]{8})$")


def _crc(body: str) -> str:
    return f"{zlib.crc32(body.encode()) & 0xFFFFFFFF:08x}"


def generate_key() -> str:
    body = secrets.token_hex(20)
    return f"{KEY_PREFIX}{body}{_crc(body)}"


def is_well_formed(raw: str) -> bool:
    match = _KEY_RE.match(raw or "")
    return bool(match) and hmac.compare_digest(_crc(match.group(1)), match.group(2))


def hash_key(raw: str, pepper_id: str | None = None) -> str:
    pepper = settings.API_KEY_PEPPERS[pepper_id or settings.API_KEY_CURRENT_PEPPER]
    return hmac.new(pepper.encode(), raw.encode(), hashlib.sha256).hexdigest()


def candidate_hashes(raw: str) -> list[str]:
    """The key's hash under every configured pepper (the current one first)."""
    return [hash_key(raw, pepper_id) for pepper_id in settings.API_KEY_PEPPERS]


def display_prefix(raw: str) -> str:
    return raw[: len(KEY_PREFIX) + 4]
