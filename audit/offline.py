"""Verifying an export (GET /audit/export) without the database: the chain, and its signed checkpoints.

The events are checked by the rule (`chain`), in several processes for a large file: each walks a
contiguous slice of lines, and the slices are stitched where they meet. Checkpoint lines are checked for
their links (none missing between the first and the last), their signatures when public keys are given,
and the chain's agreement with each. The report names the first bad seq and its line.
"""

import base64
import hashlib
import itertools
import json
import mmap
import os
import pickle
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

PARALLEL_FROM_BYTES = 4_000_000  # below this one process is quicker than starting others
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


# The file (bytes, or a read-only mmap of it), shared with forked workers without copying or pickling it.
_BUFFER: bytes | mmap.mmap = b""

# An event line as the export writes it: its body's RFC 8785 bytes without the closing brace, then the link,
#   {"actor":…,"timestamp":"…","prev_hash":"<64 hex>","hash":"<64 hex>"}
_PREV_KEY, _HASH_KEY, _END = b',"prev_hash":"', b'","hash":"', b'"}'
_LINK = len(_PREV_KEY) + 64 + len(_HASH_KEY) + 64 + len(_END)  # the bytes after the body
_AT_PREV, _AT_HASH = _LINK - len(_PREV_KEY), len(_HASH_KEY) + 64 + len(_END)
_SEQ_KEY, _ORG_KEY = b',"seq":', b',"organization":"'
_GIVE_UP_RAW = 64  # lines in a row not in that layout (an older export): stop trying it in this slice


def _walk(span: tuple[int, int, bool, frozenset]) -> dict:
    """Walk the lines of _BUFFER[start:stop] (whole lines): the slice's own links, the hashes at `wanted`
    seqs and of the event before each checkpoint line, and the checkpoint lines (line numbers are the
    slice's own, from 1).

    `raw`: a line in the export's layout whose body bytes, hashed as they stand, give the line's hash is
    taken without parsing it (`raw_max`: the last seq so taken); verify_export trusts those bytes only
    when a signed checkpoint proves them the ones Baton hashed. Any other line is parsed and its body
    canonicalized."""
    start, stop, raw, wanted = span
    lines = _BUFFER[start:stop].split(b"\n")
    loads, dumps, sort, sha256 = orjson.loads, orjson.dumps, _SORT, hashlib.sha256
    first = problem = unreadable = organization = org_key = last = None
    prev, expected, count, raw_max, misses, hashes, checkpoints = None, None, 0, 0, 0, {}, []
    for number, line in enumerate(lines, start=1):
        if not line:
            continue
        if (
            raw
            and line[-_LINK:-_AT_PREV] == _PREV_KEY
            and line[-_AT_HASH:-66] == _HASH_KEY
            and line[-2:] == _END
        ):
            link_prev, link = line[-_AT_PREV:-_AT_HASH], line[-66:-2]
            if sha256(link_prev + line[:-_LINK] + b"}").hexdigest().encode() == link:
                at = line.rfind(_SEQ_KEY, 0, -_LINK)
                digits = line[at + 7 : line.find(b",", at + 7)] if at > 0 else b""
                if digits.isdigit():
                    seq, misses = int(digits), 0
                    if first is None:
                        where = line.rfind(_ORG_KEY, 0, at) + len(_ORG_KEY)
                        organization = line[where : line.find(b'"', where)].decode(errors="replace")
                        org_key = _ORG_KEY + organization.encode() + b'"'
                        first = {"seq": seq, "prev_hash": link_prev.decode(errors="replace"), "id": None,
                                 "line": number, "organization": organization}  # fmt: skip
                        expected, prev = seq, link_prev
                    if (
                        seq != expected
                        or link_prev != prev
                        or not line.startswith(org_key, line.rfind(_ORG_KEY, 0, at))
                    ):
                        problem = {"seq": seq, "id": None, "reason": "not the next link", "line": number}
                        break
                    if seq in wanted:
                        hashes[seq] = (None, link.decode())
                    prev, last, raw_max, expected, count = link, (seq, None), seq, seq + 1, count + 1
                    continue
            misses += 1
            raw = misses < _GIVE_UP_RAW
        if line.lstrip().startswith(b'{"type"'):
            try:
                record = loads(line)
            except orjson.JSONDecodeError:
                unreadable = number
                break
            if type(record) is dict and record.get("type") == "checkpoint":
                if last is not None:
                    hashes[last[0]] = (last[1], prev.decode(errors="replace"))
                checkpoints.append((record, number))
                continue
        try:
            event = loads(line)
        except orjson.JSONDecodeError:
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except ValueError:
                problem = {"seq": expected, "id": None, "reason": "the line is not JSON", "line": number}
                break
        if type(event) is not dict:
            problem = {
                "seq": expected,
                "id": None,
                "reason": "the line is not an event object",
                "line": number,
            }
            break
        if "type" in event and event["type"] == "checkpoint":
            continue
        link_prev, link_hash = event.pop("prev_hash", None), event.pop("hash", None)
        if type(link_prev) is not str:
            link_prev = ""
        seq = event.get("seq")
        if first is None:
            organization = event.get("organization")
            org_key = _ORG_KEY + str(organization).encode() + b'"'
            first = {"seq": seq, "prev_hash": link_prev, "id": event.get("id"), "line": number,
                     "organization": organization}  # fmt: skip
            expected = seq
            prev = link_prev.encode()
            if type(seq) is not int:
                problem = {"seq": seq, "id": event.get("id"), "reason": "seq is not a number", "line": number}
                break
        previous = prev.decode(errors="replace")
        try:
            sound = (seq == expected and link_prev == previous and event.get("organization") == organization
                     and sha256(link_prev.encode() + dumps(event, option=sort)).hexdigest()
                     == link_hash)  # fmt: skip
        except (orjson.JSONEncodeError, TypeError, AttributeError):
            sound = False
        if not sound:
            reason = link_problem(event_body(event), link_prev, link_hash or "", expected_seq=expected,
                                  prev_hash=previous, organization=organization)  # fmt: skip
            if reason:
                problem = {"seq": seq, "id": event.get("id"), "reason": reason, "line": number}
                break
        if seq in wanted:
            hashes[seq] = (event.get("id"), link_hash)
        prev, last, expected, count = link_hash.encode(), (seq, event.get("id")), expected + 1, count + 1
    if last is not None:
        last = {"seq": last[0], "hash": prev.decode(errors="replace"), "id": last[1]}
    return {"first": first, "last": last, "problem": problem, "count": count, "hashes": hashes,
            "checkpoints": checkpoints, "unreadable": unreadable, "raw_max": raw_max,
            "lines": len(lines) - 1}  # fmt: skip


