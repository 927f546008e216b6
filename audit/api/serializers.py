"""Shapes of the audit endpoints. Events are built by `audit.services.event_as_dict` (the hashed
shape); these serializers describe them for the OpenAPI schema and check the query parameters."""

from datetime import UTC, datetime

from django.utils.dateparse import parse_date, parse_datetime
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.api.cursor import decode_cursor


def parse_instant(raw: str) -> datetime:
    """ISO 8601 (a date means its midnight UTC; no offset means UTC) or Unix seconds → aware datetime."""
    text = raw.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise serializers.ValidationError("Unix seconds out of range.") from None
    try:
        moment = parse_datetime(text.replace("z", "Z").replace("Z", "+00:00"))
        if moment is None:
            day = parse_date(text)
            moment = datetime(day.year, day.month, day.day) if day else None
    except ValueError:
        moment = None
    if moment is None:
        raise serializers.ValidationError("Must be an ISO 8601 timestamp or Unix seconds.")
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


@extend_schema_field({"type": "string", "example": "2026-11-22T05:00:00Z"})
class InstantField(serializers.Field):
    def to_internal_value(self, data):
        return parse_instant(str(data))

    def to_representation(self, value):
        return value


class CursorField(serializers.CharField):
    def to_internal_value(self, data):
        return decode_cursor(super().to_internal_value(data))


class AuditLogQuerySerializer(serializers.Serializer):
    since = InstantField(
        required=False, help_text="Events at or after this instant (ISO 8601 or Unix seconds)."
    )
    until = InstantField(required=False, help_text="Events before this instant (exclusive).")
    actor = serializers.CharField(
        required=False, max_length=64, help_text="Actor id (usr_…, key_… or system)."
    )
    event = serializers.RegexField(
        r"^[a-z0-9_.]+(\.\*)?$",
        required=False,
        max_length=64,
        help_text="Event name, exact (`api_key.created`) or a prefix ending in `.*` (`api_key.*`).",
    )
    target = serializers.CharField(required=False, max_length=64, help_text="Target id.")
    target_type = serializers.CharField(
        required=False, max_length=32, help_text="Target type (e.g. `api_key`)."
    )
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)
    cursor = CursorField(required=False, help_text="`next_cursor` of the previous page.")

    def validate(self, attrs):
        since, until = attrs.get("since"), attrs.get("until")
        if since is not None and until is not None and since > until:
            raise serializers.ValidationError({"until": ["Must not be before 'since'."]})
        return attrs


class AuditTargetSerializer(serializers.Serializer):
    type = serializers.CharField()
    id = serializers.CharField()


class AuditEventSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="evt_… id.")
    organization = serializers.CharField()
    seq = serializers.IntegerField(help_text="Position in the organisation's chain, from 1, gapless.")
    event = serializers.CharField(help_text="Dotted event name, e.g. `api_key.created`.")
    actor = serializers.CharField()
    actor_type = serializers.ChoiceField(choices=["user", "api_key", "system"])
    target = AuditTargetSerializer(allow_null=True)
    run_id = serializers.CharField(allow_null=True)
    note = serializers.CharField(allow_null=True)
    data = serializers.DictField()
    ip = serializers.CharField(allow_null=True)
    request_id = serializers.CharField(allow_null=True)
    timestamp = serializers.CharField(help_text="ISO 8601 UTC, millisecond precision.")
    prev_hash = serializers.CharField()
    hash = serializers.CharField()


class AuditLogPageSerializer(serializers.Serializer):
    events = AuditEventSerializer(many=True)
    next_cursor = serializers.CharField(allow_null=True)


class AuditHeadSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    hash = serializers.CharField()


class AuditInvalidSerializer(serializers.Serializer):
    seq = serializers.IntegerField(allow_null=True)
    id = serializers.CharField(allow_null=True)
    reason = serializers.CharField()


class AuditCheckpointRefSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    hash = serializers.CharField()
    signed_at = serializers.CharField()
    key_id = serializers.CharField()


class AuditVerifySerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    checked = serializers.IntegerField(help_text="Events walked by this check.")
    head = AuditHeadSerializer()
    first_invalid = AuditInvalidSerializer(allow_null=True)
    checkpoint = AuditCheckpointRefSerializer(
        allow_null=True, help_text="The last signed checkpoint verified."
    )


class AuditVerifyQuerySerializer(serializers.Serializer):
    full = serializers.BooleanField(
        default=False, help_text="Walk the whole chain, and check every signature."
    )


class AuditPublicKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="The 32 raw bytes of the Ed25519 public key, base64.")
    active = serializers.BooleanField(help_text="This key signs new checkpoints.")


class AuditPublicKeysSerializer(serializers.Serializer):
    keys = AuditPublicKeySerializer(many=True)
