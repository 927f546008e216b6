"""`webhook`: deliver a payload signed with the organisation's signing secret (`X-Baton-Signature`)."""

from .base import HEADERS_SCHEMA, URL_SCHEMA, StepType, object_schema, timeout_seconds

STEP_TYPE = StepType(
    name="webhook",
    description="POST a signed JSON payload to a URL; output is {status_code, delivered}.",
    config_schema=object_schema(
        {
            "url": URL_SCHEMA,
            "method": {"enum": ["POST", "PUT", "PATCH"], "default": "POST"},
            "payload": {},
            "headers": HEADERS_SCHEMA,
            "timeout_seconds": timeout_seconds(),
        },
        required=["url"],
    ),
    has_side_effects=True,
)
