"""Strict django-filter pieces: a filterset that refuses what it does not know (an unknown parameter, a
single-valued one given twice, a bad value), each as a 400 invalid_request naming the parameter in
`details.fields`, and filters whose values are checked as given (a JSON body's 5 is not the string "5").

A `StrictFilterSet` reads a QueryDict (query parameters) or any MultiValueDict, e.g. a bulk action's
`{"filter": {...}}` body through `StrictFilterSet.from_object`."""

import django_filters
from django import forms
from django.utils.datastructures import MultiValueDict
from django_filters.rest_framework import DjangoFilterBackend

from config.api.parsing import invalid_parameter, parse_instant


class StrictFilterSet(django_filters.FilterSet):
    # Parameters left to others (the paginator), and filters that may be given several times.
    passthrough: tuple[str, ...] = ("limit", "offset")
    repeatable: tuple[str, ...] = ()

    @classmethod
    def from_object(cls, data: dict, **kwargs):
        """A filterset over a JSON object: a list value is the filter given several times. An object has
        no paginator, so `limit` and `offset` are unknown filters there."""
        lists = {key: list(value) if isinstance(value, list) else [value] for key, value in data.items()}
        for key, values in lists.items():
            if not values:  # would read as no filter: a bulk action would reach every run
                raise invalid_parameter(key, "Must not be an empty list.")
        filterset = cls(MultiValueDict(lists), **kwargs)
        filterset.passthrough = ()
        return filterset

    def read_parameter(self, name: str, values: list) -> bool:
        """Take a parameter no declared filter has (True), e.g. a prefixed family; raise if it is bad."""
        return False

    def is_valid(self) -> bool:
        """True, or raise the 400 of the first bad parameter (in the order given, then as declared)."""
        for name, values in self.data.lists():
            if name in self.passthrough or self.read_parameter(name, values):
                continue
            if name not in self.filters:
                raise invalid_parameter(name, "Unknown filter.")
            if len(values) > 1 and name not in self.repeatable:
                raise invalid_parameter(name, "Give this filter once.")
        if not super().is_valid():
            name, messages = next(iter(self.form.errors.items()))
            raise invalid_parameter(name, messages[0])
        return True


# --- strict form fields: absent is None, anything given is checked as it is --------------------------


class TextField(forms.Field):
    def __init__(self, *, max_length: int, **kwargs):
        self.max_length = max_length
        super().__init__(**kwargs)

    def clean(self, value):
        if value is None:
            return None
        if not isinstance(value, str) or not value or len(value) > self.max_length:
            raise forms.ValidationError(
                f"Must be a non-empty string of at most {self.max_length} characters."
            )
        return value


class ChoicesField(forms.Field):
    """One or several of `values` (the parameter repeated)."""

    widget = forms.SelectMultiple

    def __init__(self, *, values: list[str], **kwargs):
        self.values = list(values)
        super().__init__(**kwargs)

    def clean(self, value):
        chosen = []
        for item in value or []:
            if item not in self.values:
                raise forms.ValidationError(f"Must be one of: {', '.join(self.values)}.")
            chosen.append(item)
        return chosen


class ChoiceField(ChoicesField):
    widget = forms.TextInput

    def clean(self, value):
        return None if value is None else super().clean([value])[0]


class PositiveIntegerField(forms.Field):
    """1 to 2³¹−1, the range every database's integer column holds (the schema's `maximum`)."""

    maximum = 2_147_483_647

    def clean(self, value):
        if value is None:
            return None
        if isinstance(value, bool) or not (
            isinstance(value, int) or (isinstance(value, str) and value.isascii() and value.isdigit())
        ):
            raise forms.ValidationError("Must be a positive integer.")
        if not 1 <= int(value) <= self.maximum:
            raise forms.ValidationError(f"Must be an integer from 1 to {self.maximum}.")
        return int(value)


class InstantField(forms.Field):
    """ISO 8601 or Unix seconds (config.api.parsing.parse_instant)."""

    def clean(self, value):
        if value is None:
            return None
        moment = None
        if not isinstance(value, bool) and isinstance(value, str | int | float):
            try:
                moment = parse_instant(str(value))
            except OverflowError:
                moment = None
        if moment is None:
            raise forms.ValidationError("Must be an ISO 8601 timestamp or Unix seconds.")
        return moment


class TextFilter(django_filters.Filter):
    field_class = TextField


class ChoiceFilter(django_filters.Filter):
    field_class = ChoiceField


class ChoicesFilter(django_filters.Filter):
    field_class = ChoicesField


class PositiveIntegerFilter(django_filters.Filter):
    field_class = PositiveIntegerField


class InstantFilter(django_filters.Filter):
    field_class = InstantField


class StrictFilterBackend(DjangoFilterBackend):
    """Filters a list by the view's `filterset_class` (a StrictFilterSet raises its own 400). Its
    parameters are declared with the operation (extend_schema(parameters=...), see
    config/api/schema_extensions.py): a family such as `metadata.<key>` has no filter field to describe."""
