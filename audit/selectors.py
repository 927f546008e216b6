"""Organisation-scoped reads of the audit log: the filtered log, the raw chain stream, verification.

The chain is read as raw tuples in seq-keyset chunks (no model instances): a row becomes the
event dict of `audit.services.event_as_dict` with as little Python work as possible. The
timestamp comes out in exactly `format_timestamp`'s shape (millisecond precision, truncated, `Z`)
without a datetime parse and format per row: PostgreSQL formats it in SQL, and SQLite's stored text
is sliced."""

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC

import orjson
from django.db import connection
from django.db.models import QuerySet
from django.utils.dateparse import parse_datetime

from audit.chain import GENESIS_HASH, VerifyResult, finish, link_problem
from audit.checkpoints import (
    chain_of_checkpoints_problem,
    checkpoint_as_dict,
    file_lines,
    file_problem,
    public_keys,
)
from audit.models import AuditChainHead, AuditCheckpoint, AuditEvent
from audit.services import event_as_dict, format_timestamp

CHUNK_SIZE = 5000

_TIMESTAMP_SQL = {
    # Django stores SQLite datetimes as naive UTC text, "YYYY-MM-DD HH:MM:SS[.ffffff]"; CAST skips the
    # driver's datetime converter and _sqlite_timestamp slices the text (cheaper than SQL string ops).
    "sqlite": 'CAST("timestamp" AS TEXT)',
    # to_char's MS truncates to whole milliseconds, as format_timestamp does.
    "postgresql": 'to_char("timestamp" AT TIME ZONE \'UTC\', \'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"\')',
}
_COLUMNS = (
    "id, organization_id, seq, event, actor, actor_type, target_type, target_id, run_id, note, "
    "data, ip, request_id, {timestamp}, prev_hash, hash"
)
_SORT = orjson.OPT_SORT_KEYS


def _sqlite_timestamp(text: str) -> str:
    if len(text) == 26 and text[10] == " ":
        return text[:10] + "T" + text[11:23] + "Z"
    if len(text) == 19 and text[10] == " ":
        return text[:10] + "T" + text[11:19] + ".000Z"
    moment = parse_datetime(text)  # a value Django did not write; format it the reference way
    if moment is None:
        raise ValueError(f"not a timestamp: {text!r}")
    return format_timestamp(moment if moment.tzinfo else moment.replace(tzinfo=UTC))


def audit_events(*, organization) -> QuerySet[AuditEvent]:
    return AuditEvent.objects.filter(organization=organization)


def audit_head(*, organization) -> dict:
    """The head the database recorded: {"seq", "hash"} (seq 0 and the genesis hash before any event)."""
    head = AuditChainHead.objects.filter(organization=organization).values("seq", "hash").first()
    return head or {"seq": 0, "hash": GENESIS_HASH}


@dataclass(frozen=True)
class LogFilters:
    since: object = None  # aware datetimes
    until: object = None
    actor: str | None = None
    event: str | None = None  # exact, or a prefix written "api_key.*"
    target: str | None = None
    target_type: str | None = None


def audit_log_page(
    *, organization, filters: LogFilters, before_seq: int | None, limit: int
) -> list[AuditEvent]:
    """Up to `limit + 1` matching events, newest (highest seq) first, all with seq < before_seq."""
    events = audit_events(organization=organization)
    if filters.since is not None:
        events = events.filter(timestamp__gte=filters.since)
    if filters.until is not None:
        events = events.filter(timestamp__lt=filters.until)
    if filters.actor:
        events = events.filter(actor=filters.actor)
    if filters.event:
        if filters.event.endswith(".*"):
            events = events.filter(event__startswith=filters.event[:-1])
        else:
            events = events.filter(event=filters.event)
    if filters.target:
        events = events.filter(target_id=filters.target)
    if filters.target_type:
        events = events.filter(target_type=filters.target_type)
    if before_seq is not None:
        events = events.filter(seq__lt=before_seq)
    return list(events.order_by("-seq")[: limit + 1])


def _load_data(raw):
    if not isinstance(raw, str | bytes):
        return raw  # a driver that already decoded the JSON
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)  # what JSONField itself would accept (NaN, huge integers)


def _chunk_sql(vendor: str) -> str:
    timestamp = _TIMESTAMP_SQL.get(vendor, '"timestamp"')
    return (
        f"SELECT {_COLUMNS.format(timestamp=timestamp)} FROM {AuditEvent._meta.db_table} "
        "WHERE organization_id = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s"
    )


def timestamp_finisher():
    """What turns a fetched timestamp into event_as_dict's string on this database (None: nothing)."""
    if connection.vendor == "sqlite":
        return _sqlite_timestamp
    return None if connection.vendor in _TIMESTAMP_SQL else format_timestamp


