"""OpenAPI security schemes for Baton's three authentication classes (imported by ConfigConfig.ready)."""

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension, OpenApiFilterExtension


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """An API key, sent either as a Bearer token or in X-API-Key (either one suffices)."""

    target_class = "accounts.authentication.ApiKeyAuthentication"
    name = ["ApiKeyBearer", "ApiKeyHeader"]
    priority = 1

    def get_security_requirement(self, auto_schema):
        return [{"ApiKeyBearer": []}, {"ApiKeyHeader": []}]

    def get_security_definition(self, auto_schema):
        return [
            {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "bt_live_<48 hex>",
                "description": "`Authorization: Bearer bt_live_…` — an organisation's API key; scopes apply.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
                "description": "`X-API-Key: bt_live_…` — the same API key in its own header.",
            },
        ]


class OrgJWTScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.OrgJWTAuthentication"
    name = "JWT"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A user's access token from `POST /api/v1/auth/token`, bound to one organisation.",
        }


class OrgSessionScheme(OpenApiAuthenticationExtension):
    target_class = "accounts.authentication.OrgSessionAuthentication"
    name = "SessionCookie"
    priority = 1

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "cookie",
            "name": settings.SESSION_COOKIE_NAME,
            "description": "The dashboard session (current organisation); unsafe methods need CSRF.",
        }


class StrictFilterParameters(OpenApiFilterExtension):
    """A StrictFilterBackend's parameters are declared with each list operation (extend_schema
    parameters), so the filterset adds none of its own; the actions of the same viewset get none."""

    target_class = "config.api.filtersets.StrictFilterBackend"
    priority = 1

    def get_schema_operation_parameters(self, auto_schema, *args, **kwargs):
        return []
