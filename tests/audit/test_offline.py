"""The export verifier splits a file among processes and stitches the slices: its verdicts must be the ones
one process gives, wherever the damage falls relative to the slices' boundaries."""

import base64
import hashlib

import orjson
import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from audit.chain import GENESIS_HASH, chain_hash, checkpoint_digest, checkpoint_message, key_id_of
from audit.offline import verify_export
from audit.selectors import event_line, export_event_line

COUNT = 40


def _lines() -> list[bytes]:
    prev, lines = GENESIS_HASH, []
    for seq in range(1, COUNT + 1):
        body = {"id": f"evt_{seq}", "organization": "org_1", "seq": seq, "event": "x.y", "actor": "system",
                "actor_type": "system", "target": None, "run_id": None, "note": None, "data": {"n": seq},
                "ip": None, "request_id": None, "timestamp": "2026-12-06T00:00:00.000Z"}  # fmt: skip
        link = chain_hash(prev, body)
        lines.append(orjson.dumps({**body, "prev_hash": prev, "hash": link}))
        prev = link
    return lines


def _edit(lines, index):
    event = orjson.loads(lines[index])
    event["data"] = {"n": -1}
    lines[index] = orjson.dumps(event)


@pytest.mark.parametrize("processes", [1, 2, 3, 4])
@pytest.mark.parametrize("bad_index", [None, 0, 9, 10, 19, 20, 21, 39])  # 40 lines: slices meet at 10, 13, 20
def test_slices_give_one_processs_verdict(processes, bad_index):
    lines = _lines()
    if bad_index is not None:
        _edit(lines, bad_index)
    data = b"\n".join(lines) + b"\n"
    result = verify_export(data, processes=processes).result
    expected = verify_export(data, processes=1).result
    assert result.as_dict() == expected.as_dict()
    if bad_index is None:
        assert result.valid and result.checked == COUNT
    else:
        assert not result.valid and result.first_invalid["seq"] == bad_index + 1
        assert result.first_invalid["line"] == bad_index + 1


@pytest.mark.parametrize("processes", [1, 2, 4])
@pytest.mark.parametrize("cut", [10, 11, 20, 21])
def test_a_missing_line_at_a_boundary_is_named(processes, cut):
    lines = _lines()
    del lines[cut]
    result = verify_export(b"\n".join(lines) + b"\n", processes=processes).result
    assert not result.valid
    assert result.first_invalid["seq"] == cut + 2 and "expected seq" in result.first_invalid["reason"]


# An export in today's layout (the body's RFC 8785 bytes, then prev_hash and hash), signed at seq 20 and 40 by
# a key of the test's own. The verifier hashes such lines' bytes as they stand only where a checkpoint whose
# signature holds vouches for them; these tests forge lines whose bytes hash to their stated hash (the chain
# recomputed after them over those bytes) but are not the canonical form, and check that each is caught.
_SIGNER = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
_PUBLIC = _SIGNER.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
KEYS = {key_id_of(_PUBLIC): _SIGNER.public_key()}


def _body(seq: int, data=None) -> dict:
    return {"id": f"evt_{seq}", "organization": "org_1", "seq": seq, "event": "x.y", "actor": "system",
            "actor_type": "system", "target": None, "run_id": None, "note": None,
            "data": {"n": seq} if data is None else data, "ip": None, "request_id": None,
            "timestamp": "2026-12-06T00:00:00.000Z"}  # fmt: skip


def _raw_line(prev: str, body_bytes: bytes) -> tuple[bytes, str]:
    """A line in the export's layout over these body bytes, hashed as they stand."""
    link = hashlib.sha256(prev.encode() + body_bytes).hexdigest()
    return body_bytes[:-1] + f',"prev_hash":"{prev}","hash":"{link}"}}'.encode(), link


def _checkpoint(seq: int, link: str, previous) -> dict:
    checkpoint = {"type": "checkpoint", "organization": "org_1", "seq": seq, "hash": link,
                  "signed_at": "2026-12-06T00:00:01.000Z", "previous": previous,
                  "key_id": key_id_of(_PUBLIC)}  # fmt: skip
    checkpoint["signature"] = base64.b64encode(_SIGNER.sign(checkpoint_message(checkpoint))).decode()
    return checkpoint