def audit_chain_chunk(
    *, organization, after_seq: int, upto_seq: int, size: int = CHUNK_SIZE, finished: bool = True
) -> list[tuple]:
    """Up to `size` raw rows with after_seq < seq ≤ upto_seq, in seq order.

    With finished=False the timestamp is left as fetched, for a caller that applies
    timestamp_finisher() itself (rebuilding every row tuple costs more than the rest of a fetch)."""
    org_id = getattr(organization, "pk", organization)
    with connection.cursor() as cursor:
        cursor.execute(_chunk_sql(connection.vendor), [org_id, after_seq, upto_seq, size])
        rows = cursor.fetchall()
    finish_timestamp = timestamp_finisher() if finished else None
    if finish_timestamp is not None:
        rows = [(*row[:13], finish_timestamp(row[13]), *row[14:]) for row in rows]
    return rows


def audit_chain_chunks(
    *, organization, upto_seq: int, chunk_size: int = CHUNK_SIZE, finished: bool = True, after_seq: int = 0
) -> Iterator[list[tuple]]:
    """The chain's raw rows with after_seq < seq ≤ upto_seq, in seq order, as keyset chunks."""
    after = after_seq
    while after < upto_seq:
        rows = audit_chain_chunk(
            organization=organization, after_seq=after, upto_seq=upto_seq, size=chunk_size, finished=finished
        )
        if rows:
            yield rows
        if len(rows) < chunk_size:
            return
        after = rows[-1][2]


def audit_chain_rows(*, organization, upto_seq: int, chunk_size: int = CHUNK_SIZE) -> Iterator[tuple]:
    """Raw rows of the chain with seq ≤ upto_seq, in seq order, timestamps finished."""
    for rows in audit_chain_chunks(organization=organization, upto_seq=upto_seq, chunk_size=chunk_size):
        yield from rows


def row_links(rows) -> Iterator[tuple[dict, str, str]]:
    """(body, prev_hash, hash) per raw row, the body exactly as event_as_dict gives it."""
    load = _load_data
    for (id_, org, seq, event, actor, actor_type, target_type, target_id, run_id, note, data, ip,
         request_id, timestamp, prev_hash, hash_) in rows:  # fmt: skip
        yield (
            {
                "id": id_,
                "organization": org,
                "seq": seq,
                "event": event,
                "actor": actor,
                "actor_type": actor_type,
                "target": {"type": target_type, "id": target_id} if target_type else None,
                "run_id": run_id,
                "note": note,
                "data": load(data),
                "ip": ip,
                "request_id": request_id,
                "timestamp": timestamp,
            },
            prev_hash,
            hash_,
        )


def row_events(rows) -> Iterator[dict]:
    """Raw rows as full event dicts (event_as_dict's shape and key order)."""
    for body, prev_hash, hash_ in row_links(rows):
        body["prev_hash"] = prev_hash
        body["hash"] = hash_
        yield body


def audit_chain_verify(*, organization, full: bool = False) -> VerifyResult:
    """Verify the organisation's chain up to the head the database recorded, against its signed checkpoints.

    Always: the checkpoints link up, none in the checkpoint file is missing from the database, the latest
    (`full`: every one) is signed by a configured key, and the chain agrees with every one. Then the walk
    covers what was appended since the last checkpoint it agrees with (`full`: the whole chain), so its cost
    grows with new events. The first bad seq of all these is reported. Appends that commit while this runs
    lie beyond the head read and are left for the next check."""
    org_id = getattr(organization, "pk", organization)
    head = audit_head(organization=organization)
    with_events = _checkpoints_and_events(org_id, with_events=True)
    checkpoints = [checkpoint for checkpoint, _ in with_events]
    problems, agreed = checkpoint_problems(org_id, with_events, head, every_signature=full)
    start_seq, start_hash = (0, GENESIS_HASH) if full or agreed is None else (agreed["seq"], agreed["hash"])
    chunks = audit_chain_chunks(
        organization=org_id, upto_seq=head["seq"], after_seq=start_seq, finished=False
    )
    result = verify_chunks(chunks, organization=org_id, expected_head=head,
                           finish_timestamp=timestamp_finisher(),
                           start=(start_seq, start_hash))  # fmt: skip
    if result.valid:
        result = _check_beyond_head(organization, head, result)
    result.checked -= start_seq
    if result.first_invalid is not None:
        problems.append(result.first_invalid)
    if problems:
        result.valid = False
        result.first_invalid = min(problems, key=lambda problem: problem["seq"] or 0)
    if agreed is not None and result.valid:
        result.checkpoint = {name: agreed[name] for name in ("seq", "hash", "signed_at", "key_id")}
    elif agreed is not None:
        result.checkpoint = _last_before(checkpoints, agreed, result.first_invalid["seq"])
    return result


