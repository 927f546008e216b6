"""Signed checkpoints of organisations' audit chains: keys, signing, the file outside the database, cadence.

A checkpoint signs an organisation's chain head (seq, hash) and the time with the first key of
BATON_AUDIT_SIGNING_KEY, names the checkpoint before it (`chain.checkpoint_digest`), and is stored as a row
and as a line of `<BATON_AUDIT_CHECKPOINT_DIR>/<organisation id>.jsonl`. Someone who rewrites the chain in
the database can no longer make it agree with what was signed, nor delete the checkpoints that disagree
without breaking the links or the file. The append path only counts (`checkpoint_due`); the signing
happens after the append's transaction commits.
"""

import base64
import logging
import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from django.conf import settings
from django.db import transaction

from audit.chain import checkpoint_digest, checkpoint_message, format_timestamp, key_id_of
from audit.models import AuditChainHead, AuditCheckpoint

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SigningKey:
    key_id: str
    private: Ed25519PrivateKey
    public: Ed25519PublicKey
    public_raw: bytes


@cache
def _keys(seeds: tuple[bytes, ...]) -> tuple[SigningKey, ...]:
    keys = []
    for seed in seeds:
        private = Ed25519PrivateKey.from_private_bytes(seed)
        public = private.public_key()
        raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
        keys.append(SigningKey(key_id_of(raw), private, public, raw))
    return tuple(keys)


def signing_keys() -> tuple[SigningKey, ...]:
    """The configured keys, the signing one first."""
    return _keys(tuple(settings.BATON_AUDIT_SIGNING_KEYS))


def public_keys() -> dict[str, Ed25519PublicKey]:
    return {key.key_id: key.public for key in signing_keys()}


def public_keys_document() -> dict:
    """GET /audit/public-keys: every configured key's public half; the first is the one signing."""
    return {
        "keys": [
            {
                "key_id": key.key_id,
                "algorithm": "ed25519",
                "public_key": base64.b64encode(key.public_raw).decode(),
                "active": index == 0,
            }
            for index, key in enumerate(signing_keys())
        ]
    }


def signature_holds(checkpoint: dict, keys: dict[str, Ed25519PublicKey]) -> bool | None:
    """True/False: the signature holds or not under the key it names; None: that key is not among `keys`."""
    key = keys.get(checkpoint.get("key_id"))
    if key is None:
        return None
    try:
        key.verify(base64.b64decode(checkpoint.get("signature") or ""), checkpoint_message(checkpoint))
    except (InvalidSignature, ValueError):
        return False
    return True


def _where(checkpoint: dict) -> str:
    return f"the checkpoint at seq {checkpoint.get('seq')} signed at {checkpoint.get('signed_at')}"


def chain_of_checkpoints_problem(
    checkpoints: list[dict], keys: dict[str, Ed25519PublicKey], *, every_signature: bool
) -> dict | None:
    """The first break in checkpoints listed in the order they were made, as a first_invalid dict: one
    that does not name the one before it (a deletion), or a signature that does not hold. The links make
    the latest signature vouch for every earlier checkpoint; `every_signature` checks each one too."""
    previous = None
    for index, checkpoint in enumerate(checkpoints):
        reason = None
        if checkpoint.get("previous") != previous:
            reason = f"{_where(checkpoint)} does not name the checkpoint before it: checkpoints were deleted"
        elif every_signature or index == len(checkpoints) - 1:
            holds = signature_holds(checkpoint, keys)
            if holds is None:
                reason = (
                    f"{_where(checkpoint)} is signed by key {checkpoint.get('key_id')}, which is not known"
                )
            elif not holds:
                reason = f"{_where(checkpoint)} has a signature that does not hold: it was forged or edited"
        if reason is not None:
            return {"seq": checkpoint.get("seq"), "id": None, "reason": reason}
        previous = checkpoint_digest(checkpoint)
    return None


def file_problem(checkpoints: list[dict], lines: list[bytes]) -> dict | None:
    """A checkpoint of the file outside the database (its raw lines) that the database lacks (rows deleted or
    edited). A line is compared as written first, and by its digest only when the bytes differ."""
    written = {orjson.dumps(checkpoint) for checkpoint in checkpoints}
    stored = None
    for line in lines:
        if line in written:
            continue
        if stored is None:
            stored = {checkpoint_digest(checkpoint) for checkpoint in checkpoints}
        try:
            checkpoint = orjson.loads(line)
        except orjson.JSONDecodeError:
            checkpoint = None
        if not isinstance(checkpoint, dict) or checkpoint.get("type") != "checkpoint":
            return {
                "seq": None,
                "id": None,
                "reason": "the checkpoint file has a line that is not a checkpoint",
            }
        if checkpoint_digest(checkpoint) not in stored:
            return {"seq": checkpoint.get("seq"), "id": None, "reason": (
                f"{_where(checkpoint)} is in the checkpoint file but not in the database: "
                "checkpoint rows were deleted or edited")}  # fmt: skip
    return None


