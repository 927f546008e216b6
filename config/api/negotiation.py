"""DRF's content negotiation with a shortcut for what nearly every API client sends: `Accept: */*`,
`Accept: application/json` or no Accept header, no `?format=` and no format suffix, to a view whose first
renderer is JSON. DRF's negotiation would pick that renderer, with that media type, after parsing the header
into media types; anything else is negotiated by DRF as before."""

from rest_framework.negotiation import DefaultContentNegotiation

_JSON = "application/json"
_PLAIN_ACCEPTS = frozenset({"*/*", _JSON})


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        if (
            not format_suffix
            and renderers
            and renderers[0].media_type == _JSON
            and request.META.get("HTTP_ACCEPT", "*/*") in _PLAIN_ACCEPTS
            and self.settings.URL_FORMAT_OVERRIDE not in request.query_params
        ):
            return renderers[0], _JSON
        return super().select_renderer(request, renderers, format_suffix)
