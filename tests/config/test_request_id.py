import pytest
from django.test import Client

pytestmark = pytest.mark.urls("tests.config.support.urls_testing")


PATHS = ["/api/v1/_test/echo", "/api/v1/_test/whoami", "/api/v1/missing", "/healthz"]


@pytest.mark.parametrize("path", PATHS)
def test_every_response_gets_a_fresh_request_id(db, path):
    first = Client().get(path)
    second = Client().get(path)

    assert first["X-Request-Id"].startswith("req_")
    assert len(first["X-Request-Id"]) == len("req_") + 26
    assert first["X-Request-Id"] != second["X-Request-Id"]


@pytest.mark.parametrize("incoming", ["abc-123", "trace.4f2a:span_9", "A" * 128])
def test_well_formed_incoming_request_id_is_echoed(db, incoming):
    response = Client().get("/api/v1/missing", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-Id"] == incoming
    assert response.json()["error"]["request_id"] == incoming


@pytest.mark.parametrize("incoming", ["has space", "A" * 129, "semi;colon", "<script>", "ünicode"])
def test_malformed_incoming_request_id_is_replaced(db, incoming):
    response = Client().get("/api/v1/missing", HTTP_X_REQUEST_ID=incoming)

    assert response["X-Request-Id"].startswith("req_")
    assert response["X-Request-Id"] != incoming
    assert response.json()["error"]["request_id"] == response["X-Request-Id"]


def test_request_id_reaches_the_handler_context(db):
    """Services and the audit log read the id from config.context during the request."""
    response = Client().post(
        "/api/v1/_test/conflict", HTTP_X_REQUEST_ID="ctx-check-1", content_type="application/json"
    )

    assert response.status_code == 409
    assert response.json()["error"]["request_id"] == "ctx-check-1"