def _signed_export(forge_at=None, forged_body=None, signed=(20, 40)) -> bytes:
    """COUNT events with signed checkpoint lines after `signed`. From seq `forge_at` on, the chain is then
    recomputed over the bytes `forged_body(seq)` gives for that seq (the canonical bytes for the others),
    as someone without the signing key would: the checkpoint lines stay as signed."""
    prev, forged, lines, previous = GENESIS_HASH, GENESIS_HASH, [], None
    for seq in range(1, COUNT + 1):
        link = chain_hash(prev, _body(seq))
        line = export_event_line(_body(seq), prev, link).rstrip(b"\n")
        if forge_at is not None and seq >= forge_at:
            line, forged = _raw_line(
                forged, forged_body(seq) if seq == forge_at else rfc8785.dumps(_body(seq))
            )
        else:
            forged = link
        lines.append(line)
        prev = link
        if seq in signed:
            checkpoint = _checkpoint(seq, link, previous)
            previous = checkpoint_digest(checkpoint)
            lines.append(event_line(checkpoint).rstrip(b"\n"))
    return b"\n".join(lines) + b"\n"


def _duplicate_key(seq: int) -> bytes:  # parsers keep the last "data": {"n": -1}; the hash covers both
    return rfc8785.dumps(_body(seq)).replace(b'"data":', b'"data":{"n":-1},"data":', 1)


def _spaced(seq: int) -> bytes:  # the same event, not in canonical form
    return rfc8785.dumps(_body(seq)).replace(b'"data":{', b'"data": {', 1)


@pytest.mark.parametrize("processes", [1, 2, 3])
def test_a_signed_export_in_the_layout_verifies_and_an_edit_is_caught_wherever_it_falls(processes):
    data = _signed_export()
    report = verify_export(data, keys=KEYS, processes=processes)
    assert report.valid and report.result.checked == COUNT and report.signatures == "verified"
    assert report.result.checkpoint["seq"] == 40
    lines = data.split(b"\n")
    for index in (0, 13, 19, 21, 40):  # event lines: seq 1, 14, 20, 22 (after the first checkpoint line), 40
        edited = list(lines)
        edited[index] = edited[index].replace(b'"data":{"n":', b'"data":{"n":9', 1)
        result = verify_export(b"\n".join(edited), keys=KEYS, processes=processes).result
        seq = orjson.loads(lines[index])["seq"]
        assert not result.valid and result.first_invalid["seq"] == seq
        assert result.first_invalid["line"] == index + 1 and "was edited" in result.first_invalid["reason"]


@pytest.mark.parametrize("processes", [1, 2])
@pytest.mark.parametrize("forge", [_duplicate_key, _spaced])
def test_bytes_that_hash_right_but_are_not_canonical_are_caught(processes, forge):
    # Before the last signed checkpoint: its hash no longer agrees (the chain was recomputed).
    result = verify_export(_signed_export(12, forge), keys=KEYS, processes=processes).result
    assert not result.valid and result.first_invalid["seq"] == 12
    # After it (no checkpoint vouches for those lines), and without keys: the rule itself rejects them.
    unsigned_tail = _signed_export(33, forge, signed=(20,))
    for keys in (KEYS, None):
        result = verify_export(unsigned_tail, keys=keys, processes=processes).result
        assert not result.valid and result.first_invalid["seq"] == 33
        assert "was edited" in result.first_invalid["reason"]


@pytest.mark.parametrize("processes", [1, 2])
def test_lines_in_another_layout_are_parsed_and_still_verify(processes):
    lines = _signed_export().split(b"\n")
    lines[5] = orjson.dumps(orjson.loads(lines[5]), option=orjson.OPT_INDENT_2).replace(b"\n", b"")
    lines[6] = b"  " + orjson.dumps({**_body(6), **{k: v for k, v in orjson.loads(lines[6]).items()}})
    report = verify_export(b"\n".join(lines), keys=KEYS, processes=processes)
    assert report.valid and report.result.checked == COUNT


def _work(item):
    if item == "raise here":
        raise ValueError("the parent's slice failed")
    return "x" * 1_000_000  # more than a pipe holds: the child blocks until it is read, or the pipe closes


@pytest.mark.timeout(60)
def test_a_failing_slice_neither_hangs_nor_hides_the_failure():
    from audit.offline import _fork_map

    assert _fork_map(_work, ["a", "b", "c"]) == ["x" * 1_000_000] * 3
    with pytest.raises(ValueError, match="parent's slice"):
        _fork_map(_work, ["raise here", "b"])  # the child's big answer is never read
    with pytest.raises(RuntimeError, match="a verifying process failed: ValueError"):
        _fork_map(_work, ["a", "raise here"])
