"""Building blocks of input serializers: every API input is read strictly (an unknown field, a string
for a number or a number for a string is a 400), so a typo is an error rather than silently ignored.
Input serializers check shape; services check rules."""

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.parsing import parse_instant


def validated(serializer_class, data, **kwargs) -> dict:
    """`serializer_class(data=data)`'s validated data, or the 400 with `details.fields`."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (400), so a typo is an error rather than silently ignored."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """true/false (JSON), or "true"/"false" when the serializer reads a form (context["multipart"]);
    never 1, "yes" or "on"."""

    default_error_messages = {"invalid": "Must be true or false."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        if isinstance(data, str) and self.context.get("multipart") and data in ("true", "false"):
            return data == "true"
        self.fail("invalid")


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number without a fraction (not a string, not a boolean)."""

    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string (DRF's CharField would turn 12345 into "12345")."""

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field({"type": "string", "example": "2026-11-22T05:00:00Z"})
class InstantField(serializers.Field):
    """An instant as ISO 8601 or Unix seconds (config.api.parsing.parse_instant)."""

    def to_internal_value(self, data):
        try:
            moment = parse_instant(str(data))
        except OverflowError:
            raise serializers.ValidationError("Unix seconds out of range.") from None
        if moment is None:
            raise serializers.ValidationError("Must be an ISO 8601 timestamp or Unix seconds.")
        return moment

    def to_representation(self, value):
        return value


@extend_schema_field({"type": "object", "additionalProperties": True})
class JsonObjectField(serializers.Field):
    """A JSON object (in a form, context["multipart"]: the JSON text of one)."""

    def to_internal_value(self, data):
        if isinstance(data, str) and self.context.get("multipart"):
            try:
                data = json.loads(data)
            except ValueError:
                raise serializers.ValidationError("Must be a JSON object.") from None
        if not isinstance(data, dict):
            raise serializers.ValidationError("Must be an object.")
        return data

    def to_representation(self, value):
        return value
