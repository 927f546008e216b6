"""The chain rule is written once (audit/chain.py): its SQL form for PostgreSQL's one-statement append, and
the standalone verifier's own RFC 8785 (docs/audit_verify.py), give the rule's bytes and hashes."""

from datetime import UTC, datetime

import pytest
import rfc8785
from django.db import connection

from audit.chain import GENESIS_HASH, canonical_pieces, chain_hash, format_timestamp, link_hash_sql
from runs.choices import RunStatus, RunTrigger
from tests.audit.test_append_statement import DATA, TARGETS
from tests.audit.test_tamper import STANDALONE

AT = datetime(2026, 12, 3, 17, 5, 9, 81000, tzinfo=UTC)


def _body(data, target, seq=1234567):
    return {
        "id": "evt_1",
        "organization": "org_1",
        "seq": seq,
        "event": "x.y",
        "actor": "usr_1",
        "actor_type": "user",
        "target": {"type": target[0], "id": target[1]} if target else None,
        "run_id": "run_1" if target else None,
        "note": "a note" if data else None,
        "data": data,
        "ip": None,
        "request_id": "req_1",
        "timestamp": format_timestamp(AT),
    }


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("data", DATA)
def test_the_sql_form_hashes_as_the_rule_does(db, data, target):
    if connection.vendor != "postgresql":
        pytest.skip("the SQL form is PostgreSQL's (SQLite appends through chain_hash itself)")
    from audit.services import _jsonable

    body = _body(_jsonable(data), target)
    prefix, middle, suffix = canonical_pieces(body)
    expression = link_hash_sql(prev_hash="%s", seq="%s::bigint", at="%s::timestamptz")
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {expression}", [GENESIS_HASH, prefix, body["seq"], middle, AT, suffix])
        (from_sql,) = cursor.fetchone()
    assert from_sql == chain_hash(GENESIS_HASH, body)


@pytest.mark.parametrize("data", DATA)
def test_the_pieces_join_into_the_canonical_body(data):
    from audit.services import _jsonable

    body = _body(_jsonable(data), TARGETS[1])
    prefix, middle, suffix = canonical_pieces(body)
    joined = prefix + str(body["seq"]).encode() + middle + body["timestamp"].encode() + suffix
    assert joined == rfc8785.dumps(body)


NUMBERS = [
    0.0,
    -0.0,
    1.0,
    -1.5,
    0.1,
    1e20,
    1e21,
    1.5e21,
    1e-6,
    1e-7,
    123456.789,
    5e-324,
    1.7976931348623157e308,
    2**53 - 1,
    -(2**53 - 1),
    3,
]


@pytest.mark.parametrize("value", [*DATA, NUMBERS, {"b": 1, "a": [None, True, False, "\u0007\u001f\u007f/"]}])
def test_the_standalone_verifiers_canonical_json_is_rfc_8785(value):
    from audit.services import _jsonable

    value = _jsonable(value)
    assert STANDALONE.canonical(value).encode() == rfc8785.dumps(value)


# Keys ordered differently by UTF-16 code units (RFC 8785) and by code points: U+FF01 sorts after U+1F600
# in UTF-16 (a surrogate pair starts with U+D83D) and before it by code point.
KEYS_BEYOND_THE_PLANE = {"\uff01": 1, "\U0001f600": 2, "a": 3}
LONE_SURROGATE = "\ud800"


@pytest.mark.parametrize(
    "value",
    [
        *DATA,
        NUMBERS,
        KEYS_BEYOND_THE_PLANE,
        {"nested": [KEYS_BEYOND_THE_PLANE]},
        {"é": {"二": "ü", "ascii": ["\u0000\u0007\u001f\u007f\u2028\ud7ff\ue000\uffff\U0010ffff"]}},
        {"b": True, "a": False, "c": None, "d": [2**53 - 1, -(2**53 - 1), 0, -1]},
        {"trigger": RunTrigger.API, "status": RunStatus.QUEUED},
        "".join(chr(code) for code in range(0x3000)),
        [],
        {},
    ],
)
def test_the_appends_canonical_json_is_rfc_8785(value):
    from audit.chain import canonical
    from audit.services import _jsonable

    value = _jsonable(value)
    assert canonical(value) == rfc8785.dumps(value)


@pytest.mark.parametrize(
    "value", [{"a": LONE_SURROGATE}, {LONE_SURROGATE: 1}, {"a": float("nan")}, [2**53], {"a": -(2**53)}]
)
def test_the_appends_canonical_json_refuses_what_rfc_8785_refuses(value):
    from audit.chain import canonical

    with pytest.raises(Exception) as refused:
        rfc8785.dumps(value)
    with pytest.raises(refused.type):
        canonical(value)
