"""The API's JSON renderer: DRF's output, written by orjson.

DRF's renderer writes with the standard library's encoder: about 10 µs for every kilobyte of a response
here, a tenth of a run read's CPU and more of a long run's (docs/performance.md). orjson writes the same
compact UTF-8 JSON ten times faster. What orjson does not write itself goes through DRF's own encoder
(`default`): dates and times (so they read exactly as before), decimals, lazy strings, sets and the rest.
DRF's renderer still writes what orjson refuses (an integer beyond 64 bits, a string that is not valid
UTF-8) and an indented answer (`Accept: application/json; indent=2`).

One difference: a float that is not a number is written as `null`, where DRF's strict renderer failed the
request. Baton stores none (step outputs and request bodies refuse them), so no answer carries one.
"""

import orjson
from rest_framework import renderers
from rest_framework.utils.encoders import JSONEncoder

_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
# JavaScript's line terminators, escaped as DRF escapes them (a response may be read as JavaScript).
_LINE_SEPARATOR, _PARAGRAPH_SEPARATOR = "\u2028".encode(), "\u2029".encode()


class JSONRenderer(renderers.JSONRenderer):
    _default = JSONEncoder().default

    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if indent is not None or self.ensure_ascii or not self.compact:  # settings orjson does not follow
            return super().render(data, accepted_media_type, renderer_context)
        try:
            rendered = orjson.dumps(data, default=self._default, option=_OPTIONS)
        except orjson.JSONEncodeError:
            return super().render(data, accepted_media_type, renderer_context)
        if _LINE_SEPARATOR in rendered or _PARAGRAPH_SEPARATOR in rendered:
            rendered = rendered.replace(_LINE_SEPARATOR, b"\\u2028").replace(_PARAGRAPH_SEPARATOR, b"\\u2029")
        return rendered
