"""Inbound webhooks (docs/schedules.md "Inbound webhooks"): who may start a run of a workflow from outside,
without an API key. The token (the workflow's webhook secret in the URL) and the signatures are compared in
constant time; a wrong token, an unknown workflow and a disabled hook look the same (404). The HTTP handler
that starts the run is runs/api/hooks.py."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from config.errors import ApplicationError, NotFound, RateLimited
from config.ratelimit import MINUTE, counters
from workflows.choices import WorkflowStatus
from workflows.models import WebhookDelivery, Workflow

# Request headers copied into the run's `metadata.webhook` (lower case); nothing else is kept.
HEADER_ALLOWLIST = (
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-request-id",
    "x-delivery-id",
    "x-event-type",
    "idempotency-key",
)


class InvalidSignature(ApplicationError):
    status = 401
    default_code = "invalid_signature"


def hook_not_found(workflow_id: str) -> NotFound:
    """The one answer for an unknown workflow, a disabled hook and a wrong token (nothing leaks)."""
    return NotFound("workflow_not_found", f"Workflow {workflow_id} was not found.")


def hook_workflow(workflow_id: str) -> Workflow:
    """The workflow whose hook is enabled; 404 otherwise (archived, unknown or hook disabled alike)."""
    workflow = Workflow.objects.select_related("organization").filter(pk=workflow_id).first()
    if workflow is None or not workflow.webhook_enabled or workflow.status == WorkflowStatus.ARCHIVED:
        raise hook_not_found(workflow_id)
    return workflow


def check_token(workflow: Workflow, token: str) -> None:
    if not hmac.compare_digest(token.encode(), workflow.webhook_secret.encode()):
        raise hook_not_found(workflow.id)


def baton_signature(secret: str, timestamp: int | str, body: bytes) -> str:
    """The `v1` value of X-Baton-Signature: hex HMAC-SHA256 of "<t>.<body>" with the webhook secret."""
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def check_signature(workflow: Workflow, headers, body: bytes, *, now: float | None = None) -> str:
    """Verify X-Baton-Signature (`t=…,v1=…`, at most BATON_WEBHOOK_TOLERANCE_SECONDS old or ahead) or
    GitHub's X-Hub-Signature-256 (`sha256=…`). Returns the verified signature (the replay key); a missing,
    malformed, stale or wrong one → 401 invalid_signature."""
    secret = workflow.webhook_secret
    baton = headers.get("X-Baton-Signature")
    github = headers.get("X-Hub-Signature-256")
    if baton:
        parts = {}
        for item in baton.split(","):
            name, _, value = item.strip().partition("=")
            parts.setdefault(name, []).append(value)
        stamp = (parts.get("t") or [""])[0]
        if not stamp.isascii() or not stamp.isdigit() or not parts.get("v1"):
            raise InvalidSignature(message="X-Baton-Signature must look like t=<unix seconds>,v1=<hex>.")
        now = time.time() if now is None else now
        tolerance = settings.BATON_WEBHOOK_TOLERANCE_SECONDS
        if abs(now - int(stamp)) > tolerance:
            raise InvalidSignature(
                message=f"The signature's timestamp is more than {tolerance} s away from now: sign each "
                "delivery when you send it."
            )
        expected = baton_signature(secret, stamp, body)
        for candidate in parts["v1"]:  # several v1 values: a sender rotating its secret
            if hmac.compare_digest(candidate.encode(), expected.encode()):
                return f"sig:{stamp}:{candidate}"
        raise InvalidSignature(message="The X-Baton-Signature does not match the body.")
    if github:
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        if not hmac.compare_digest(github.strip().encode(), expected.encode()):
            raise InvalidSignature(message="The X-Hub-Signature-256 does not match the body.")
        # GitHub signs the body only: a redelivery's body is the same, its delivery id is not.
        return f"sig:gh:{headers.get('X-GitHub-Delivery', '')}:{github.strip()}"
    raise InvalidSignature(message="Sign the request with X-Baton-Signature or X-Hub-Signature-256.")


def check_rate(workflow: Workflow) -> dict:
    """Count one request against the workflow's per-minute hook limit (the shared rate-limit counters of
    config/ratelimit.py: every web process sees them). Returns the rate-limit headers;
    over the limit → 429."""
    limit = settings.BATON_WEBHOOK_RATE_PER_MINUTE
    now = int(time.time())
    window = now - now % MINUTE
    used, _ = counters().hit(f"hook:{workflow.id}", MINUTE, now, with_previous=False)
    reset = window + MINUTE
    headers = {
        "X-RateLimit-Limit": str(limit),
        "X-RateLimit-Remaining": str(max(0, limit - used)),
        "X-RateLimit-Reset": str(reset),
        "RateLimit": f"limit={limit}, remaining={max(0, limit - used)}, reset={reset - now}",
        "RateLimit-Policy": f"{limit};w=60",
    }
    if used > limit:
        error = RateLimited(
            "rate_limited",
            f"This workflow's webhook accepts {limit} requests per minute. Retry in {reset - now} seconds.",
            retry_after=max(1, reset - now),
        )
        error.headers = headers
        raise error
    return headers


def webhook_metadata(headers) -> dict:
    """The allowlisted request headers, as the run's `metadata.webhook`."""
    return {name: headers[name][:500] for name in HEADER_ALLOWLIST if headers.get(name)}


def webhook_deliveries_prune(*, now=None) -> int:
    """Forget deliveries older than BATON_IDEMPOTENCY_TTL (a retry after that starts a new run, as the API's
    Idempotency-Key does; a replayed signature is refused by its timestamp by then). Returns rows deleted."""
    cutoff = (now or timezone.now()) - timedelta(seconds=settings.BATON_IDEMPOTENCY_TTL)
    deleted, _ = WebhookDelivery.objects.filter(created_at__lt=cutoff).delete()
    return deleted


@transaction.atomic
def webhook_secret_rotate(*, workflow: Workflow, actor) -> Workflow:
    """A new webhook secret for `workflow`; the old one stops working at once. Audited
    `workflow.webhook_secret_rotated` (without either secret)."""
    workflow = Workflow.objects.select_for_update().get(pk=workflow.pk)
    workflow.webhook_secret = secrets.token_hex(24)
    workflow.updated_at = timezone.now()
    workflow.save(update_fields=["webhook_secret", "updated_at"])
    audit_record(
        organization=workflow.organization,
        event="workflow.webhook_secret_rotated",
        actor=actor,
        target=("workflow", workflow.id),
        data={},
    )
    return workflow
