"""Opaque audit-log cursors: a seq position (keyset), so pages stay stable while events are appended."""

import base64
import binascii

import orjson
from rest_framework import serializers


def encode_cursor(before_seq: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"v": 1, "before": before_seq})).rstrip(b"=").decode()


def decode_cursor(raw: str) -> int:
    """The seq the next page ends before; a malformed cursor is a validation error (400)."""
    try:
        payload = orjson.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
    except (binascii.Error, ValueError, orjson.JSONDecodeError):
        payload = None
    before = payload.get("before") if isinstance(payload, dict) and payload.get("v") == 1 else None
    if not isinstance(before, int) or isinstance(before, bool) or before < 1:
        raise serializers.ValidationError("Not a cursor this endpoint issued.")
    return before
