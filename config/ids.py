"""Opaque, prefixed, time-sortable ids: `org_01jd8x…` (48-bit millisecond time + 80 random bits)."""

import os
import time

from django.utils.deconstruct import deconstructible

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
ID_MAX_LENGTH = 40


def new_id(prefix: str) -> str:
    """Return `<prefix>_` followed by 26 base32 characters that sort by creation time."""
    value = (int(time.time() * 1000) << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_ALPHABET[value & 31])
        value >>= 5
    return f"{prefix}_{''.join(reversed(chars))}"


@deconstructible
class IdFactory:
    """A model field default that makes ids with one prefix (serializable in migrations)."""

    def __init__(self, prefix: str):
        self.prefix = prefix

    def __call__(self) -> str:
        return new_id(self.prefix)

    def __eq__(self, other):
        return isinstance(other, IdFactory) and other.prefix == self.prefix

    def __hash__(self):
        return hash(self.prefix)


def id_field(prefix: str):
    from django.db import models

    return models.CharField(
        primary_key=True, max_length=ID_MAX_LENGTH, default=IdFactory(prefix), editable=False
    )
