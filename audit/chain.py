"""The audit chain's rule, written once: the hash of a link (in Python and in PostgreSQL's SQL, for the
one-statement append), the canonical pieces the SQL form joins, and the signed checkpoint's message.
Shared by the append, the database verifier and the offline file verifier; imports no Django.

hash = SHA-256(prev_hash ‖ RFC 8785 canonical JSON of the event body), where the body is the event
without `prev_hash` and `hash`. rfc8785 defines the bytes; orjson (sorted keys, compact) produces the
same bytes for almost every event and is ~50× faster, so verification tries it first. A fast-path
match proves the event intact (SHA-256 preimage); a mismatch falls back to rfc8785 before calling the
event invalid, so the fast path can never accept what the rule rejects.
"""

import hashlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson
import rfc8785

GENESIS_HASH = "0" * 64
BODY_FIELDS = (
    "id", "organization", "seq", "event", "actor", "actor_type", "target",
    "run_id", "note", "data", "ip", "request_id", "timestamp",
)  # fmt: skip
_SORT = orjson.OPT_SORT_KEYS
_dumps = orjson.dumps
_sha256 = hashlib.sha256

REASON_SEQ = "expected seq {expected}, found {found}: an event is missing or out of order"
REASON_PREV = "prev_hash does not match the previous event's hash: the chain was reordered or cut"
REASON_HASH = "hash does not match the event's content: the event was edited"
REASON_ORG = "the event belongs to another organisation's chain"


def format_timestamp(moment: datetime) -> str:
    """An event's (and a checkpoint's) time as hashed: UTC, milliseconds truncated, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def event_body(event: dict) -> dict:
    return {name: event.get(name) for name in BODY_FIELDS}


def chain_hash(prev_hash: str, body: dict) -> str:
    """The hash of a link, by the rule's own canonical form (used when appending)."""
    return _sha256(prev_hash.encode() + canonical(body)).hexdigest()


_SAFE_INT = 2**53 - 1  # RFC 8785's integers: those an IEEE 754 double holds exactly


def canonical(value) -> bytes:
    """RFC 8785's canonical JSON of `value`: orjson's bytes (sorted keys, compact) where they are the same by
    construction — strings (of subclasses too), booleans, null, integers RFC 8785 takes, arrays, and objects
    whose keys are all in the Basic Multilingual Plane (RFC 8785 orders keys by UTF-16 code units, orjson by
    code points: the same order there) — else rfc8785's (numbers with a fraction or an exponent, keys beyond
    the plane, any other type, and whatever orjson refuses, such as a lone surrogate: rfc8785 then raises as
    it did). tests/audit/test_chain_rule.py compares the two."""
    if _plain(value):
        try:
            return _dumps(value, option=_SORT)
        except orjson.JSONEncodeError:
            pass
    return rfc8785.dumps(value)


def _plain(value) -> bool:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return True
    if kind is int:
        return -_SAFE_INT <= value <= _SAFE_INT
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str or not (key.isascii() or max(key) < "\U00010000") or not _plain(item):
                return False
        return True
    if kind is list:
        return all(_plain(item) for item in value)
    return isinstance(value, str)  # a subclass (a choices enum's member): both write the string's characters


def link_matches(prev_hash: str, body: dict, expected: str) -> bool:
    prefix = prev_hash.encode()
    try:
        if _sha256(prefix + _dumps(body, option=_SORT)).hexdigest() == expected:
            return True
    except (orjson.JSONEncodeError, TypeError):
        pass
    try:
        return _sha256(prefix + rfc8785.dumps(body)).hexdigest() == expected
    except (rfc8785.CanonicalizationError, TypeError, ValueError, OverflowError):
        return False


# The rule's SQL form, for PostgreSQL's one-statement append (audit.services), where the server knows seq and
# the timestamp only under the head's lock. The body's keys in RFC 8785's order end with `run_id`, `seq`,
# `target`, `timestamp`: the canonical body is
#   <the rest>,"seq":<seq>,"target":<target>,"timestamp":"<timestamp>"}
# The client canonicalizes the rest (`canonical_pieces`); the server joins the pieces and hashes them, in the
# same bytes as `chain_hash` (tests/audit/test_chain_rule.py compares them for every kind of value).
TIMESTAMP_SQL_FORMAT = 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'  # format_timestamp's, of a time truncated to ms
LINK_HASH_SQL = (
    "encode(sha256(convert_to({prev_hash}, 'UTF8') || {prefix}::bytea"
    " || convert_to(({seq})::text, 'UTF8') || {middle}::bytea"
    " || convert_to(to_char({at} AT TIME ZONE 'UTC', '" + TIMESTAMP_SQL_FORMAT + "'), 'UTF8')"
    " || {suffix}::bytea), 'hex')"
)


def link_hash_sql(*, prev_hash: str, seq: str, at: str, pieces: str = "%s") -> str:
    """`chain_hash` as a PostgreSQL expression of SQL expressions for the previous hash, seq and the
    timestamp (a timestamptz truncated to milliseconds), and placeholders for `canonical_pieces`' three."""
    return LINK_HASH_SQL.format(
        prev_hash=prev_hash, seq=seq, at=at, prefix=pieces, middle=pieces, suffix=pieces
    )


def canonical_pieces(body: dict) -> tuple[bytes, bytes, bytes]:
    """The canonical body around seq and the timestamp: (before seq, between them, after the timestamp).
    `body` is the event body; its seq and timestamp are ignored."""
    rest = {name: body.get(name) for name in BODY_FIELDS if name not in ("seq", "target", "timestamp")}
    return (
        canonical(rest)[:-1] + b',"seq":',
        b',"target":' + canonical(body.get("target")) + b',"timestamp":"',
        b'"}',
    )