def _last_before(checkpoints: list[dict], agreed: dict, bad_seq) -> dict | None:
    """The last checkpoint the chain agrees with before its first bad seq."""
    fit = [
        cp for cp in checkpoints if cp["seq"] <= agreed["seq"] and (bad_seq is None or cp["seq"] < bad_seq)
    ]
    if not fit:
        return None
    best = max(fit, key=lambda cp: cp["seq"])
    return {name: best[name] for name in ("seq", "hash", "signed_at", "key_id")}


def audit_checkpoints(*, organization) -> list[dict]:
    """The organisation's checkpoints in the order they were made, as export lines (`checkpoint_as_dict`)."""
    return [checkpoint for checkpoint, _ in _checkpoints_and_events(organization, with_events=False)]


def _checkpoints_and_events(organization, *, with_events: bool) -> list[tuple[dict, tuple | None]]:
    """(checkpoint as an export line, (id, hash) of the event at its seq or None), in the order made: one
    query, raw rows, the time formatted as the chain's timestamps are."""
    org_id = getattr(organization, "pk", organization)
    signed_at = _TIMESTAMP_SQL.get(connection.vendor, '"timestamp"').replace('"timestamp"', 'c."signed_at"')
    columns = f"c.seq, c.hash, {signed_at}, c.previous, c.key_id, c.signature"
    join = ""
    if with_events:
        columns += ", e.id, e.hash"
        join = (f" LEFT JOIN {AuditEvent._meta.db_table} e"
                " ON e.organization_id = c.organization_id AND e.seq = c.seq")  # fmt: skip
    sql = (f"SELECT {columns} FROM {AuditCheckpoint._meta.db_table} c{join} "
           "WHERE c.organization_id = %s ORDER BY c.id")  # fmt: skip
    with connection.cursor() as cursor:
        cursor.execute(sql, [org_id])
        rows = cursor.fetchall()
    finish_timestamp = timestamp_finisher()
    found = []
    for row in rows:
        stamp = finish_timestamp(row[2]) if finish_timestamp is not None else row[2]
        checkpoint = {"type": "checkpoint", "organization": org_id, "seq": row[0], "hash": row[1],
                      "signed_at": stamp, "previous": row[3], "key_id": row[4],
                      "signature": row[5]}  # fmt: skip
        found.append((checkpoint, (row[6], row[7]) if with_events and row[6] is not None else None))
    return found


def audit_last_checkpoint(*, organization) -> dict | None:
    org_id = getattr(organization, "pk", organization)
    row = AuditCheckpoint.objects.filter(organization_id=org_id).order_by("-id").first()
    return checkpoint_as_dict(row) if row is not None else None


def checkpoint_problems(org_id: str, with_events: list[tuple], head: dict, *, every_signature: bool):
    """What is wrong with the checkpoints and the chain's agreement with them: (problems as first_invalid
    dicts, the checkpoint with the highest seq below every problem that the chain agrees with).
    `with_events`: (checkpoint, (id, hash) of the event at its seq or None), in the order made."""
    checkpoints = [checkpoint for checkpoint, _ in with_events]
    problems = []
    problem = chain_of_checkpoints_problem(checkpoints, public_keys(), every_signature=every_signature)
    if problem is not None:
        problems.append(problem)
    problem = file_problem(checkpoints, file_lines(org_id))
    if problem is not None:
        problems.append(problem)
    agreed = None
    for cp, event in sorted(with_events, key=lambda pair: pair[0]["seq"]):
        signed = f"the checkpoint at seq {cp['seq']} signed at {cp['signed_at']}"
        if cp["seq"] > head["seq"]:
            problems.append({"seq": head["seq"] + 1, "id": None, "reason": (
                f"{signed} is past the chain's end at seq {head['seq']}: "
                "events at the end were deleted")})  # fmt: skip
            break
        if event is None:
            problems.append(
                {"seq": cp["seq"], "id": None, "reason": f"{signed} names an event that is missing"}
            )
            break
        if event[1] != cp["hash"]:
            after = agreed["seq"] + 1 if agreed is not None else 1
            problems.append({"seq": cp["seq"], "id": event[0], "reason": (
                f"the event's hash differs from {signed}: an event in seq {after}..{cp['seq']} was edited or "
                "replaced and the chain recomputed after it")})  # fmt: skip
            break
        agreed = cp
    return problems, agreed


