#!/usr/bin/env python3
"""Verify a Baton audit export without Baton: needs Python 3.10+, and `cryptography` to check signatures.

    python audit_verify.py audit-org_x-1234.jsonl --public-key f5WmDHP8ZG4U...=
    python audit_verify.py chain.jsonl --public-key keys.json     # GET /api/v1/audit/public-keys saved
    python audit_verify.py chain.jsonl                            # the chain only; signatures unchecked

Exits 0 when the chain is intact and agrees with every signed checkpoint (and, given keys, every
signature holds), 1 otherwise, naming the first bad seq and its line. The rules are in docs/audit.md:

    hash       = hex(SHA-256(prev_hash ASCII || RFC 8785(event without prev_hash and hash)))
    checkpoint = Ed25519 over b"baton.audit.checkpoint.v1\\n" || RFC 8785({organization, seq, hash,
                 signed_at, previous}); previous = hex(SHA-256(the message of the checkpoint before))
"""

import argparse
import base64
import hashlib
import json
import math
import sys
from pathlib import Path

GENESIS_HASH = "0" * 64
BODY_FIELDS = (
    "id",
    "organization",
    "seq",
    "event",
    "actor",
    "actor_type",
    "target",
    "run_id",
    "note",
    "data",
    "ip",
    "request_id",
    "timestamp",
)
CHECKPOINT_DOMAIN = b"baton.audit.checkpoint.v1\n"
CHECKPOINT_FIELDS = ("organization", "seq", "hash", "signed_at", "previous")


# RFC 8785, the JSON Canonicalization Scheme: keys sorted by UTF-16 code units, no whitespace, ECMAScript
# numbers.
def canonical(value) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, int):
        if abs(value) > 2**53 - 1:
            raise ValueError(f"integer out of RFC 8785's range: {value}")
        return str(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, list):
        return "[" + ",".join(canonical(item) for item in value) + "]"
    if isinstance(value, dict):
        keys = sorted(value, key=lambda key: key.encode("utf-16-be"))
        items = (json.dumps(key, ensure_ascii=False) + ":" + canonical(value[key]) for key in keys)
        return "{" + ",".join(items) + "}"
    raise ValueError(f"not JSON: {value!r}")


