"""config/api/renderers.py: the API's JSON is what DRF's renderer writes, byte for byte, written by orjson
(DRF's renderer still writes what orjson refuses, and indented answers)."""

import datetime
import decimal
import uuid

import pytest
from django.utils.translation import gettext_lazy
from rest_framework import renderers

from config.api.renderers import JSONRenderer

MOMENT = datetime.datetime(2026, 12, 7, 20, 1, 2, 345678, tzinfo=datetime.UTC)
PAYLOADS = {
    "plain": {"id": "run_01", "n": 3, "ok": True, "none": None, "ratio": 0.25, "list": [1, "two", [3]]},
    "text": {'é ✓ "quoted" back\\slash \n\t\x01 😀': "line\u2028paragraph\u2029end", "<tag>": "&amp;"},
    "drf types": {
        "at": MOMENT,
        "naive": MOMENT.replace(tzinfo=None),
        "day": MOMENT.date(),
        "time": MOMENT.time(),
        "took": datetime.timedelta(seconds=90),
        "cost": decimal.Decimal("0.000123"),
        "uuid": uuid.UUID(int=7),
        "lazy": gettext_lazy("Not found."),
        "set": {1},
        "tuple": (1, 2),
        "bytes": b"raw",
    },
    "keys": {1: "one", None: "none", 2.5: "half", False: "no"},
    "huge": {"n": 2**70},
    "nested": [
        {"steps": [{"id": f"step_{n}", "output": {"n": n, "items": list(range(n))}} for n in range(40)]}
    ],
}


@pytest.mark.parametrize("name", PAYLOADS)
def test_the_json_is_drfs_byte_for_byte(name):
    payload = PAYLOADS[name]
    assert JSONRenderer().render(payload) == renderers.JSONRenderer().render(payload)


def test_an_indented_answer_is_drfs():
    payload = PAYLOADS["plain"]
    media_type = "application/json; indent=2"
    rendered = JSONRenderer().render(payload, media_type, {})
    assert rendered == renderers.JSONRenderer().render(payload, media_type, {})
    assert b'\n  "id"' in rendered


def test_no_data_is_an_empty_body():
    assert JSONRenderer().render(None) == b""


def test_the_api_answers_with_it(api_key_client):
    from django.conf import settings

    assert settings.REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"] == ["config.api.renderers.JSONRenderer"]
    response = api_key_client.get("/api/v1/workflows")
    assert response.status_code == 200 and isinstance(response.accepted_renderer, JSONRenderer)