def verify_chunks(
    chunks,
    *,
    organization,
    expected_head: dict,
    finish_timestamp=None,
    start: tuple[int, str] = (0, GENESIS_HASH),
) -> VerifyResult:
    """The database verifier's hot loop over chunks of raw rows (see the module docstring).

    A row whose seq, prev_hash and fast-path hash all match is sound. Any other row is re-read as a
    model instance and judged by the reference rule (`event_as_dict`, then orjson or rfc8785), which
    also names what is wrong; the fast path only ever accepts, never rejects."""
    org_id = getattr(organization, "pk", organization)
    sha256, dumps, loads, sort = hashlib.sha256, orjson.dumps, orjson.loads, _SORT
    sqlite = finish_timestamp is _sqlite_timestamp
    (checked, prev_hash), last_id = start, None
    for rows in chunks:
        for row in rows:
            (id_, _org, seq, event, actor, actor_type, target_type, target_id, run_id, note, data, ip,
             request_id, timestamp, link_prev, link_hash) = row  # fmt: skip
            sound = False
            if seq == checked + 1 and link_prev == prev_hash:
                try:
                    if sqlite and len(timestamp) == 26:  # the common case of _sqlite_timestamp, inlined
                        timestamp = timestamp[:10] + "T" + timestamp[11:23] + "Z"
                    elif finish_timestamp is not None:
                        timestamp = finish_timestamp(timestamp)
                    body = {
                        "actor": actor,
                        "actor_type": actor_type,
                        "data": loads(data) if type(data) is str else data,
                        "event": event,
                        "id": id_,
                        "ip": ip,
                        "note": note,
                        "organization": org_id,
                        "request_id": request_id,
                        "run_id": run_id,
                        "seq": seq,
                        "target": {"id": target_id, "type": target_type} if target_type else None,
                        "timestamp": timestamp,
                    }
                    sound = sha256(prev_hash.encode() + dumps(body, option=sort)).hexdigest() == link_hash
                except (
                    orjson.JSONDecodeError,
                    orjson.JSONEncodeError,
                    TypeError,
                    ValueError,
                    AttributeError,
                ):
                    sound = False
            if not sound:
                reason, id_ = _reference_problem(org_id, seq, checked + 1, prev_hash)
                if reason:
                    return VerifyResult(False, checked, {"seq": checked, "hash": prev_hash},
                                        {"seq": seq, "id": id_, "reason": reason})  # fmt: skip
            checked, prev_hash, last_id = seq, link_hash, id_
    return finish(checked, prev_hash, last_id, expected_head)


def _reference_problem(org_id, seq, expected_seq: int, prev_hash: str) -> tuple[str | None, str | None]:
    """Judge one event by the reference path: the model instance through event_as_dict."""
    try:
        instance = AuditEvent.objects.filter(organization_id=org_id, seq=seq).first()
        event = event_as_dict(instance) if instance is not None else None
    except (TypeError, ValueError, AttributeError):  # e.g. a timestamp or data overwritten with garbage
        return "the event's fields cannot be read back: the event was edited", None
    if event is None:  # changed since the chunk was read
        return f"event seq {seq} changed while it was being verified", None
    body = {k: v for k, v in event.items() if k not in ("prev_hash", "hash")}
    reason = link_problem(
        body,
        event["prev_hash"],
        event["hash"],
        expected_seq=expected_seq,
        prev_hash=prev_hash,
        organization=org_id,
    )
    return reason, event["id"]


def _check_beyond_head(organization, head: dict, result: VerifyResult) -> VerifyResult:
    """Events numbered past the recorded head that do not continue it mean the head was rolled back."""
    beyond = audit_events(organization=organization).filter(seq__gt=head["seq"]).order_by("seq")
    first = beyond.values("id", "seq", "prev_hash").first()
    if first is None or (first["seq"] == head["seq"] + 1 and first["prev_hash"] == head["hash"]):
        return result
    reason = "the event lies past the recorded chain head and does not continue it: the head was rolled back"
    return VerifyResult(False, result.checked, result.head, {"seq": first["seq"], "id": first["id"],
                                                                "reason": reason})  # fmt: skip


def export_event_line(body: dict, prev_hash: str, hash_: str) -> bytes:
    """An event's line in an export: its body's canonical bytes (RFC 8785 with orjson's sorted output, as the
    chain's fast path hashes them) without the closing brace, then `prev_hash` and `hash`. A verifier can then
    hash the line's leading bytes as they stand (audit.offline) instead of parsing and re-encoding them."""
    dumps = orjson.dumps
    try:
        canonical = dumps(body, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        canonical = json.dumps(body, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return canonical[:-1] + b',"prev_hash":' + dumps(prev_hash) + b',"hash":' + dumps(hash_) + b"}\n"


def event_line(event: dict) -> bytes:
    """One JSON Lines record of an export (a checkpoint's)."""
    try:
        return orjson.dumps(event) + b"\n"
    except orjson.JSONEncodeError:
        return json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