def _fork_map(function, items: list) -> list:
    """`function` over `items`: the first in this process, each other in a child forked now (which shares
    _BUFFER with it) and sends its result back pickled."""
    children = []
    try:
        for item in items[1:]:
            reader, writer = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: compute, send, and leave without running the parent's exit handlers
                code = 1
                try:
                    os.close(reader)
                    try:
                        payload = pickle.dumps((True, function(item)))
                    except Exception as exc:  # handed to the parent, which raises it
                        payload = pickle.dumps((False, f"{type(exc).__name__}: {exc}"))
                    with os.fdopen(writer, "wb") as pipe:
                        pipe.write(payload)
                    code = 0
                finally:
                    os._exit(code)
            os.close(writer)
            children.append((pid, reader))
        results = [function(items[0])]
        for index, (pid, reader) in enumerate(children):
            children[index] = (pid, None)
            with os.fdopen(reader, "rb") as pipe:
                payload = pipe.read()
            if not payload:
                raise RuntimeError("a verifying process died")
            done, value = pickle.loads(payload)  # noqa: S301 - from the child forked above
            if not done:
                raise RuntimeError(f"a verifying process failed: {value}")
            results.append(value)
        return results
    finally:
        for pid, reader in children:
            if reader is not None:  # unread (this process failed): the child's write fails and it exits
                os.close(reader)
            os.waitpid(pid, 0)


