"""Verifying an export (GET /audit/export) without the database: the chain, and its signed checkpoints.

The events are checked by the rule (`chain`), in several processes for a large file: each walks a
contiguous slice of lines, and the slices are stitched where they meet. Checkpoint lines are checked for
their links (none missing between the first and the last), their signatures when public keys are given,
and the chain's agreement with each. The report names the first bad seq and its line.
"""

import base64
import hashlib
import json
import multiprocessing
import os
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from audit.chain import (
    GENESIS_HASH,
    REASON_ORG,
    REASON_PREV,
    REASON_SEQ,
    VerifyResult,
    checkpoint_digest,
    event_body,
    finish,
    key_id_of,
    link_problem,
)
from audit.checkpoints import signature_holds

PARALLEL_FROM = 20_000  # lines: below this one process is quicker than starting others
_SORT = orjson.OPT_SORT_KEYS


class ExportUnreadable(ValueError):
    pass


@dataclass
class ExportReport:
    result: VerifyResult
    checkpoints: list[dict] = field(default_factory=list)
    signatures: str = "unchecked"  # "verified" | "unchecked" (no key given) | "none" (no checkpoint)

    @property
    def valid(self) -> bool:
        return self.result.valid


def load_public_keys(values: list[str]) -> dict[str, Ed25519PublicKey]:
    """Keys from base64 raw public keys, comma-separated lists of them, or files holding either or the JSON
    of GET /audit/public-keys; by key id."""
    keys = {}
    for value in values:
        path = Path(value)
        text = path.read_text() if len(value) < 4096 and path.is_file() else value
        if text.lstrip().startswith("{"):
            entries = [entry["public_key"] for entry in json.loads(text).get("keys", [])]
        else:
            entries = [entry.strip() for entry in text.replace("\n", ",").split(",") if entry.strip()]
        for entry in entries:
            try:
                raw = base64.b64decode(entry, validate=True)
                keys[key_id_of(raw)] = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise ExportUnreadable(f"not an Ed25519 public key (32 bytes, base64): {entry!r}") from None
    return keys


# The file's lines, shared with forked workers without pickling them.
_LINES: list[bytes] = []


def _walk(span: tuple[int, int, frozenset]) -> dict:
    """Walk lines[start:stop] (event lines only): the slice's own links, and hashes at checkpoint seqs."""
    start, stop, wanted = span
    loads, dumps, sort, sha256, lines = orjson.loads, orjson.dumps, _SORT, hashlib.sha256, _LINES
    first = problem = organization = last = None
    prev_hash, expected, count, hashes = None, None, 0, {}
    for number in range(start, stop):
        line = lines[number]
        if not line:
            continue
        try:
            event = loads(line)
        except orjson.JSONDecodeError:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                problem = {"seq": expected, "id": None, "reason": "the line is not JSON", "line": number + 1}
                break
        if type(event) is not dict:
            problem = {
                "seq": expected,
                "id": None,
                "reason": "the line is not an event object",
                "line": number + 1,
            }
            break
        if "type" in event and event["type"] == "checkpoint":
            continue
        link_prev, link_hash = event.pop("prev_hash", None), event.pop("hash", None)
        seq = event.get("seq")
        if first is None:
            organization = event.get("organization")
            first = {"seq": seq, "prev_hash": link_prev, "id": event.get("id"), "line": number + 1,
                     "organization": organization}  # fmt: skip
            expected, prev_hash = seq, link_prev
        try:
            sound = (seq == expected and link_prev == prev_hash and event.get("organization") == organization
                     and sha256(link_prev.encode() + dumps(event, option=sort)).hexdigest()
                     == link_hash)  # fmt: skip
        except (orjson.JSONEncodeError, TypeError, AttributeError):
            sound = False
        if not sound:
            reason = link_problem(event_body(event), link_prev, link_hash or "", expected_seq=expected,
                                  prev_hash=prev_hash, organization=organization)  # fmt: skip
            if reason:
                problem = {"seq": seq, "id": event.get("id"), "reason": reason, "line": number + 1}
                break
        if seq in wanted:
            hashes[seq] = (event.get("id"), link_hash)
        last = event
        prev_hash, expected, count = link_hash, expected + 1, count + 1
    if last is not None:
        last = {"seq": last.get("seq"), "hash": prev_hash, "id": last.get("id")}
    return {"first": first, "last": last, "problem": problem, "count": count, "hashes": hashes}


