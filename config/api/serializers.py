"""Building blocks of input serializers: every API input is read strictly (an unknown field, a string
for a number or a number for a string is a 400), so a typo is an error rather than silently ignored.
Input serializers check shape; services check rules."""

import json

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.fields import SkipField

from config.api.parsing import parse_instant


def validated(serializer_class, data, **kwargs) -> dict:
    """`serializer_class(data=data)`'s validated data, or the 400 with `details.fields`."""
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _type_error(field, value) -> str | None:
    """The error of a JSON value of the wrong type for `field` (DRF would coerce it: 12345 into "12345",
    "7" into 7, "yes" into True), or None."""
    if value is None:
        return None  # allow_null decides
    if isinstance(field, serializers.BooleanField):
        ok = isinstance(value, bool)
    elif isinstance(field, serializers.IntegerField):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(field, serializers.FloatField):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif isinstance(field, serializers.DecimalField):  # a decimal may be a JSON number or its text ("0.2")
        ok = isinstance(value, int | float | str) and not isinstance(value, bool)
    elif isinstance(field, serializers.MultipleChoiceField):
        return None
    elif isinstance(field, serializers.ChoiceField):
        if isinstance(value, str) or not all(isinstance(key, str) for key in field.choices):
            return None
        return "Not a valid string."
    elif isinstance(field, serializers.CharField):
        ok = isinstance(value, str)
        # The limit holds for the string as sent: DRF checks it after trimming the whitespace around it.
        if ok and field.max_length is not None and len(value) > field.max_length:
            return field.error_messages["max_length"].format(max_length=field.max_length)
    elif isinstance(field, serializers.ListField) and isinstance(value, list):
        errors = [_type_error(field.child, item) for item in value]
        return next((error for error in errors if error), None)
    else:
        return None
    if ok:
        return None
    return field.error_messages.get("invalid", "Incorrect type.").format(input=value, format="")


@extend_schema_field(
    {"description": "Read-only: accepted and ignored, so the body a GET returned can be sent back."}
)
class IgnoredField(serializers.Field):
    """A read-only field of the resource's GET representation, accepted in a PUT body and dropped."""

    def __init__(self, **kwargs):
        super().__init__(required=False, allow_null=True, **kwargs)

    def run_validation(self, data=serializers.empty):
        raise SkipField

    def to_representation(self, value):
        return value


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know (400), so a typo is an error rather than silently ignored, and
    values of the wrong JSON type (a number for a string, a string for a number or a boolean).

    `ignored_fields` names the read-only fields of the resource's GET body that a PUT accepts and
    ignores (a client may send back what it read)."""

    ignored_fields: tuple[str, ...] = ()

    def get_fields(self):
        fields = super().get_fields()
        for name in self.ignored_fields:
            fields.setdefault(name, IgnoredField())
        return fields

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
            # A JSON body (a dict, not a QueryDict of query parameters or a form) is typed.
            if type(data) is dict and not self.context.get("multipart"):
                wrong = {
                    name: [error]
                    for name, value in data.items()
                    if (error := _type_error(self.fields[name], value))
                }
                if wrong:
                    raise serializers.ValidationError(wrong)
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


# What config.api.parsing.parse_instant reads: an ISO 8601 date-time or date, or Unix seconds.
INSTANT_SCHEMA = {
    "anyOf": [
        {"type": "string", "format": "date-time"},
        {"type": "string", "format": "date"},
        {"type": "string", "pattern": r"^-?[0-9]{1,11}(\.[0-9]{1,6})?$", "description": "Unix seconds"},
    ],
    "example": "2026-11-22T05:00:00Z",
}


# A query parameter: empty as well (no filter).
INSTANT_QUERY_SCHEMA = {
    **INSTANT_SCHEMA,
    "anyOf": [*INSTANT_SCHEMA["anyOf"], {"type": "string", "maxLength": 0}],
}


@extend_schema_field(INSTANT_SCHEMA)
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
