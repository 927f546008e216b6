"""Shapes of the audit endpoints. Events are built by `audit.services.event_as_dict` (the hashed
shape); these serializers describe them for the OpenAPI schema and check the query parameters."""

from drf_spectacular.utils import extend_schema_field, extend_schema_serializer
from rest_framework import serializers

from audit.api.cursor import decode_cursor
from config.api.parsing import strict_bool
from config.api.schema import BOOLEAN_QUERY_SCHEMA
from config.api.serializers import INSTANT_QUERY_SCHEMA, InstantField


class CursorField(serializers.CharField):
    def to_internal_value(self, data):
        return decode_cursor(super().to_internal_value(data))


@extend_schema_field(INSTANT_QUERY_SCHEMA)
class QueryInstantField(InstantField):
    """since / until as query parameters: empty is no filter."""


class AuditLogQuerySerializer(serializers.Serializer):
    """An empty filter (`?actor=`) is no filter, as an empty query parameter is to every list."""

    since = QueryInstantField(
        required=False, help_text="Events at or after this instant (ISO 8601 or Unix seconds)."
    )
    until = QueryInstantField(required=False, help_text="Events before this instant (exclusive).")
    actor = serializers.CharField(
        required=False, allow_blank=True, max_length=64, help_text="Actor id (usr_…, key_… or system)."
    )
    event = serializers.RegexField(
        r"^[a-z0-9_.]+(\.\*)?$",
        required=False,
        allow_blank=True,
        max_length=64,
        help_text="Event name, exact (`api_key.created`) or a prefix ending in `.*` (`api_key.*`).",
    )
    target = serializers.CharField(required=False, allow_blank=True, max_length=64, help_text="Target id.")
    target_type = serializers.CharField(
        required=False, allow_blank=True, max_length=32, help_text="Target type (e.g. `api_key`)."
    )
    limit = serializers.IntegerField(required=False, default=50, min_value=1, max_value=200)
    cursor = CursorField(required=False, allow_blank=True, help_text="`next_cursor` of the previous page.")

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


@extend_schema_serializer(many=False)  # the list action answers one page object, not an array of them
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


@extend_schema_field(BOOLEAN_QUERY_SCHEMA)
class QueryBooleanField(serializers.Field):
    """A boolean query parameter read by strict_bool: true/false/1/0/yes/no in any case; empty or blank is
    the default, anything else a 400."""

    def to_internal_value(self, data):
        return strict_bool({self.field_name: str(data)}, self.field_name, self.default)

    def to_representation(self, value):
        return "true" if value else "false"  # as a query parameter (the schema's `default`)


class AuditVerifyQuerySerializer(serializers.Serializer):
    full = QueryBooleanField(default=False, help_text="Walk the whole chain, and check every signature.")


class AuditPublicKeySerializer(serializers.Serializer):
    key_id = serializers.CharField()
    algorithm = serializers.CharField()
    public_key = serializers.CharField(help_text="The 32 raw bytes of the Ed25519 public key, base64.")
    active = serializers.BooleanField(help_text="This key signs new checkpoints.")


class AuditPublicKeysSerializer(serializers.Serializer):
    keys = AuditPublicKeySerializer(many=True)
