"""Every kind of API error answers the one envelope: JSON, the right status and code, the request id,
never HTML, never a traceback — with DEBUG off and on."""

from dataclasses import dataclass, field

import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.choices import Scope
from accounts.keys import generate_key
from tests.conftest import key_for

pytestmark = pytest.mark.urls("tests.config.support.urls_testing")

BIG = 2048  # DATA_UPLOAD_MAX_MEMORY_SIZE in these tests


@dataclass
class Row:
    name: str
    method: str
    path: str
    status: int
    code: str
    kwargs: dict = field(default_factory=dict)
    auth: str = "none"  # none | key | read_only_key | limited
    headers: dict = field(default_factory=dict)


def multipart_body(boundary: str, text_size: int) -> bytes:
    return (
        f'--{boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\n'.encode()
        + b"x" * text_size
        + f"\r\n--{boundary}--\r\n".encode()
    )


ROWS = [
    Row("drf_validation", "post", "/api/v1/_test/echo", 400, "invalid_request",
        {"data": '{"name": ""}', "content_type": "application/json"}),
    Row("malformed_json", "post", "/api/v1/_test/echo", 400, "invalid_request",
        {"data": '{"name": ', "content_type": "application/json"}),
    Row("missing_credentials", "get", "/api/v1/_test/whoami", 401, "unauthorized"),
    Row("malformed_api_key", "get", "/api/v1/_test/whoami", 401, "unauthorized",
        headers={"HTTP_AUTHORIZATION": "Bearer bt_live_nothex"}),
    Row("unknown_api_key", "get", "/api/v1/_test/whoami", 401, "unauthorized",
        headers={"HTTP_X_API_KEY": generate_key()}),
    Row("bad_jwt", "get", "/api/v1/_test/whoami", 401, "unauthorized",
        headers={"HTTP_AUTHORIZATION": "Bearer eyJhbGciOiJIUzI1NiJ9.e30.bad"}),
    Row("insufficient_scope", "get", "/api/v1/_test/admin-only", 403, "insufficient_scope",
        auth="read_only_key"),
    Row("unknown_api_path", "get", "/api/v1/no/such/thing", 404, "not_found"),
    Row("drf_method_not_allowed", "delete", "/api/v1/_test/echo", 405, "method_not_allowed"),
    Row("django_method_not_allowed", "get", "/api/v1/_test/post-only", 405, "method_not_allowed"),
    Row("not_acceptable", "get", "/api/v1/_test/echo", 406, "not_acceptable",
        headers={"HTTP_ACCEPT": "application/xml"}),
    Row("application_conflict", "post", "/api/v1/_test/conflict", 409, "run_not_cancellable"),
    Row("bare_html_error_response", "get", "/api/v1/_test/bare-error", 409, "conflict"),
    Row("json_body_too_large", "post", "/api/v1/_test/echo", 413, "payload_too_large",
        {"data": '{"name": "' + "x" * (BIG + 10) + '"}', "content_type": "application/json"}),
    Row("request_data_too_big", "post", "/api/v1/_test/echo", 413, "payload_too_large",
        {"data": multipart_body("b0undary", BIG + 10),
         "content_type": "multipart/form-data; boundary=b0undary"}),
    Row("unsupported_media_type", "post", "/api/v1/_test/echo", 415, "unsupported_media_type",
        {"data": "name=x", "content_type": "text/plain"}),
    Row("throttled", "get", "/api/v1/_test/whoami", 429, "rate_limited", auth="limited"),
    Row("drf_view_crash", "get", "/api/v1/_test/boom", 500, "internal_error"),
    Row("django_view_crash", "get", "/api/v1/_test/django-boom", 500, "internal_error"),
]  # fmt: skip


@pytest.fixture
def client_for(org, owner):
    def make(auth: str):
        client = APIClient(raise_request_exception=False)
        if auth == "key":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(org, owner)}")
        elif auth == "read_only_key":
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(org, owner, [Scope.WORKFLOWS_READ])}")
        elif auth == "limited":
            org.rate_per_minute = 1
            org.save(update_fields=["rate_per_minute"])
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {key_for(org, owner)}")
            assert client.get("/api/v1/_test/whoami").status_code == 200
        return client

    return make


@pytest.mark.parametrize("debug", [False, True], ids=["debug_off", "debug_on"])
@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_error_envelope(row, debug, client_for, settings):
    settings.DEBUG = debug
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = BIG
    settings.BATON_MAX_UPLOAD_BYTES = 0 if row.name != "request_data_too_big" else BIG * 4
    client = client_for(row.auth)

    response = getattr(client, row.method)(row.path, **row.kwargs, **row.headers)

    assert response.status_code == row.status, response.content[:500]
    assert response["Content-Type"] == "application/json"
    content = response.content.decode()
    assert "Traceback" not in content and "<html" not in content.lower() and "secret internals" not in content
    error = response.json()["error"]
    assert error["code"] == row.code
    assert error["status"] == row.status
    assert error["message"] and isinstance(error["message"], str)
    assert error["request_id"] == response["X-Request-Id"]
    assert error["request_id"].startswith("req_")
    if row.status == 429:
        assert int(response["Retry-After"]) >= 1
        assert response["X-RateLimit-Remaining"] == "0"
    if row.status == 401:
        assert response["WWW-Authenticate"].startswith("Bearer")
    if row.name == "django_method_not_allowed":
        assert response["Allow"] == "POST"


def test_validation_error_lists_fields(api_client):
    response = api_client.post("/api/v1/_test/echo", {"name": "x" * 30}, format="json")

    assert response.status_code == 400
    fields = response.json()["error"]["details"]["fields"]
    assert list(fields) == ["name"]
    assert "20" in fields["name"][0]


def test_csrf_failure_on_session_is_an_envelope(session_client):
    response = session_client.get("/api/v1/_test/whoami")
    assert response.status_code == 200

    response = session_client.post("/api/v1/_test/projects", {"name": "x"}, format="json")

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "csrf_failed"


def test_pages_outside_api_keep_html(db, settings):
    settings.DEBUG = False
    response = Client().get("/definitely/not/a/page")

    assert response.status_code == 404
    assert "application/json" not in response["Content-Type"]


def test_error_envelope_for_exception_in_debug_technical_page(db, settings):
    """Django's DEBUG 404 page (HTML with settings and URL patterns) never reaches an API client."""
    settings.DEBUG = True
    response = Client().get("/api/v1/nothing-here")

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    assert "urlpatterns" not in response.content.decode()
