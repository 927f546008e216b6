"""Idempotency-Key for creating POSTs.

    from config.api.idempotency import idempotent

    class WorkflowViewSet(viewsets.ViewSet):
        @idempotent
        def create(self, request): ...

With an `Idempotency-Key` header (1-255 printable ASCII characters) the request runs in one transaction
that reserves the key for the organisation (an insert: the unique constraint on (organization, key) picks
one winner among concurrent requests in any number of processes; on PostgreSQL a concurrent request with
the same key waits for the winner's commit, then replays it), runs the handler and stores its successful
response (< 400), replayed for 24 h (BATON_IDEMPOTENCY_TTL) to requests with the same key and the same
fingerprint (method, path, canonical body), with `Idempotent-Replayed: true`. What the handler created and
the stored response commit together: a process killed in between leaves neither, so a retry with the key
runs the handler afresh (a committed reservation, as before, answered 409 for 5 minutes, then ran the handler
again next to the run it had already created: the crash soak, docs/reliability.md). A different fingerprint
→ 422 idempotency_key_reused; a reservation in progress (left by a handler that continues after its commit,
below) → 409 idempotency_request_in_progress. A handler that raises or answers >= 400 releases the key, so
the client may fix and retry with it. Without the header the handler runs as usual.

A handler that must wait after its commit (the trigger's `wait`) returns a response with an
`idempotency_continue` attribute: a callable run after the commit that returns the final response. The
response stored for replay is the one before the wait."""

import functools
import hashlib
import json
import threading
import time
from datetime import timedelta

import rfc8785
from django.conf import settings
from django.db import connections, transaction
from django.utils import timezone
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from config import sql
from config.errors import Conflict, InvalidRequest, Unprocessable
from config.models import IdempotencyRecord

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = 255
# A reservation this old whose request never finished (its process died) may be taken over.
ABANDONED_AFTER = timedelta(minutes=5)
PRUNE_EVERY_SECONDS = 300

_prune_state = {"last": 0.0}
_prune_lock = threading.Lock()


