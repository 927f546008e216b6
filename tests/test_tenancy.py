"""Tenancy, generated from the URL configuration: every /api/v1 route with a path parameter, every
method its view allows, called by another organisation's API key (all scopes) and JWT (owner) for an
object of the first organisation, answers 404 — never 2xx, never 403. Routes need an entry in
tests/support/tenancy_registry.py (see its docstring), so a new endpoint cannot skip this check."""

from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from tests.conftest import jwt_for
from tests.support.tenancy_registry import EXEMPT, load_all

API_PREFIX = "api/v1/"
UNSAFE_BODY_METHODS = {"post", "put", "patch", "delete"}
PLAIN_VIEW_METHODS = ["get", "post", "put", "patch", "delete"]


@dataclass(frozen=True)
class Route:
    name: str | None
    pattern: str
    kwargs: tuple[str, ...]
    methods: tuple[str, ...]
    plain_view: bool  # a plain Django view: its methods cannot be read, so all are tried and 405 is allowed


def _methods(callback) -> tuple[tuple[str, ...], bool]:
    actions = getattr(callback, "actions", None)
    if actions:  # a DRF viewset route: exactly the methods the router mapped
        return tuple(sorted(actions)), False
    view_class = getattr(callback, "cls", None) or getattr(callback, "view_class", None)
    if view_class is None:
        return tuple(PLAIN_VIEW_METHODS), True
    names = [m for m in view_class.http_method_names if m not in {"options", "head", "trace"}]
    return tuple(m for m in names if hasattr(view_class, m)), False


def _walk(patterns, prefix: str, kwargs: tuple[str, ...]):
    for entry in patterns:
        here = prefix + str(entry.pattern)
        names = kwargs + tuple(entry.pattern.regex.groupindex)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, here, names)
        elif isinstance(entry, URLPattern):
            yield entry, here, names


def api_routes_with_parameters() -> list[Route]:
    routes = []
    for entry, pattern, kwargs in _walk(get_resolver().url_patterns, "", ()):
        if not pattern.startswith(API_PREFIX) or not kwargs or "format" in kwargs:
            continue  # not the API, no object in the path, or a DRF format-suffix duplicate
        methods, plain = _methods(entry.callback)
        routes.append(Route(entry.name, pattern, kwargs, methods, plain))
    return routes


ROUTES = api_routes_with_parameters()
REGISTRY = load_all()
CASES = [
    pytest.param(route, method, auth, id=f"{route.name or route.pattern}:{method}:{auth}")
    for route in ROUTES
    if route.name not in EXEMPT
    for method in route.methods
    for auth in ("api_key", "jwt")
]


def _call(client, method, url):
    if method in UNSAFE_BODY_METHODS:
        return getattr(client, method)(url, {}, format="json")
    return getattr(client, method)(url)


def _url(route, org, owner):
    assert route.name, (
        f"API route {route.pattern} has no name; name it so the tenancy registry can refer to it."
    )
    entry = REGISTRY.get(route.name)
    assert entry is not None, (
        f"API route {route.name!r} ({route.pattern}) has no entry in tests/support/tenancy_registry.py: "
        f"register a factory that creates an object of an organisation and returns the URL kwargs "
        f"{route.kwargs}."
    )
    kwargs = entry.factory(org, owner)
    assert set(kwargs) == set(route.kwargs), (
        f"{route.name}: factory returned {set(kwargs)}, route needs {route.kwargs}"
    )
    return reverse(route.name, kwargs=kwargs), entry


def test_routes_were_found():
    names = {route.name for route in ROUTES}
    assert {"project-detail", "member-detail", "api-key-detail"} <= names


def test_every_object_route_is_registered_or_exempt():
    missing = sorted(
        route.name or route.pattern
        for route in ROUTES
        if route.name not in REGISTRY and route.name not in EXEMPT
    )
    assert not missing, (
        f"Routes without a tenancy registry entry (tests/support/tenancy_registry.py): {missing}"
    )


def test_registry_names_real_routes():
    names = {route.name for route in ROUTES}
    stale = sorted((set(REGISTRY) | set(EXEMPT)) - names)
    assert not stale, f"Tenancy registry entries for routes that do not exist: {stale}"


@pytest.mark.parametrize(("route", "method", "auth"), CASES)
def test_other_org_gets_404(route, method, auth, org, owner, outsider_key_client, outsider_jwt_client):
    url, _ = _url(route, org, owner)
    client = outsider_key_client if auth == "api_key" else outsider_jwt_client
    response = _call(client, method, url)
    if route.plain_view and response.status_code == 405:
        return
    assert response.status_code == 404, (
        f"{method.upper()} {url} as another organisation: {response.status_code}"
    )
    assert response.json()["error"]["code"].endswith("not_found")


@pytest.mark.parametrize(
    "route",
    [pytest.param(r, id=r.name or r.pattern) for r in ROUTES if "get" in r.methods and r.name not in EXEMPT],
)
def test_own_org_can_read_the_registered_object(route, org, owner):
    """The registry makes real objects: their own organisation's owner reads them, so the 404s above
    come from scoping, not from a factory that addressed nothing."""
    url, entry = _url(route, org, owner)
    if not entry.sanity_get:
        pytest.skip(f"{route.name}: GET does not return (registered with sanity_get=False)")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {jwt_for(owner, org)}")
    response = client.get(url)
    assert response.status_code < 300, (
        f"GET {url} as the owner: {response.status_code} {response.content[:200]}"
    )
