"""`http_request`: call an HTTP endpoint through the policy-enforcing outbound client."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from accounts.network import OutboundError, OutboundPolicy
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.outbound import OutboundResponse, fetch
from runs.engine.secrets import outbound_policy_for
from workflows.steps import (
    HEADERS_SCHEMA,
    URL_SCHEMA,
    StepType,
    integer,
    object_schema,
    string,
    timeout_seconds,
)

METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
BODY_MAX_CHARS = 1024 * 1024

_STATUS = integer(100, 599)


def _check(config):
    if "json" in config and "body" in config:
        yield "config may set json or body, not both"
    if config.get("method", "GET") in ("GET", "HEAD") and ("json" in config or "body" in config):
        yield f"config sends a body with {config.get('method', 'GET')}, which does not take one"


DEFAULT_TIMEOUT_SECONDS = 30
STORED_BODY_MAX_CHARS = 256 * 1024  # what the step output keeps of a response body
FETCH_MAX_BYTES = 10 * 1024 * 1024  # larger responses fail with response_too_large
ERROR_BODY_CHARS = 1000  # the start of the body kept in an http_status error's details
# Outbound failures worth another attempt (the retry policy decides how many); the rest are permanent.
RETRYABLE_OUTBOUND = frozenset({"timeout", "connection_failed", "dns_failed"})
RETRYABLE_STATUSES = frozenset({408, 425, 429})


def outbound_policy(context: StepContext) -> OutboundPolicy:
    """The outbound policy for this step's organisation: its security policy's `block_private_networks`
    and `http_allowlist`, plus the deployment-wide `BATON_HTTP_ALLOWLIST` setting (runs/engine/secrets.py).
    A bad entry (only the setting can hold one: the policy API validates) fails the step, not the worker.
    """
    try:
        return outbound_policy_for(context.organization_id)
    except ValueError as exc:
        raise StepError(
            "policy_invalid", f"The http allowlist is not valid: {exc}", retryable=False
        ) from None


def time_budget(context: StepContext, configured: float | None) -> float:
    """Seconds this attempt may spend: the config's timeout (default 30 s), bounded by the step deadline."""
    remaining = (context.deadline - datetime.now(UTC)).total_seconds()
    if remaining <= 0:
        raise StepError("step_timeout", f"Step '{context.step_id}' reached its deadline before it started.")
    return min(float(configured or DEFAULT_TIMEOUT_SECONDS), remaining)


def outbound_step_error(context: StepContext, exc: OutboundError) -> StepError:
    """An OutboundError as the step's error: `ssrf_blocked` is the policy's `policy_violation`."""
    details = {"outbound_code": exc.code, **exc.details}
    if exc.code == "stopped":
        return terminated(context)
    if exc.code == "ssrf_blocked":
        return StepError(
            "policy_violation",
            f"Step '{context.step_id}' was refused by the security policy: {exc.message}",
            retryable=False,
            details=details,
        )
    return StepError(
        exc.code,
        f"Step '{context.step_id}': {exc.message}",
        retryable=exc.code in RETRYABLE_OUTBOUND,
        details=details,
    )


def terminated(context: StepContext) -> StepError:
    """The attempt's error when the step was told to stop (its run terminated, or its lease lost)."""
    message = f"Step '{context.step_id}' stopped: the run was terminated."
    return StepError("terminated", message, retryable=False)


def status_retryable(status: int) -> bool:
    return status >= 500 or status in RETRYABLE_STATUSES


def _expected(config) -> set[int] | None:
    expect = config.get("expect_status")
    if expect is None:
        return None
    return {expect} if isinstance(expect, int) else set(expect)


def _body(response: OutboundResponse) -> tuple[object, bool]:
    """The body as stored in the output (JSON when the response says JSON) and whether it was cut."""
    content_type = response.headers.get("content-type", "").split(";")[0].strip().lower()
    text = response.text
    if len(text) > STORED_BODY_MAX_CHARS:
        return text[:STORED_BODY_MAX_CHARS], True
    if content_type == "application/json" or content_type.endswith("+json"):
        try:
            return json.loads(text), False
        except ValueError:
            pass
    return text, False


def _query(config) -> dict[str, str]:
    return {
        name: ("true" if value else "false") if isinstance(value, bool) else str(value)
        for name, value in (config.get("query") or {}).items()
    }


def execute(context: StepContext) -> StepOutcome:
    config = context.config
    method = str(config.get("method", "GET")).upper()
    headers = dict(config.get("headers") or {})
    content = None
    if "json" in config:
        content = json.dumps(config["json"], separators=(",", ":"), ensure_ascii=False).encode()
        if not any(name.lower() == "content-type" for name in headers):
            headers["Content-Type"] = "application/json"
    elif "body" in config:
        content = config["body"].encode()
    try:
        response = fetch(
            method,
            config["url"],
            headers=headers,
            params=_query(config),
            content=content,
            timeout=time_budget(context, config.get("timeout_seconds")),
            policy=outbound_policy(context),
            max_response_bytes=FETCH_MAX_BYTES,
            should_stop=context.should_stop,  # a terminated run abandons the call
        )
    except OutboundError as exc:
        raise outbound_step_error(context, exc) from None
    body, truncated = _body(response)
    status = response.status_code
    expected = _expected(config)
    if (status not in expected) if expected is not None else status >= 400:
        wanted = f"one of {sorted(expected)}" if expected is not None else "a status below 400"
        raise StepError(
            "http_status",
            f"Step '{context.step_id}' got HTTP {status}, expected {wanted}.",
            retryable=status_retryable(status),
            details={"status_code": status, "body": response.text[:ERROR_BODY_CHARS]},
        )
    return StepOutcome.completed(
        {"status_code": status, "headers": response.headers, "body": body, "truncated": truncated}
    )


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
    io_bound=True,
    execute=execute,
)
