"""The export verifier splits a file among processes and stitches the slices: its verdicts must be the ones
one process gives, wherever the damage falls relative to the slices' boundaries."""

import orjson
import pytest

from audit.chain import GENESIS_HASH, chain_hash
from audit.offline import verify_export

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