def _number(value: float) -> str:
    """ECMAScript's Number.prototype.toString of a finite double."""
    if not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON")
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + int(exponent or 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    k, n = len(digits), point
    if k <= n <= 21:
        return sign + digits + "0" * (n - k)
    if 0 < n <= 21:
        return sign + digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return sign + "0." + "0" * -n + digits
    e = n - 1
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{sign}{head}e{'+' if e > 0 else '-'}{abs(e)}"


def link_hash(prev_hash: str, event: dict) -> str:
    body = {name: event.get(name) for name in BODY_FIELDS}
    return hashlib.sha256(prev_hash.encode() + canonical(body).encode()).hexdigest()


def checkpoint_message(checkpoint: dict) -> bytes:
    return CHECKPOINT_DOMAIN + canonical({name: checkpoint.get(name) for name in CHECKPOINT_FIELDS}).encode()


def key_id_of(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:16]


def load_keys(values: list[str]) -> dict:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    keys = {}
    for value in values:
        text = Path(value).read_text() if Path(value).is_file() else value
        if text.lstrip().startswith("{"):
            entries = [key["public_key"] for key in json.loads(text)["keys"]]
        else:
            entries = [entry.strip() for entry in text.replace("\n", ",").split(",") if entry.strip()]
        for entry in entries:
            raw = base64.b64decode(entry, validate=True)
            keys[key_id_of(raw)] = Ed25519PublicKey.from_public_bytes(raw)
    return keys


class Invalid(Exception):
    def __init__(self, seq, line, reason):
        super().__init__(f"seq {seq} on line {line}: {reason}")
        self.seq = seq


def verify(lines: list[bytes], keys: dict | None, head_seq=None, head_hash=None) -> tuple[int, str, list]:
    """(events checked, last hash, checkpoints) of an intact export; raises Invalid at the first bad seq."""
    events, checkpoints = [], []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError:
            raise Invalid(None, number, "the line is not JSON") from None
        if not isinstance(record, dict):
            raise Invalid(None, number, "the line is not an event object")
        (checkpoints if record.get("type") == "checkpoint" else events).append((number, record))
    problems = []
    seq, prev_hash, organization, hashes = 0, GENESIS_HASH, None, {}
    for number, event in events:
        organization = organization or event.get("organization")
        if event.get("seq") != seq + 1:
            problems.append(
                Invalid(
                    event.get("seq"), number, f"expected seq {seq + 1}: an event is missing or out of order"
                )
            )
        elif event.get("prev_hash") != prev_hash:
            problems.append(Invalid(seq + 1, number, "prev_hash is not the previous event's hash: reordered"))
        elif event.get("organization") != organization:
            problems.append(Invalid(seq + 1, number, "the event belongs to another organisation's chain"))
        else:
            try:
                intact = link_hash(prev_hash, event) == event.get("hash")
            except ValueError:
                intact = False
            if not intact:
                problems.append(Invalid(seq + 1, number, "the hash does not match: the event was edited"))
        if problems:
            break
        seq, prev_hash = seq + 1, event["hash"]
        hashes[seq] = event["hash"]
    if not problems and head_seq is not None and (head_seq != seq or (head_hash and head_hash != prev_hash)):
        problems.append(
            Invalid(
                min(seq + 1, head_seq),
                "-",
                f"the chain ends at seq {seq}, not at the head given ({head_seq})",
            )
        )
    digests = {hashlib.sha256(checkpoint_message(cp)).hexdigest() for _, cp in checkpoints}
    firsts = 0
    for number, cp in checkpoints:
        where = f"the checkpoint at seq {cp.get('seq')} signed at {cp.get('signed_at')}"
        at = cp.get("seq")
        if cp.get("organization") != organization:
            problems.append(Invalid(at, number, f"{where} belongs to another organisation"))
        if cp.get("previous") is None:
            firsts += 1
            if firsts > 1:
                problems.append(Invalid(at, number, f"{where} claims to be the first, as another does"))
        elif cp["previous"] not in digests:
            problems.append(Invalid(at, number, f"{where} names a checkpoint before it that the file lacks"))
        if keys is not None:
            key = keys.get(cp.get("key_id"))
            if key is None:
                problems.append(Invalid(at, number, f"{where} is signed by key {cp.get('key_id')}: unknown"))
            else:
                try:
                    key.verify(base64.b64decode(cp.get("signature") or ""), checkpoint_message(cp))
                except Exception:  # InvalidSignature, or a signature that is not base64
                    problems.append(Invalid(at, number, f"{where} has a signature that does not hold"))
        if isinstance(at, int) and at > seq and not problems:
            problems.append(
                Invalid(
                    seq + 1,
                    number,
                    f"{where} is past the chain's end at seq {seq}: events at the end were removed",
                )
            )
        elif at in hashes and hashes[at] != cp.get("hash"):
            problems.append(
                Invalid(
                    at,
                    number,
                    f"the event's hash differs from {where}: an event at or before it "
                    "was edited and the chain recomputed after it",
                )
            )
    if problems:
        raise min(problems, key=lambda problem: problem.seq or 0)
    return seq, prev_hash, [cp for _, cp in checkpoints]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description="Verify a Baton audit export (JSON Lines) offline.")
    parser.add_argument("file", help="the export ('-' for standard input)")
    parser.add_argument(
        "--public-key", action="append", default=[], help="base64 Ed25519 public key or a file"
    )
    parser.add_argument("--head-seq", type=int, help="require the chain to end at this seq")
    parser.add_argument("--head-hash", help="and at this hash")
    args = parser.parse_args(argv)
    data = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    keys = load_keys(args.public_key) if args.public_key else None
    try:
        checked, last_hash, checkpoints = verify(data.split(b"\n"), keys, args.head_seq, args.head_hash)
    except Invalid as problem:
        print(f"INVALID: {problem}", file=sys.stderr)
        return 1
    print(f"OK: checked {checked} events; head seq {checked} hash {last_hash}")
    state = "signatures verified" if keys is not None else "signatures UNCHECKED (give --public-key)"
    print(f"{len(checkpoints)} checkpoints: the chain agrees with each, {state}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
