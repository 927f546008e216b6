"""Appending to an organisation's audit chain. Call inside the transaction that makes the change."""

import json
import math
from datetime import UTC, datetime
from functools import cache

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction

from audit.chain import canonical_pieces, chain_hash, format_timestamp, link_hash_sql
from audit.checkpoints import checkpoint_due
from audit.models import AuditChainHead, AuditEvent
from config import sql
from config.context import client_ip_var, request_id_var
from config.instances import new

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


def _body_of(event: AuditEvent) -> dict:
    """What the hash covers: event_as_dict without prev_hash and hash (seq and timestamp may be unset)."""
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
        "timestamp": format_timestamp(event.timestamp) if event.timestamp else None,
    }


def event_as_dict(event: AuditEvent) -> dict:
    """The API and export shape of an event (also what the hash covers, minus prev_hash/hash)."""
    return {**_body_of(event), "prev_hash": event.prev_hash, "hash": event.hash}


def audit_chain_start(*, organization) -> None:
    """Create the organisation's chain head (idempotent)."""
    AuditChainHead.objects.get_or_create(organization=organization)


_LOCK_HEAD = sql.Select(AuditChainHead, ("organization_id", "seq", "hash"), "{pk} = %s", for_update=True)
_INSERT_EVENT = sql.Insert(AuditEvent)
_SAVE_HEAD = sql.Update(AuditChainHead, ("seq", "hash"))
# Organisations whose chain head this process has found (heads are deleted only with their organisation):
# on PostgreSQL their appends are one statement (`_append_statement`).
_HEADS_SEEN: set[str] = set()
_HEADS_SEEN_MAX = 100_000


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
    defer: bool = False,
) -> AuditEvent:
    """Append one event to the organisation's chain and return it.

    `organization` is the Organization or its id (the engine has only the id at hand). `actor` is a
    Principal, SystemActor or anything with actor_id/actor_type. The head row lock serializes appends per
    organisation, so seq stays gapless across processes.

    On PostgreSQL the append is one statement that locks the head, links the event and inserts it, the
    hash computed by the server (`_append_statement`); `defer`: inside `sql.pipeline()`, the statement is
    sent and not waited for, and the returned row's seq, timestamp and hashes are filled in when the
    pipeline's results are in."""
    organization_id = organization if isinstance(organization, str) else organization.pk
    row = new(
        AuditEvent,
        organization_id=organization_id,
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
        hash="",
    )
    db = connections[DEFAULT_DB_ALIAS]
    if db.vendor == "postgresql" and organization_id in _HEADS_SEEN:
        _append_in_one_statement(db, row, defer=defer)
        return row
    # Appends are on every write path: their three statements are written once (config/sql.py).
    head = _LOCK_HEAD.first(organization_id)
    if head is None:
        try:
            with transaction.atomic():
                AuditChainHead.objects.create(organization_id=organization_id)
        except IntegrityError:
            pass
        head = AuditChainHead.objects.select_for_update().get(organization_id=organization_id)
    elif len(_HEADS_SEEN) < _HEADS_SEEN_MAX:
        _HEADS_SEEN.add(organization_id)
    now = datetime.now(UTC)
    row.timestamp = now.replace(microsecond=(now.microsecond // 1000) * 1000)
    row.seq = head.seq + 1
    row.prev_hash = head.hash
    row.hash = chain_hash(head.hash, _body_of(row))
    _INSERT_EVENT.add([row])
    head.seq, head.hash = row.seq, row.hash
    _SAVE_HEAD.save(head)
    checkpoint_due(organization_id, row.seq)
    return row


# The columns the client gives, by attribute name; the server gives seq, timestamp, prev_hash and hash.
_GIVEN = ("id", "organization_id", "event", "actor", "actor_type", "target_type", "target_id", "run_id",
          "note", "data", "ip", "request_id")  # fmt: skip


@cache
def _append_statement() -> str:
    """PostgreSQL: lock the organisation's head, move it on (seq + 1, the new hash by the rule's SQL form,
    `chain.link_hash_sql`) and insert the event, in one statement. The timestamp is the server's clock,
    truncated to milliseconds. Without a head the INSERT's seq is null and the statement fails (not-null),
    so an event is never silently dropped."""
    quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
    head = quote(AuditChainHead._meta.db_table)
    table = quote(AuditEvent._meta.db_table)
    columns = ", ".join(quote(AuditEvent._meta.get_field(name).column) for name in (
        *_GIVEN, "seq", "timestamp", "prev_hash", "hash"))  # fmt: skip
    values = ", ".join("%s::jsonb" if name == "data" else "%s" for name in _GIVEN)
    link_hash = link_hash_sql(prev_hash="old.hash", seq="old.seq + 1", at="now_.at")
    return f"""WITH old AS (
    SELECT seq, hash FROM {head} WHERE organization_id = %s FOR UPDATE
), link AS (
    UPDATE {head} AS h SET seq = old.seq + 1, hash = {link_hash}
    FROM old, (SELECT date_trunc('milliseconds', clock_timestamp()) AS at) AS now_
    WHERE h.organization_id = %s
    RETURNING h.seq, h.hash, old.hash AS prev_hash, now_.at
)
INSERT INTO {table} ({columns})
SELECT {values}, link.seq, link.at, link.prev_hash, link.hash FROM (SELECT 1) AS one LEFT JOIN link ON TRUE
RETURNING seq, timestamp, prev_hash, hash"""


def _canonical_pieces(row: AuditEvent) -> tuple[bytes, bytes, bytes]:
    """The row's canonical body around the server's seq and timestamp (`chain.canonical_pieces`)."""
    return canonical_pieces(_body_of(row))


def _append_in_one_statement(db, row: AuditEvent, *, defer: bool) -> None:
    prefix, middle, suffix = canonical_pieces(_body_of(row))
    fields = [AuditEvent._meta.get_field(name) for name in _GIVEN]
    values = [field.get_db_prep_save(field.pre_save(row, True), db) for field in fields]
    org = row.organization_id
    cursor = sql.cursor(db)
    try:
        with db.wrap_database_errors:
            cursor.execute(_append_statement(), [org, prefix, middle, suffix, org, *values])
    except BaseException:
        cursor.close()
        raise

    def linked():
        with cursor, db.wrap_database_errors:
            found = cursor.fetchone()
        if found is None or found[0] is None:  # the not-null constraint fails first; never silently
            raise DatabaseError(f"audit chain of {org}: the event was not appended")
        row.seq, row.timestamp, row.prev_hash, row.hash = found
        row._state.adding = False
        row._state.db = DEFAULT_DB_ALIAS
        checkpoint_due(org, row.seq)

    if defer:
        sql.after_pipeline(linked)
    else:
        linked()
