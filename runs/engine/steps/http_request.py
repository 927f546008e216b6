"""`http_request`: call an HTTP endpoint through the policy-enforcing outbound client."""

from .base import HEADERS_SCHEMA, URL_SCHEMA, StepType, integer, object_schema, string, timeout_seconds

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
BODY_MAX_CHARS = 1024 * 1024

_STATUS = integer(100, 599)


def _check(config):
    if "json" in config and "body" in config:
        yield "config may set json or body, not both"
    if config.get("method", "GET") in ("GET", "HEAD") and ("json" in config or "body" in config):
        yield f"config sends a body with {config.get('method', 'GET')}, which does not take one"


STEP_TYPE = StepType(
    name="http_request",
    description="Call an HTTP endpoint; output is {status_code, headers, body}.",
    config_schema=object_schema(
        {
            "method": {"enum": METHODS, "default": "GET"},
            "url": URL_SCHEMA,
            "headers": HEADERS_SCHEMA,
            "query": {
                "type": "object",
                "maxProperties": 100,
                "additionalProperties": {"type": ["string", "number", "boolean"]},
            },
            "json": {},
            "body": string(BODY_MAX_CHARS),
            "timeout_seconds": timeout_seconds(),
            "expect_status": {
                "oneOf": [_STATUS, {"type": "array", "items": _STATUS, "minItems": 1, "maxItems": 50}]
            },
        },
        required=["url"],
    ),
    check=_check,
    # GET and HEAD are read-only; the engine decides per method for dry runs.
    has_side_effects=True,
)
