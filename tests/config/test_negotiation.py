"""config/api/negotiation.py picks what DRF's own negotiation picks, and config/api/permissions.py's
`is_acting` answers what `isinstance(…, ActingPrincipal)` answers."""

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer, StaticHTMLRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from accounts.principal import Principal
from config.api.negotiation import ContentNegotiation
from config.api.permissions import ActingPrincipal, is_acting

ACCEPTS = [None, "*/*", "application/json", "application/json; indent=4", "application/*", "text/html",
           "text/html, */*", "application/xml", "application/json;q=0.5, text/html", "",
           " application/json"]  # fmt: skip
QUERIES = ["", "?format=json", "?format=api", "?format=xml", "?other=1"]
RENDERERS = [
    [JSONRenderer()],
    [JSONRenderer(), BrowsableAPIRenderer()],
    [StaticHTMLRenderer(), JSONRenderer()],
    [BrowsableAPIRenderer(), JSONRenderer()],
]


def _choice(negotiation, accept, query, renderers, suffix):
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get("/api/v1/runs" + query, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers, suffix)
    except (NotAcceptable, Http404) as exc:
        return type(exc)
    return renderer, media_type


@pytest.mark.parametrize("renderers", RENDERERS)
@pytest.mark.parametrize("suffix", [None, "json", "api"])
def test_the_shortcut_picks_what_drf_picks(renderers, suffix):
    for accept in ACCEPTS:
        for query in QUERIES:
            ours = _choice(ContentNegotiation(), accept, query, renderers, suffix)
            drf = _choice(DefaultContentNegotiation(), accept, query, renderers, suffix)
            assert ours == drf, (accept, query, suffix)


def test_is_acting_is_the_protocol_check(org):
    class Lacking:
        api_key = None

        def has_role(self, minimum):
            return True

    class Blocked(Lacking):
        has_scope = None

    class Complete(Lacking):
        def has_scope(self, scope):
            return True

    candidates = [Principal(organization=org, role="owner"), None, object(), Lacking(), Blocked(), Complete()]
    assert [is_acting(c) for c in candidates] == [isinstance(c, ActingPrincipal) for c in candidates]
    assert [is_acting(c) for c in candidates] == [True, False, False, False, False, True]