def verify_export(
    data: bytes,
    *,
    keys: dict[str, Ed25519PublicKey] | None = None,
    expected_head: dict | None = None,
    processes: int | None = None,
) -> ExportReport:
    """Verify an export's bytes. `keys`: public keys by id (None: signatures unchecked)."""
    global _LINES
    lines = data.split(b"\n")
    checkpoints = []
    for number, line in enumerate(lines):
        if line.lstrip().startswith(b'{"type"'):
            try:
                checkpoint = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ExportUnreadable(f"line {number + 1} is not JSON") from None
            if checkpoint.get("type") == "checkpoint":
                checkpoint["line"] = number + 1
                checkpoints.append(checkpoint)
    wanted = frozenset(cp.get("seq") for cp in checkpoints)
    if processes is None:
        processes = min(os.cpu_count() or 1, 8) if len(lines) >= PARALLEL_FROM else 1
    step = -(-len(lines) // max(processes, 1)) or 1
    spans = [(start, min(start + step, len(lines)), wanted) for start in range(0, len(lines), step)]
    _LINES = lines
    try:
        if processes > 1 and len(spans) > 1:
            with multiprocessing.get_context("fork").Pool(len(spans)) as pool:
                parts = pool.map(_walk, spans)
        else:
            parts = [_walk(span) for span in spans]
    finally:
        _LINES = []
    result, hashes, organization = _stitch(parts, expected_head)
    return _with_checkpoints(result, hashes, organization, checkpoints, keys)


def _stitch(parts: list[dict], expected_head: dict | None) -> tuple[VerifyResult, dict, str | None]:
    """Join the slices' walks: each slice must continue the one before it."""
    checked, prev_hash, last_id, organization, hashes = 0, GENESIS_HASH, None, None, {}
    for part in parts:
        first = part["first"]
        if first is not None:
            reason = None
            if first["seq"] != checked + 1:
                reason = REASON_SEQ.format(expected=checked + 1, found=first["seq"])
            elif first["prev_hash"] != prev_hash:
                reason = REASON_PREV
            elif organization is not None and first["organization"] != organization:
                reason = REASON_ORG
            if reason:
                bad = {"seq": first["seq"], "id": first["id"], "reason": reason, "line": first["line"]}
                return (
                    VerifyResult(False, checked, {"seq": checked, "hash": prev_hash}, bad),
                    hashes,
                    organization,
                )
            organization = organization or first["organization"]
        hashes.update(part["hashes"])
        if part["problem"] is not None:
            checked += part["count"]
            last = part["last"]
            head = {"seq": last["seq"], "hash": last["hash"]} if last else {"seq": checked, "hash": prev_hash}
            return VerifyResult(False, checked, head, part["problem"]), hashes, organization
        if part["last"] is not None:
            checked, prev_hash, last_id = part["last"]["seq"], part["last"]["hash"], part["last"]["id"]
    return finish(checked, prev_hash, last_id, expected_head), hashes, organization


def _with_checkpoints(
    result: VerifyResult, hashes: dict, organization, checkpoints: list[dict], keys
) -> ExportReport:
    """Add the checkpoints' findings; the first bad seq of all is reported."""
    report = ExportReport(
        result, checkpoints, "none" if not checkpoints else "unchecked" if keys is None else "verified"
    )
    if not checkpoints:
        return report
    problems = []
    organization = organization or checkpoints[0].get("organization")
    digests = {checkpoint_digest(cp) for cp in checkpoints}
    firsts = 0
    head_seq = result.head["seq"] if result.valid else None
    for cp in sorted(checkpoints, key=lambda cp: cp.get("seq") or 0):
        where = f"the checkpoint at seq {cp.get('seq')} signed at {cp.get('signed_at')} (line {cp['line']})"
        seq = cp.get("seq")

        def bad(reason, at=seq, id_=None, cp=cp):
            problems.append({"seq": at, "id": id_, "reason": reason, "line": cp["line"]})

        if cp.get("organization") != organization:
            bad(f"{where} belongs to another organisation")
            continue
        if cp.get("previous") is None:
            firsts += 1
            if firsts > 1:
                bad(f"{where} claims to be the first checkpoint, as another does")
        elif cp["previous"] not in digests:
            bad(f"{where} names a checkpoint before it that the file lacks: checkpoints were removed")
        if keys is not None:
            holds = signature_holds(cp, keys)
            if holds is None:
                bad(f"{where} is signed by key {cp.get('key_id')}, which is not among the public keys given")
            elif not holds:
                bad(f"{where} has a signature that does not hold: it was forged or edited")
        if head_seq is not None and isinstance(seq, int) and seq > head_seq:
            bad(
                f"{where} is past the chain's end at seq {head_seq}: events at the end were removed",
                head_seq + 1,
            )
            continue
        event = hashes.get(seq)
        if event is None and result.valid:
            bad(f"{where} names an event the file lacks")
        elif event is not None and event[1] != cp.get("hash"):
            bad(f"the event's hash differs from {where}: an event at or before seq {seq} was edited or "
                "replaced and the chain recomputed after it", seq, event[0])  # fmt: skip
    if problems:
        first = min(problems, key=lambda problem: problem["seq"] or 0)
        if result.valid or (first["seq"] or 0) < (result.first_invalid["seq"] or 0):
            result.valid = False
            result.first_invalid = first
    verified = [cp for cp in checkpoints if not any(p["line"] == cp["line"] for p in problems)]
    if verified and result.valid:
        latest = max(verified, key=lambda cp: cp.get("seq") or 0)
        result.checkpoint = {name: latest.get(name) for name in ("seq", "hash", "signed_at", "key_id")}
    return report
