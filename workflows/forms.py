"""A form generated from a JSON Schema: a workflow's inputs (the run form) or an input step's schema.

Supported property shapes: string (text; `enum` → a select; long or `format: textarea` → a text area),
number, integer, boolean, an enum of any scalars, an array of strings (one per line), and anything
else, such as a nested object, as JSON in a text area. The schema itself stays the judge: the service
validates the assembled value against it and the form shows the errors it reports next to the fields."""

import json

from django import forms

TEXTAREA = forms.Textarea(attrs={"rows": 4})


class JsonField(forms.CharField):
    """A value written as JSON (nested objects, arrays of non-strings, untyped properties)."""

    widget = TEXTAREA

    def to_python(self, value):
        text = super().to_python(value)
        if text in self.empty_values:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} (line {exc.lineno}).") from None


class LinesField(forms.CharField):
    """An array of strings, one per line (blank lines dropped)."""

    widget = TEXTAREA

    def to_python(self, value):
        text = super().to_python(value)
        lines = [line.strip() for line in (text or "").splitlines()]
        return [line for line in lines if line] or None


def _types(prop: dict) -> list[str]:
    kind = prop.get("type")
    return [kind] if isinstance(kind, str) else list(kind or [])


def schema_field(name: str, prop: dict, *, required: bool) -> forms.Field:
    """The form field for one property of an object schema."""
    prop = prop if isinstance(prop, dict) else {}
    types = [t for t in _types(prop) if t != "null"]
    options = {
        "label": prop.get("title") or name,
        "required": required,
        "help_text": prop.get("description", ""),
    }
    default = prop.get("default")
    enum = prop.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, float, bool)) for v in enum):
        choices = [(json.dumps(v), str(v)) for v in enum]
        if not required:
            choices = [("", "—"), *choices]
        field = forms.TypedChoiceField(choices=choices, coerce=json.loads, empty_value=None, **options)
        field.initial = json.dumps(default) if default is not None else None
        return field
    kind = types[0] if len(types) == 1 else None
    if kind == "boolean":
        options["required"] = False  # an unticked box is false
        return forms.BooleanField(initial=bool(default), **options)
    bounds = {"min_value": prop.get("minimum"), "max_value": prop.get("maximum")}
    if kind == "integer":
        return forms.IntegerField(initial=default, **bounds, **options)
    if kind == "number":
        return forms.FloatField(initial=default, **bounds, **options)
    if kind == "string":
        long_text = prop.get("format") == "textarea" or (prop.get("maxLength") or 0) > 200
        return forms.CharField(
            initial=default,
            max_length=prop.get("maxLength"),
            min_length=prop.get("minLength"),
            widget=TEXTAREA if long_text else forms.TextInput,
            **options,
        )
    items = prop.get("items") if isinstance(prop.get("items"), dict) else {}
    if kind == "array" and _types(items) == ["string"] and "enum" not in items:
        field = LinesField(initial="\n".join(default) if isinstance(default, list) else None, **options)
        field.help_text = (options["help_text"] + " " if options["help_text"] else "") + "One per line."
        return field
    field = JsonField(initial=json.dumps(default, indent=2) if default is not None else None, **options)
    field.help_text = (options["help_text"] + " " if options["help_text"] else "") + "As JSON."
    return field


class SchemaForm(forms.Form):
    """Fields for each property of an object schema; `value()` is the object to submit (empty optional
    fields are left out, so the schema's defaults apply)."""

    def __init__(self, schema: dict | None, *args, **kwargs):
        kwargs.setdefault("prefix", "input")
        super().__init__(*args, **kwargs)
        schema = schema if isinstance(schema, dict) else {}
        properties = schema.get("properties") if isinstance(schema.get("properties"), dict) else {}
        required = set(schema.get("required") or [])
        for name, prop in properties.items():
            self.fields[name] = schema_field(name, prop, required=name in required)

    def value(self) -> dict:
        data = {}
        for name, field in self.fields.items():
            cleaned = self.cleaned_data.get(name)
            if isinstance(field, forms.BooleanField):
                data[name] = bool(cleaned)
            elif cleaned is not None and cleaned != "":
                data[name] = cleaned
        return data

    def add_service_errors(self, fields: dict[str, list[str]]) -> None:
        """Attach a service's field errors ({path: [messages]}) to the fields they name, else to the form."""
        for path, messages in (fields or {}).items():
            name = path.split(".", 1)[0]
            for message in messages:
                self.add_error(name if name in self.fields else None, message)
