"""config/api/browser.py: Django's session, authentication and messages middleware leave a request that
carries an API key alone; every answer is still the one Django's own middleware gives, and a request by
session still needs its CSRF token."""

import pytest
from django.conf import settings
from django.http import HttpResponse
from django.test import RequestFactory, override_settings
from rest_framework.test import APIClient

from config.api import browser

STOCK = {
    "config.api.browser.ApiSessionMiddleware": "django.contrib.sessions.middleware.SessionMiddleware",
    "config.api.browser.ApiAuthenticationMiddleware": (
        "django.contrib.auth.middleware.AuthenticationMiddleware"
    ),
    "config.api.browser.ApiMessageMiddleware": "django.contrib.messages.middleware.MessageMiddleware",
}


# The organisation's rate-limit counters move with each request: their headers are compared by name.
COUNTED = {"X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"}


def _answer(client, method, path, **extra):
    response = getattr(client, method)(path, format="json", HTTP_X_REQUEST_ID="req-same", **extra)
    headers = {name: None if name in COUNTED else value for name, value in response.items()}
    return response.status_code, response.content, headers, sorted(response.cookies)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/me"),
        ("get", "/api/v1/runs"),
        ("get", "/api/v1/workflows?limit=2"),
        ("get", "/api/v1/missing"),
        ("post", "/api/v1/runs/bulk/cancel"),
        ("delete", "/api/v1/me"),
    ],
)
def test_a_key_request_gets_what_djangos_middleware_gives(api_key_client, method, path):
    assert list(STOCK) == [name for name in settings.MIDDLEWARE if name.startswith("config.api.browser.")]
    _answer(api_key_client, "get", "/api/v1/me")  # the key's first use sets its last_used_at
    ours = _answer(api_key_client, method, path)
    with override_settings(MIDDLEWARE=[STOCK.get(name, name) for name in settings.MIDDLEWARE]):
        stock = _answer(api_key_client, method, path)
    assert ours == stock


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_a_bad_key_is_refused_the_same_way(db, header):
    value = "Bearer bt_not_a_key" if header == "HTTP_AUTHORIZATION" else "bt_not_a_key"
    client = APIClient()
    ours = _answer(client, "get", "/api/v1/runs", **{header: value})
    with override_settings(MIDDLEWARE=[STOCK.get(name, name) for name in settings.MIDDLEWARE]):
        stock = _answer(client, "get", "/api/v1/runs", **{header: value})
    assert ours == stock and ours[0] == 401


def test_the_middleware_makes_nothing_for_a_key_request_and_all_for_others():
    seen = {}

    def view(request):
        seen.update(made=[hasattr(request, name) for name in ("session", "user", "_messages")])
        return HttpResponse()

    chain = browser.ApiSessionMiddleware(
        browser.ApiAuthenticationMiddleware(browser.ApiMessageMiddleware(view))
    )
    factory = RequestFactory()
    for request, made in [
        (factory.get("/api/v1/runs", HTTP_AUTHORIZATION="Bearer bt_x"), False),
        (factory.get("/api/v1/runs", HTTP_X_API_KEY="bt_x"), False),
        (factory.get("/api/v1/runs", HTTP_AUTHORIZATION="Bearer eyJ.a.jwt"), True),  # a JWT
        (factory.get("/api/v1/runs"), True),  # a session, or nobody
        (factory.get("/runs/", HTTP_AUTHORIZATION="Bearer bt_x"), True),  # a dashboard page
        (factory.get("/api/v1/docs", HTTP_X_API_KEY="bt_x"), True),  # the API's page for a browser
    ]:
        chain(request)
        assert seen["made"] == [made] * 3, request


def test_the_api_key_is_read_as_the_authentication_reads_it():
    assert browser.api_key_in({"HTTP_X_API_KEY": " bt_a "}) == " bt_a "
    assert browser.api_key_in({"HTTP_AUTHORIZATION": "bearer  bt_a "}) == "bt_a"
    assert browser.api_key_in({"HTTP_AUTHORIZATION": "Bearer eyJ.a.b"}) is None
    assert browser.api_key_in({"HTTP_AUTHORIZATION": "Basic bt_a"}) is None
    assert browser.api_key_in({}) is None


def test_a_session_request_still_needs_its_csrf_token(session_client):
    refused = session_client.post("/api/v1/runs/bulk/cancel", {"ids": []}, format="json")
    assert refused.status_code == 403 and "CSRF" in refused.json()["error"]["message"]
    session_client.get("/")  # the dashboard sets the CSRF cookie
    token = session_client.cookies[settings.CSRF_COOKIE_NAME].value
    allowed = session_client.post(
        "/api/v1/runs/bulk/cancel", {"ids": []}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert allowed.status_code != 403, allowed.content


def test_a_session_with_a_bad_key_is_refused_not_signed_in_by_the_session(session_client):
    response = session_client.get("/api/v1/runs", HTTP_AUTHORIZATION="Bearer bt_not_a_key")
    assert response.status_code == 401


def test_dashboard_pages_keep_their_headers_and_cookies(session_client):
    response = session_client.get("/")
    assert response.status_code == 200
    assert response["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" in response
    assert "Cookie" in response["Vary"]
