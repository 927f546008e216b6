"""Encryption at rest for values Baton must read back: secrets, webhook signing secrets, LLM provider keys.

    from accounts.crypto import encrypt, decrypt
    token = encrypt("sk-live-…")      # str (a Fernet token: AES-128-CBC + HMAC-SHA256, timestamped)
    decrypt(token)                     # "sk-live-…"; DecryptionError when no configured key opens it

Keys (docs/security.md): by default one key derived from SECRET_KEY with HKDF-SHA256 (info
"baton-secrets"), plus keys derived from SECRET_KEY_FALLBACKS for decryption, so the embedded setup
needs nothing. `BATON_ENCRYPTION_KEYS` (comma-separated Fernet keys) replaces that: the first key
encrypts, every key decrypts (MultiFernet), and the entry `secret_key` stands for the derived key.
`manage.py rotate_encryption` re-encrypts every registered column with the current first key.

Columns holding ciphertexts are listed in `ENCRYPTED_FIELDS` (model label, field name); a new model with
an encrypted column calls `register_encrypted_field` (or is added to the tuple below) so rotation covers it.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

HKDF_INFO = b"baton-secrets"
DERIVED_KEY_ENTRY = "secret_key"

# (app_label.ModelName, field name): every column that stores `encrypt(...)` output ("" = no value).
# Models that do not exist (yet) are skipped by the rotation command.
ENCRYPTED_FIELDS: list[tuple[str, str]] = [
    ("accounts.Secret", "value_encrypted"),
    ("accounts.SigningSecret", "secret_encrypted"),
    ("accounts.SigningSecret", "previous_secret_encrypted"),
    ("accounts.LlmProvider", "api_key_encrypted"),
    ("accounts.TwoFactor", "secret_encrypted"),
    ("accounts.Organization", "notification_webhook_encrypted"),
]


class DecryptionError(Exception):
    """The token is malformed, was tampered with, or was made with a key that is no longer configured."""


def register_encrypted_field(model_label: str, field_name: str) -> None:
    """Add a column to what `rotate_encryption` re-encrypts (idempotent)."""
    if (model_label, field_name) not in ENCRYPTED_FIELDS:
        ENCRYPTED_FIELDS.append((model_label, field_name))


def derive_key(secret_key: str) -> bytes:
    """The Fernet key HKDF-SHA256(secret_key, info="baton-secrets") (url-safe base64, 32 bytes)."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HKDF_INFO).derive(secret_key.encode())
    return base64.urlsafe_b64encode(raw)


def generate_key() -> str:
    """A new random Fernet key for BATON_ENCRYPTION_KEYS."""
    return Fernet.generate_key().decode()


def _configured_keys() -> tuple[bytes, ...]:
    entries = list(getattr(settings, "BATON_ENCRYPTION_KEYS", None) or [])
    if not entries:
        fallbacks = getattr(settings, "SECRET_KEY_FALLBACKS", None) or []
        return tuple(derive_key(key) for key in [settings.SECRET_KEY, *fallbacks])
    return tuple(
        derive_key(settings.SECRET_KEY) if entry == DERIVED_KEY_ENTRY else entry.encode() for entry in entries
    )


@functools.lru_cache(maxsize=8)
def _multifernet(keys: tuple[bytes, ...]) -> MultiFernet:
    return MultiFernet([Fernet(key) for key in keys])


def _current() -> MultiFernet:
    # Keyed by the key material itself, so a changed setting (tests, a reload) is picked up at once.
    return _multifernet(_configured_keys())


def encrypt(plaintext: str) -> str:
    """The Fernet token of `plaintext` under the current (first) key."""
    if not isinstance(plaintext, str):
        raise TypeError("encrypt() takes a str")
    return _current().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of a token made by `encrypt` with any configured key; DecryptionError otherwise."""
    try:
        return _current().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError, AttributeError, TypeError, ValueError):
        raise DecryptionError("The value cannot be decrypted with the configured encryption keys.") from None


def rotate(token: str) -> str:
    """The same plaintext re-encrypted with the current first key (DecryptionError if unreadable)."""
    try:
        return _current().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError, AttributeError, TypeError, ValueError):
        raise DecryptionError("The value cannot be decrypted with the configured encryption keys.") from None


def encrypted_with_current_key(token: str) -> bool:
    """True when the first (encrypting) key opens `token` (what rotation would leave unchanged)."""
    try:
        Fernet(_configured_keys()[0]).decrypt(token.encode("ascii"))
    except (InvalidToken, UnicodeError, AttributeError, TypeError, ValueError):
        return False
    return True
