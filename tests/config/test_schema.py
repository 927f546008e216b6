"""The OpenAPI document is generated without a single warning (this keeps failing until every new
endpoint documents itself properly) and documents the conventions on every operation."""

import re

import pytest
import yaml
from django.conf import settings
from django.contrib.staticfiles import finders
from django.core.management import call_command
from django.test import Client

from config.api.schema import AutoSchema

AUTHENTICATED_ERRORS = {"401", "403", "429", "500"}
METHODS = {"get", "post", "put", "patch", "delete"}


@pytest.fixture(scope="module")
def schema(django_db_setup, django_db_blocker, tmp_path_factory):
    """The generated document (validated against the OpenAPI spec; warnings are the next test's job)."""
    path = tmp_path_factory.mktemp("schema") / "openapi.yaml"
    with django_db_blocker.unblock():
        call_command("spectacular", "--validate", "--file", str(path))
    return yaml.safe_load(path.read_text())


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in METHODS:
                yield path, method, operation


def test_schema_generates_without_warnings_and_validates(db, tmp_path):
    path = tmp_path / "openapi.yaml"

    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(path))

    document = yaml.safe_load(path.read_text())
    assert document["openapi"].startswith("3.")
    assert document["paths"], "no API operations were documented"


def test_error_envelope_component(schema):
    components = schema["components"]["schemas"]
    assert components["Error"]["required"] == ["error"]
    assert components["Error"]["properties"]["error"] == {"$ref": "#/components/schemas/ErrorBody"}
    body = components["ErrorBody"]
    assert set(body["required"]) == {"code", "message", "status", "request_id"}
    assert "details" in body["properties"]


def test_security_schemes_for_api_key_jwt_and_session(schema):
    schemes = schema["components"]["securitySchemes"]
    assert schemes["ApiKeyBearer"] == {**schemes["ApiKeyBearer"], "type": "http", "scheme": "bearer"}
    assert schemes["ApiKeyHeader"] == {**schemes["ApiKeyHeader"], "type": "apiKey", "in": "header",
                                       "name": "X-API-Key"}  # fmt: skip
    assert schemes["JWT"] == {**schemes["JWT"], "type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    assert schemes["SessionCookie"] == {**schemes["SessionCookie"], "type": "apiKey", "in": "cookie"}


def test_every_operation_documents_its_errors_with_the_envelope(schema):
    for path, method, operation in operations(schema):
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "500" in responses, where
        if operation.get("security"):
            assert set(responses) >= AUTHENTICATED_ERRORS, where
            assert {"ApiKeyBearer": []} in operation["security"], where
        if "{" in path:
            assert "404" in responses, where
        if method in {"post", "put", "patch"}:
            assert {"400", "413", "415"} <= set(responses), where
        for code, response in responses.items():
            if int(code) >= 400:
                ref = response["content"]["application/json"]["schema"]
                assert ref == {"$ref": "#/components/schemas/Error"}, f"{where} {code}"
            assert "X-Request-Id" in response.get("headers", {}), f"{where} {code}"


def test_list_operations_document_pagination(schema):
    """limit/offset lists (the audit log's cursor pagination is its own)."""
    listed = [(p, op) for p, m, op in operations(schema) if m == "get" and "offset" in
              {param["name"] for param in op.get("parameters", [])}]  # fmt: skip
    assert listed, "no paginated list operation found"
    for path, operation in listed:
        limit = next(param for param in operation["parameters"] if param["name"] == "limit")
        assert limit["schema"]["minimum"] == 1 and limit["schema"]["maximum"] >= 1, path
        ref = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        page = schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
        assert {"total", "limit", "offset"} <= set(page["required"]), path


@pytest.mark.urls("tests.config.support.urls_testing")
def test_idempotent_operation_documents_the_key(db, settings):
    from drf_spectacular.generators import SchemaGenerator

    generated = SchemaGenerator(patterns=None, urlconf="tests.config.support.urls_testing").get_schema(
        public=True
    )
    operation = generated["paths"]["/api/v1/_test/projects"]["post"]

    assert "Idempotency-Key" in {param["name"] for param in operation["parameters"]}
    assert {"409", "422", "429"} <= set(operation["responses"])
    assert "Idempotent-Replayed" in operation["responses"]["201"]["headers"]
    public = generated["paths"]["/api/v1/_test/echo"]["post"]
    assert "security" not in public and "401" not in public["responses"]


def test_schema_class_is_ours(settings):
    assert settings.REST_FRAMEWORK["DEFAULT_SCHEMA_CLASS"] == f"{AutoSchema.__module__}.AutoSchema"


@pytest.mark.parametrize(
    ("path", "marker"),
    [("/api/v1/schema", "openapi:"), ("/api/v1/docs", "swagger-ui"), ("/api/v1/redoc", "redoc")],
)
def test_documentation_is_public(db, path, marker):
    response = Client().get(path)

    assert response.status_code == 200, response.content[:300]
    assert marker in response.content.decode().lower()


@pytest.mark.parametrize("path", ["/api/v1/docs", "/api/v1/redoc"])
def test_documentation_scripts_are_served_locally(db, path):
    """Swagger UI and ReDoc load without a CDN: every script is one of our static files."""
    html = Client().get(path).content.decode()
    scripts = re.findall(r'<script[^>]+src="([^"]+)"', html)

    assert scripts
    for src in scripts:
        assert src.startswith(settings.STATIC_URL), src
        assert finders.find(src.removeprefix(settings.STATIC_URL)), src