def checkpoint_as_dict(row: AuditCheckpoint) -> dict:
    """A checkpoint's export line (and file line) shape."""
    return {
        "type": "checkpoint",
        "organization": row.organization_id,
        "seq": row.seq,
        "hash": row.hash,
        "signed_at": format_timestamp(row.signed_at),
        "previous": row.previous,
        "key_id": row.key_id,
        "signature": row.signature,
    }


def checkpoint_path(organization_id: str) -> Path:
    return Path(settings.BATON_AUDIT_CHECKPOINT_DIR) / f"{organization_id}.jsonl"


def _append_to_file(line: dict) -> None:
    """One line, written whole with O_APPEND and synced: processes appending at once do not interleave."""
    path = checkpoint_path(line["organization"])
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, orjson.dumps(line) + b"\n")
        os.fsync(fd)
    finally:
        os.close(fd)


def file_lines(organization_id: str) -> list[bytes]:
    """The lines of the organisation's checkpoint file, in the order written ([] without a file)."""
    try:
        data = checkpoint_path(organization_id).read_bytes()
    except FileNotFoundError:
        return []
    return [line for line in data.splitlines() if line.strip()]


def file_checkpoints(organization_id: str) -> list[dict]:
    """The checkpoints in the organisation's file, in the order written."""
    return [orjson.loads(line) for line in file_lines(organization_id)]


def audit_checkpoint_create(*, organization) -> AuditCheckpoint | None:
    """Sign the organisation's chain head, unless its last checkpoint already states it (then that one).

    Holds the head's row lock while it reads, signs and writes, so checkpoints link in order and the head
    signed is the head committed. A head behind the last checkpoint is not signed: that chain was cut, and
    verification reports it. None for an empty chain."""
    org_id = getattr(organization, "pk", organization)
    key = signing_keys()[0]
    with transaction.atomic():
        head = (
            AuditChainHead.objects.select_for_update()
            .filter(organization_id=org_id)
            .values_list("seq", "hash")
            .first()
        )
        if head is None or head[0] == 0:
            return None
        seq, hash_ = head
        last = AuditCheckpoint.objects.filter(organization_id=org_id).order_by("-id").first()
        if last is not None and last.seq >= seq:
            if last.seq > seq or last.hash != hash_:
                logger.warning(
                    "audit chain of %s is behind its checkpoint at seq %s: not signed", org_id, last.seq
                )
            return last
        now = datetime.now(UTC)
        signed_at = now.replace(microsecond=now.microsecond // 1000 * 1000)
        line = {
            "type": "checkpoint",
            "organization": org_id,
            "seq": seq,
            "hash": hash_,
            "signed_at": format_timestamp(signed_at),
            "previous": checkpoint_digest(checkpoint_as_dict(last)) if last is not None else None,
            "key_id": key.key_id,
        }
        line["signature"] = base64.b64encode(key.private.sign(checkpoint_message(line))).decode()
        row = AuditCheckpoint.objects.create(
            organization_id=org_id,
            seq=seq,
            hash=hash_,
            signed_at=signed_at,
            previous=line["previous"],
            key_id=key.key_id,
            signature=line["signature"],
        )
        # Before the commit: a checkpoint the file lacks could be deleted unseen, one the database lacks
        # (a commit that failed after this) is reported, never hidden.
        _append_to_file(line)
    return row


# Per process: when each organisation seen is next due a checkpoint by time.
_DUE: dict[str, float] = {}
_DUE_MAX = 100_000


def checkpoint_due(organization_id: str, seq: int) -> None:
    """Called by every append once its seq is known: cheap arithmetic, and on a due append a checkpoint
    signed after the transaction commits (every BATON_AUDIT_CHECKPOINT_EVENTS events, or on the first
    append BATON_AUDIT_CHECKPOINT_SECONDS after the last checkpoint this process made or saw due)."""
    now = time.monotonic()
    due_at = _DUE.get(organization_id)
    if due_at is None:
        if len(_DUE) < _DUE_MAX:
            _DUE[organization_id] = now + settings.BATON_AUDIT_CHECKPOINT_SECONDS
        if seq % settings.BATON_AUDIT_CHECKPOINT_EVENTS:
            return
    elif seq % settings.BATON_AUDIT_CHECKPOINT_EVENTS and now < due_at:
        return
    _DUE[organization_id] = now + settings.BATON_AUDIT_CHECKPOINT_SECONDS
    transaction.on_commit(lambda: _checkpoint_after_commit(organization_id), robust=True)


def _checkpoint_after_commit(organization_id: str) -> None:
    try:
        audit_checkpoint_create(organization=organization_id)
    except Exception:
        # The change is committed; a missed checkpoint is caught up by the next one, never a failed request.
        logger.exception("audit checkpoint of %s failed", organization_id)