def _spans(size: int, processes: int, buffer) -> list[tuple[int, int]]:
    """`processes` byte ranges of whole lines covering the buffer."""
    cuts = [0]
    for part in range(1, processes):
        newline = buffer.find(b"\n", max(size * part // processes, cuts[-1]))
        if newline < 0:
            break
        cuts.append(newline + 1)
    cuts.append(size)
    return [(begin, end) for begin, end in itertools.pairwise(cuts) if end > begin] or [(0, 0)]


def verify_export(
    data: bytes | mmap.mmap,
    *,
    keys: dict[str, Ed25519PublicKey] | None = None,
    expected_head: dict | None = None,
    processes: int | None = None,
) -> ExportReport:
    """Verify an export's bytes. `keys`: public keys by id (None: signatures unchecked).

    With keys, the first pass hashes each event line's body bytes as they stand when the line is in the
    export's layout (the body in RFC 8785 form, then `prev_hash` and `hash`), without parsing or
    re-encoding it. Its verdict stands only when the chain is intact and agrees with a checkpoint at or
    after every line so taken, whose signature holds: the signed hash then proves, link by link back from
    it, that those lines' bytes are the very bytes Baton hashed, which were canonical. Otherwise (no keys,
    events after the last signed checkpoint, anything wrong) every line is parsed and its body
    canonicalized, and that pass's verdict and report are the ones given."""
    global _BUFFER
    size = len(data)
    if processes is None:
        processes = min(os.cpu_count() or 1, 8) if size >= PARALLEL_FROM_BYTES else 1
    spans = _spans(size, max(processes, 1), data)
    _BUFFER = data
    try:
        report = _first_pass(spans, keys, expected_head)
        return report if report is not None else _exact_pass(data, spans, keys, expected_head)
    finally:
        _BUFFER = b""


def _walks(spans, raw: bool, wanted: frozenset) -> list[dict]:
    items = [(begin, end, raw, wanted) for begin, end in spans]
    parts = _fork_map(_walk, items) if len(items) > 1 else [_walk(items[0])]
    offset = 0
    for part in parts:  # the slices' line numbers, as the file's
        for name in ("first", "problem"):
            if part[name] is not None:
                part[name]["line"] += offset
        part["checkpoints"] = [{**record, "line": number + offset} for record, number in part["checkpoints"]]
        offset += part["lines"]
    return parts


def _first_pass(spans, keys, expected_head) -> ExportReport | None:
    """The walk, raw where keys are given; None unless it found everything sound and can vouch for it."""
    parts = _walks(spans, keys is not None, frozenset())
    if any(part["problem"] is not None or part["unreadable"] is not None for part in parts):
        return None
    checkpoints = [record for part in parts for record in part["checkpoints"]]
    holds = {cp["line"]: signature_holds(cp, keys) for cp in checkpoints} if keys is not None else {}
    signed = [cp.get("seq") for cp in checkpoints if holds.get(cp["line"]) is True]
    signed_upto = max((seq for seq in signed if type(seq) is int), default=0)
    if max(part["raw_max"] for part in parts) > signed_upto:
        return None
    result, hashes, organization = _stitch(parts, expected_head)
    for part in parts:  # the event before a checkpoint line that begins the next slice
        if part["last"] is not None:
            hashes[part["last"]["seq"]] = (part["last"]["id"], part["last"]["hash"])
    report = _with_checkpoints(result, hashes, organization, checkpoints, keys, holds)
    return report if report.valid else None


def _exact_pass(data, spans, keys, expected_head) -> ExportReport:
    """Every line parsed and canonicalized; the checkpoints read from every line, as written."""
    checkpoints = []
    for number, line in enumerate(data[:].split(b"\n") if isinstance(data, mmap.mmap) else data.split(b"\n")):
        if line.lstrip().startswith(b'{"type"'):
            try:
                checkpoint = orjson.loads(line)
            except orjson.JSONDecodeError:
                raise ExportUnreadable(f"line {number + 1} is not JSON") from None
            if type(checkpoint) is dict and checkpoint.get("type") == "checkpoint":
                checkpoint["line"] = number + 1
                checkpoints.append(checkpoint)
    wanted = frozenset(cp.get("seq") for cp in checkpoints)
    parts = _walks(spans, False, wanted)
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
    result: VerifyResult, hashes: dict, organization, checkpoints: list[dict], keys, holds: dict | None = None
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
            holding = holds[cp["line"]] if holds is not None else signature_holds(cp, keys)
            if holding is None:
                bad(f"{where} is signed by key {cp.get('key_id')}, which is not among the public keys given")
            elif not holding:
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
