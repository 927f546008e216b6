"""`webhook`: deliver a payload signed with the organisation's signing secret (`X-Baton-Signature`)."""

from __future__ import annotations

import json

from accounts.network import OutboundError
from runs.engine import signing
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.outbound import fetch
from workflows.steps import HEADERS_SCHEMA, URL_SCHEMA, StepType, object_schema, timeout_seconds

from .http_request import (
    ERROR_BODY_CHARS,
    FETCH_MAX_BYTES,
    outbound_policy,
    outbound_step_error,
    status_retryable,
    time_budget,
)

# Set by Baton after the config's headers, so a config cannot forge them.
RESERVED_HEADERS = frozenset({"content-type", "x-baton-signature", "x-baton-delivery", "x-baton-run-id"})


def execute(context: StepContext) -> StepOutcome:
    config = context.config
    body = json.dumps(config.get("payload"), separators=(",", ":"), ensure_ascii=False).encode()
    # The current secret, and during a rotation's grace period the previous one too (two v1= entries).
    secret = signing.organization_signing_secrets(context.organization_id)
    headers = {
        name: value
        for name, value in (config.get("headers") or {}).items()
        if name.lower() not in RESERVED_HEADERS
    }
    headers.update(
        {
            "Content-Type": "application/json",
            signing.SIGNATURE_HEADER: signing.sign(secret, body),
            # Deliveries are at least once: the same id on every attempt lets receivers drop duplicates.
            "X-Baton-Delivery": context.step_run_id,
            "X-Baton-Run-Id": context.run_id,
        }
    )
    try:
        response = fetch(
            str(config.get("method", "POST")).upper(),
            config["url"],
            headers=headers,
            content=body,
            timeout=time_budget(context, config.get("timeout_seconds")),
            policy=outbound_policy(context),
            max_response_bytes=FETCH_MAX_BYTES,
            should_stop=context.should_stop,  # a terminated run abandons the call
        )
    except OutboundError as exc:
        raise outbound_step_error(context, exc) from None
    status = response.status_code
    if not 200 <= status < 300:
        raise StepError(
            "http_status",
            f"Step '{context.step_id}' webhook was not accepted: HTTP {status}.",
            retryable=status_retryable(status),
            details={"status_code": status, "body": response.text[:ERROR_BODY_CHARS]},
        )
    return StepOutcome.completed({"status_code": status, "delivered": True})


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
    io_bound=True,
    execute=execute,
)