# A signed checkpoint states "the chain of `organization` had head (`seq`, `hash`) at `signed_at`", and names
# the checkpoint before it by digest, so a deleted checkpoint breaks the next one's link. Ed25519 signs
# CHECKPOINT_DOMAIN + RFC 8785 of these fields: ASCII strings, integers and null, whose RFC 8785 form is
# JSON with sorted keys and no whitespace (orjson's, or json.dumps(sort_keys=True, separators=(",", ":"))).
CHECKPOINT_DOMAIN = b"baton.audit.checkpoint.v1\n"
CHECKPOINT_FIELDS = ("organization", "seq", "hash", "signed_at", "previous")


def checkpoint_message(checkpoint: dict) -> bytes:
    """The bytes a checkpoint's signature covers."""
    return CHECKPOINT_DOMAIN + _dumps(
        {name: checkpoint.get(name) for name in CHECKPOINT_FIELDS}, option=_SORT
    )


def checkpoint_digest(checkpoint: dict) -> str:
    """How the next checkpoint names this one."""
    return _sha256(checkpoint_message(checkpoint)).hexdigest()


def key_id_of(public_key_raw: bytes) -> str:
    """A public key's id: the first 16 hex digits of SHA-256 of its 32 raw bytes."""
    return _sha256(public_key_raw).hexdigest()[:16]


@dataclass
class VerifyResult:
    valid: bool
    checked: int
    head: dict
    first_invalid: dict | None
    checkpoint: dict | None = None

    def as_dict(self) -> dict:
        return {
            "valid": self.valid,
            "checked": self.checked,
            "head": self.head,
            "first_invalid": self.first_invalid,
            "checkpoint": self.checkpoint,
        }


def link_problem(
    body: dict, link_prev: str, link_hash: str, *, expected_seq: int, prev_hash: str, organization: str | None
) -> str | None:
    """Why this link does not continue the chain at (expected_seq, prev_hash), or None when it does."""
    seq = body.get("seq")
    if seq != expected_seq:
        return REASON_SEQ.format(expected=expected_seq, found=seq)
    if link_prev != prev_hash:
        return REASON_PREV
    if organization is not None and body.get("organization") != organization:
        return REASON_ORG
    if not link_matches(prev_hash, body, link_hash or ""):
        return REASON_HASH
    return None


def verify_links(
    links: Iterable[tuple[dict, str, str]],
    *,
    expected_head: dict | None = None,
    start: tuple[int, str, str | None] = (0, GENESIS_HASH, None),
) -> VerifyResult:
    """Walk (body, prev_hash, hash) links in seq order; the body carries `seq`, `id` and `organization`.

    Names the first event whose seq breaks the sequence (a deletion), whose prev_hash does not point
    at the previous link (a reorder or deletion), whose hash does not match its content (an edit), or
    that belongs to another organisation. `expected_head` ({"seq", "hash"}), the head the database
    recorded or one noted elsewhere, catches a truncated or replaced tail. `start` (seq, hash, id of
    the last link already verified) continues a walk another verifier began."""
    checked, prev_hash, last_id = start
    organization = None
    for body, link_prev, link_hash in links:
        reason = link_problem(body, link_prev, link_hash, expected_seq=checked + 1, prev_hash=prev_hash,
                              organization=organization)  # fmt: skip
        if reason:
            first_invalid = {"seq": body.get("seq"), "id": body.get("id"), "reason": reason}
            return VerifyResult(False, checked, _head(checked, prev_hash), first_invalid)
        if organization is None:
            organization = body.get("organization")
        last_id = body.get("id")
        prev_hash = link_hash
        checked += 1
    return finish(checked, prev_hash, last_id, expected_head)


def finish(checked: int, last_hash: str, last_id: str | None, expected_head: dict | None) -> VerifyResult:
    """The result of a walk that found every link sound, compared with the head expected."""
    if expected_head is not None:
        head_seq = expected_head.get("seq", 0)
        head_hash = expected_head.get("hash")
        if head_seq > checked:
            reason = (f"the chain head is at seq {head_seq} but only {checked} events were found: "
                      "events at the end were deleted")  # fmt: skip
            return VerifyResult(False, checked, _head(checked, last_hash), {"seq": checked + 1, "id": None,
                                                                           "reason": reason})  # fmt: skip
        if head_seq != checked or (head_hash is not None and head_hash != last_hash):
            reason = (f"the chain head (seq {head_seq}) does not match the last event (seq {checked}): "
                      "the end of the chain was replaced")  # fmt: skip
            return VerifyResult(False, checked, _head(checked, last_hash), {"seq": checked, "id": last_id,
                                                                           "reason": reason})  # fmt: skip
    return VerifyResult(True, checked, _head(checked, last_hash), None)


def verify_chain(events: Iterable[dict], *, expected_head: dict | None = None) -> VerifyResult:
    """Verify events shaped as `audit.services.event_as_dict` gives them (body, `prev_hash`, `hash`)."""
    return verify_links(
        ((event_body(event), event.get("prev_hash"), event.get("hash")) for event in events),
        expected_head=expected_head,
    )


def _head(seq: int, hash_: str) -> dict:
    """The last link verified: seq 0 and the genesis hash for an empty chain."""
    return {"seq": seq, "hash": hash_}


def iter_jsonl(lines: Iterable[bytes | str]) -> Iterator[dict]:
    for line in lines:
        if line.strip():
            yield orjson.loads(line)
