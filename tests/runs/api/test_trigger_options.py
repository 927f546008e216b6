"""The trigger's options read without the serializer for the common body are the serializer's own, and every
other body (errors included) is the serializer's (runs/api/serializers.py `trigger_options`)."""

import pytest
from rest_framework.exceptions import ValidationError

from config.api.serializers import validated
from runs.api.serializers import RunTriggerSerializer, trigger_options

BODIES = [
    {},
    {"input_data": {"n": 1}},
    {"data": {"a": [1, 2]}},
    {"input": {}},
    {"input_data": {"n": 1}, "dry_run": True},
    {"dry_run": False},
    # read by the serializer: other options, or values it refuses
    {"input_data": {"n": 1}, "env": "prod"},
    {"input_data": {"n": 1}, "version": 1},
    {"input_data": {"n": 1}, "wait": 2},
    {"input_data": {"n": 1}, "metadata": {"team": "a"}},
    {"input_data": {"n": 1}, "data": {"n": 2}},
    {"input_data": [1]},
    {"input_data": None},
    {"input_data": "{}"},
    {"dry_run": 1},
    {"dry_run": "true"},
    {"dry_run": None},
    {"unknown": 1},
    [],
    "text",
]


def _serializer(body):
    try:
        return dict(validated(RunTriggerSerializer, body))
    except ValidationError as exc:
        return ("error", exc.detail)


def _fast(body):
    try:
        return dict(trigger_options(body))
    except ValidationError as exc:
        return ("error", exc.detail)


@pytest.mark.parametrize("body", BODIES, ids=[repr(body) for body in BODIES])
def test_trigger_options_are_the_serializers(body):
    assert _fast(body) == _serializer(body)


def test_the_input_object_is_the_one_sent():
    given = {"n": 1}
    assert trigger_options({"input": given})["input_data"] is given