def _valid_key(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(32 <= ord(ch) < 127 for ch in key)


def _canonical(value) -> bytes:
    try:
        return rfc8785.dumps(value)
    except (TypeError, ValueError, rfc8785.CanonicalizationError):
        return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode()


def request_fingerprint(request) -> str:
    """SHA-256 of method, path and the parsed body (JSON canonicalised; multipart files by digest)."""
    data = request.data
    # A QueryDict (form or multipart body) keeps every value of a repeated field.
    body = dict(data.lists()) if hasattr(data, "lists") else data
    files = {}
    for name, upload in getattr(request, "FILES", {}).items():
        digest = hashlib.sha256()
        for chunk in upload.chunks():
            digest.update(chunk)
        upload.seek(0)
        files[name] = [upload.name, upload.size, digest.hexdigest()]
    if files and isinstance(body, dict):
        body = {key: value for key, value in body.items() if key not in files}
    payload = {"method": request.method, "path": request.path, "body": body, "files": files}
    return hashlib.sha256(_canonical(payload)).hexdigest()


def _reserve(organization_id: str, key: str, fingerprint: str) -> bool:
    """Insert the in-flight record; True when this request won the key, False when it exists."""
    connection = connections["default"]
    q = connection.ops.quote_name
    now = timezone.now()
    expires = now + timedelta(seconds=settings.BATON_IDEMPOTENCY_TTL)
    table = q(IdempotencyRecord._meta.db_table)
    columns = ", ".join(q(c) for c in ("organization_id", "key", "fingerprint", "in_progress", "created_at",
                                       "expires_at"))  # fmt: skip
    sql = (
        f"INSERT INTO {table} ({columns}) VALUES (%s, %s, %s, %s, %s, %s) "
        f"ON CONFLICT ({q('organization_id')}, {q('key')}) DO NOTHING RETURNING {q('id')}"
    )
    adapt = connection.ops.adapt_datetimefield_value
    with connection.cursor() as cursor:
        cursor.execute(sql, [organization_id, key, fingerprint, True, adapt(now), adapt(expires)])
        return cursor.fetchone() is not None


def _claim(organization_id: str, key: str, fingerprint: str):
    """Reserve the key, or return the existing record (replay) / raise (409, 422)."""
    for _ in range(5):
        if _reserve(organization_id, key, fingerprint):
            return None
        now = timezone.now()
        record = IdempotencyRecord.objects.filter(organization_id=organization_id, key=key).first()
        if record is None:  # released or pruned in between: try again
            continue
        if record.expires_at <= now:
            IdempotencyRecord.objects.filter(pk=record.pk, expires_at__lte=now).delete()
            continue
        if record.fingerprint != fingerprint:
            raise Unprocessable(
                "idempotency_key_reused",
                "This Idempotency-Key was already used with a different request (method, path or body).",
            )
        if not record.in_progress:
            return record
        if record.created_at <= now - ABANDONED_AFTER:
            taken = IdempotencyRecord.objects.filter(
                pk=record.pk, in_progress=True, created_at=record.created_at
            ).update(created_at=now, expires_at=now + timedelta(seconds=settings.BATON_IDEMPOTENCY_TTL))
            if taken:
                return None
            continue
        raise Conflict(
            "idempotency_request_in_progress",
            "A request with this Idempotency-Key is still being processed. Retry shortly.",
        )
    raise Conflict(
        "idempotency_request_in_progress",
        "A request with this Idempotency-Key is changing state. Retry shortly.",
    )


def _response_body(response):
    """The response's JSON body as stored for replay, or raise ValueError if it is not replayable."""
    if getattr(response, "streaming", False):
        raise ValueError("streaming responses are not replayable")
    if hasattr(response, "data"):
        return json.loads(JSONRenderer().render(response.data) or b"null")
    if response.get("Content-Type", "").startswith("application/json"):
        return json.loads(response.content or b"null")
    raise ValueError("only JSON responses are replayable")


def _release(organization_id: str, key: str, fingerprint: str) -> None:
    IdempotencyRecord.objects.filter(
        organization_id=organization_id, key=key, fingerprint=fingerprint, in_progress=True
    ).delete()


def prune_expired(now=None) -> int:
    """Delete idempotency records past their expiry; return how many went."""
    deleted, _ = IdempotencyRecord.objects.filter(expires_at__lt=now or timezone.now()).delete()
    return deleted


def _maybe_prune() -> None:
    now = time.monotonic()
    if now - _prune_state["last"] < PRUNE_EVERY_SECONDS or not _prune_lock.acquire(blocking=False):
        return
    try:
        _prune_state["last"] = now
        prune_expired()
    finally:
        _prune_lock.release()


def _complete(view, response, organization_id: str, key: str, fingerprint: str) -> None:
    """Store a successful response for replay, or release the key (an error, a response not replayable)."""
    try:
        if response.status_code >= 400:
            raise ValueError("errors are not replayed")
        body = _response_body(response)
    except ValueError:
        _release(organization_id, key, fingerprint)
        return
    # Secrets shown once (a new API key) are never stored: a replay answers them as null.
    for field in getattr(view, "idempotency_replay_omit", ()):
        if isinstance(body, dict) and field in body:
            body[field] = None
    IdempotencyRecord.objects.filter(
        organization_id=organization_id, key=key, fingerprint=fingerprint, in_progress=True
    ).update(in_progress=False, response_status=response.status_code, response_body=body)


def continued(response):
    """The final response of a handler that continues after its commit (`idempotency_continue`)."""
    follow = getattr(response, "idempotency_continue", None)
    return follow() if follow is not None else response


def idempotent(handler):
    """Decorate a creating POST handler `(self, request, *args, **kwargs)` (viewset `create` or an
    `@action`). Keys are scoped to request.auth.organization; on a request without an organisation
    (a public endpoint) the header is ignored."""

    @functools.wraps(handler)
    def wrapper(self, request, *args, **kwargs):
        key = request.headers.get(HEADER)
        organization = getattr(request.auth, "organization", None)
        if key is None or organization is None:  # keys are per organisation: none without one
            return continued(handler(self, request, *args, **kwargs))
        if not _valid_key(key):
            raise InvalidRequest(
                "invalid_request",
                f"{HEADER} must be 1 to {MAX_KEY_LENGTH} printable ASCII characters.",
                details={"fields": {HEADER: [f"1 to {MAX_KEY_LENGTH} printable ASCII characters."]}},
            )
        organization_id = organization.pk
        fingerprint = request_fingerprint(request)
        _maybe_prune()
        # One transaction, committed here and only here (not by a committing pipeline of the handler's).
        with transaction.atomic(), sql.commit_held():
            record = _claim(organization_id, key, fingerprint)
            if record is not None:
                return Response(
                    record.response_body, status=record.response_status, headers={REPLAYED_HEADER: "true"}
                )
            response = handler(self, request, *args, **kwargs)
            _complete(self, response, organization_id, key, fingerprint)
        return continued(response)

    wrapper.idempotent = True
    return wrapper
