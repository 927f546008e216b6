"""Appending to an organisation's audit chain. Call inside the transaction that makes the change."""

import json
import math
from datetime import UTC, datetime

from django.db import IntegrityError, transaction

from audit.chain import chain_hash
from audit.models import AuditChainHead, AuditEvent
from config import sql
from config.context import client_ip_var, request_id_var

_SAFE_INT = 2**53 - 1


def _jsonable(value):
    """Plain JSON that survives a database round trip unchanged and that RFC 8785 can encode.

    Integers outside RFC 8785's safe range, non-finite floats and floats so large that PostgreSQL's
    jsonb would hand them back as integers become strings."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) and abs(value) < _SAFE_INT else repr(value)
    if isinstance(value, int):
        return value if -_SAFE_INT <= value <= _SAFE_INT else str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    return json.loads(json.dumps(value, default=str))


def format_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_as_dict(event: AuditEvent) -> dict:
    """The API and export shape of an event (also what the hash covers, minus prev_hash/hash)."""
    return {
        "id": event.id,
        "organization": event.organization_id,
        "seq": event.seq,
        "event": event.event,
        "actor": event.actor,
        "actor_type": event.actor_type,
        "target": {"type": event.target_type, "id": event.target_id} if event.target_type else None,
        "run_id": event.run_id,
        "note": event.note,
        "data": event.data,
        "ip": event.ip,
        "request_id": event.request_id,
        "timestamp": format_timestamp(event.timestamp),
        "prev_hash": event.prev_hash,
        "hash": event.hash,
    }


def audit_chain_start(*, organization) -> None:
    """Create the organisation's chain head (idempotent)."""
    AuditChainHead.objects.get_or_create(organization=organization)


_LOCK_HEAD = sql.Select(AuditChainHead, ("organization_id", "seq", "hash"), "{pk} = %s", for_update=True)
_INSERT_EVENT = sql.Insert(AuditEvent)
_SAVE_HEAD = sql.Update(AuditChainHead, ("seq", "hash"))


# No savepoint inside the caller's transaction: an append that fails must fail the change it records,
# and skipping it saves two round trips per append on PostgreSQL.
@transaction.atomic(savepoint=False)
def audit_record(
    *,
    organization,
    event: str,
    actor,
    target: tuple[str, str] | None = None,
    data: dict | None = None,
    note: str | None = None,
    run_id: str | None = None,
) -> AuditEvent:
    """Append one event to the organisation's chain and return it.

    `organization` is the Organization or its id (the engine has only the id at hand). `actor` is a
    Principal, SystemActor or anything with actor_id/actor_type. The head row lock serializes appends per
    organisation, so seq stays gapless across processes."""
    organization_id = organization if isinstance(organization, str) else organization.pk
    # Appends are on every write path: their three statements are written once (config/sql.py).
    head = _LOCK_HEAD.first(organization_id)
    if head is None:
        try:
            with transaction.atomic():
                AuditChainHead.objects.create(organization_id=organization_id)
        except IntegrityError:
            pass
        head = AuditChainHead.objects.select_for_update().get(organization_id=organization_id)

    now = datetime.now(UTC)
    now = now.replace(microsecond=(now.microsecond // 1000) * 1000)
    row = AuditEvent(
        organization_id=organization_id,
        seq=head.seq + 1,
        event=event,
        actor=actor.actor_id,
        actor_type=actor.actor_type,
        target_type=target[0] if target else "",
        target_id=target[1] if target else "",
        run_id=run_id,
        note=note,
        data=_jsonable(data or {}),
        ip=client_ip_var.get(),
        request_id=request_id_var.get(),
        timestamp=now,
        prev_hash=head.hash,
        hash="",
    )
    body = event_as_dict(row)
    del body["prev_hash"], body["hash"]
    row.hash = chain_hash(head.hash, body)
    _INSERT_EVENT.add([row])
    head.seq, head.hash = row.seq, row.hash
    _SAVE_HEAD.save(head)
    return row
