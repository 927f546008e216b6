"""GET /audit/verify and the database chain reader: intact chains pass, every kind of tampering is named."""

from datetime import UTC, datetime

import pytest

from accounts.principal import SYSTEM
from audit import selectors
from audit.chain import chain_hash, verify_chain
from audit.models import AuditChainHead, AuditEvent
from audit.services import audit_record, event_as_dict
from tests.audit.conftest import TABLE, event_at, head_of, raw_sql, record

URL = "/api/v1/audit/verify"


def _is_postgres():
    from django.db import connection

    return connection.vendor == "postgresql"


def _is_sqlite():
    from django.db import connection

    return connection.vendor == "sqlite"


def verify(client):
    response = client.get(URL)
    assert response.status_code == 200, response.content
    return response.json()


def test_intact_chain_is_valid_up_to_the_recorded_head(chain, audit_client):
    body = verify(audit_client)
    head = head_of(chain)
    assert body == {
        "valid": True,
        "checked": head["seq"],
        "head": head,
        "first_invalid": None,
        "checkpoint": None,
    }
    assert head["seq"] >= 11


def test_fast_reader_yields_exactly_event_as_dict(chain):
    # An event stamped on a whole second: SQLite stores it without a fraction, a separate code path.
    head = AuditChainHead.objects.get(organization=chain)
    row = AuditEvent(
        organization=chain, seq=head.seq + 1, event="clock.tick", actor="system", actor_type="system",
        data={"ü": "ß", "big": 2**53 - 1}, timestamp=datetime(2026, 11, 22, 5, 0, 0, tzinfo=UTC),
        prev_hash=head.hash, hash="",
    )  # fmt: skip
    body = event_as_dict(row)
    del body["prev_hash"], body["hash"]
    row.hash = chain_hash(head.hash, body)
    row.save(force_insert=True)
    AuditChainHead.objects.filter(pk=chain.pk).update(seq=row.seq, hash=row.hash)
    record(chain, 1, event="after.tick")

    expected = [event_as_dict(e) for e in AuditEvent.objects.filter(organization=chain).order_by("seq")]
    upto = head_of(chain)["seq"]
    for chunk_size in (2, 5000):
        rows = selectors.audit_chain_rows(organization=chain, upto_seq=upto, chunk_size=chunk_size)
        assert list(selectors.row_events(rows)) == expected
    assert any(e["timestamp"] == "2026-11-22T05:00:00.000Z" for e in expected)
    assert verify_chain(expected, expected_head=head_of(chain)).valid


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("event", "'workflow.deleted'"),
        ("actor", "'usr_attacker'"),
        ("actor_type", "'user'"),
        ("target_id", "'wf_other'"),
        ("target_type", "''"),
        ("run_id", "'run_forged'"),
        ("note", "'edited note'"),
        ("data", '\'{"name": "Forged", "tags": ["a"]}\''),
        ("ip", "'10.0.0.66'"),
        ("request_id", "'req_forged'"),
        ("hash", "'" + "f" * 64 + "'"),
        ("prev_hash", "'" + "e" * 64 + "'"),
        ("id", "'evt_forged'"),
    ],
)
def test_edited_event_is_named(chain, audit_client, column, value):
    victim = event_at(chain, 4)
    sql_value = f"CAST({value} AS jsonb)" if column == "data" and _is_postgres() else value
    assert raw_sql(f"UPDATE {TABLE} SET {column} = {sql_value} WHERE id = %s", [victim.id]) == 1
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["first_invalid"]["seq"] == 4
    assert body["checked"] == 3
    assert body["head"] == {"seq": 3, "hash": event_at(chain, 3).hash}


def test_edited_timestamp_is_named(chain, audit_client):
    victim = event_at(chain, 6)
    raw_sql(f"UPDATE {TABLE} SET timestamp = %s WHERE id = %s", [datetime(2020, 1, 1, tzinfo=UTC), victim.id])
    body = verify(audit_client)
    assert body["first_invalid"] == {"seq": 6, "id": victim.id, "reason": body["first_invalid"]["reason"]}
    assert "edited" in body["first_invalid"]["reason"]


def test_edit_with_recomputed_hash_breaks_the_next_link(chain, audit_client):
    victim = event_at(chain, 5)
    forged = event_as_dict(victim)
    forged["data"] = {"scopes": ["nothing"]}
    body = {k: v for k, v in forged.items() if k not in ("prev_hash", "hash")}
    new_hash = chain_hash(forged["prev_hash"], body)
    raw_sql(f"UPDATE {TABLE} SET data = %s, hash = %s WHERE id = %s",
            ['{"scopes": ["nothing"]}', new_hash, victim.id])  # fmt: skip
    result = verify(audit_client)
    assert result["first_invalid"]["seq"] == 6
    assert "reordered or cut" in result["first_invalid"]["reason"]


def test_deleted_middle_event_is_named(chain, audit_client):
    victim = event_at(chain, 5)
    assert raw_sql(f"DELETE FROM {TABLE} WHERE id = %s", [victim.id]) == 1
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["checked"] == 4
    assert body["first_invalid"]["seq"] == 6
    assert "expected seq 5" in body["first_invalid"]["reason"]


def test_deleted_tail_is_caught_by_the_chain_head(chain, audit_client):
    head = head_of(chain)
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq >= %s", [chain.id, head["seq"] - 1])
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["checked"] == head["seq"] - 2
    assert body["first_invalid"]["seq"] == head["seq"] - 1
    assert "deleted" in body["first_invalid"]["reason"]


def test_tail_replaced_with_a_well_formed_forgery_is_caught(chain, audit_client):
    head = head_of(chain)
    last = event_at(chain, head["seq"])
    forged = event_as_dict(last)
    forged["data"] = {"forged": True}
    body = {k: v for k, v in forged.items() if k not in ("prev_hash", "hash")}
    raw_sql(f"UPDATE {TABLE} SET data = %s, hash = %s WHERE id = %s",
            ['{"forged": true}', chain_hash(forged["prev_hash"], body), last.id])  # fmt: skip
    result = verify(audit_client)
    assert result["valid"] is False
    assert result["first_invalid"] == {
        "seq": head["seq"],
        "id": last.id,
        "reason": result["first_invalid"]["reason"],
    }


def test_reordered_pair_is_named(chain, audit_client):
    a, b = event_at(chain, 3), event_at(chain, 4)
    raw_sql(f"UPDATE {TABLE} SET seq = 100000 WHERE id = %s", [a.id])
    raw_sql(f"UPDATE {TABLE} SET seq = 3 WHERE id = %s", [b.id])
    raw_sql(f"UPDATE {TABLE} SET seq = 4 WHERE id = %s", [a.id])
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["first_invalid"]["seq"] == 3
    assert body["first_invalid"]["id"] == b.id
    assert body["checked"] == 2


def test_rolled_back_head_is_caught(chain, audit_client):
    head = head_of(chain)
    raw_sql("UPDATE audit_auditchainhead SET seq = %s, hash = %s WHERE organization_id = %s",
            [head["seq"] - 2, event_at(chain, head["seq"] - 2).hash, chain.id])  # fmt: skip
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq = %s", [chain.id, head["seq"] - 1])
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["first_invalid"]["seq"] == head["seq"]


def test_other_organisations_tampering_does_not_matter(chain, audit_client, other_org):
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq = 1", [other_org.id])
    assert verify(audit_client)["valid"] is True
    assert selectors.audit_chain_verify(organization=other_org).valid is False


def test_events_appended_after_the_check_began_are_left_for_the_next(chain):
    head = head_of(chain)
    audit_record(organization=chain, event="late.event", actor=SYSTEM)
    rows = selectors.audit_chain_rows(organization=chain, upto_seq=head["seq"])
    assert [row[2] for row in rows] == list(range(1, head["seq"] + 1))
    assert selectors.audit_chain_verify(organization=chain).checked == head["seq"] + 1


def test_verify_needs_audit_read(chain, make_key_client, make_jwt_client, member, admin):
    assert make_key_client(["runs:read"]).get(URL).json()["error"]["code"] == "insufficient_scope"
    assert make_jwt_client(member, chain).get(URL).status_code == 403
    assert make_jwt_client(admin, chain).get(URL).json()["valid"] is True


def _verify_in_chunks(org, size):
    head = head_of(org)
    chunks = selectors.audit_chain_chunks(
        organization=org, upto_seq=head["seq"], chunk_size=size, finished=False
    )
    return selectors.verify_chunks(chunks, organization=org, expected_head=head,
                                   finish_timestamp=selectors.timestamp_finisher())  # fmt: skip


def test_verify_walks_across_chunk_boundaries(chain):
    assert _verify_in_chunks(chain, 2).valid
    victim = event_at(chain, 4)
    raw_sql(f"DELETE FROM {TABLE} WHERE id = %s", [victim.id])
    result = _verify_in_chunks(chain, 2)
    assert (result.valid, result.checked, result.first_invalid["seq"]) == (False, 3, 5)


def test_events_the_fast_path_cannot_encode_are_judged_by_rfc8785(chain, audit_client):
    # orjson writes 1.0 and 1e-07 differently from RFC 8785 ("1", "1e-7"): the fast path misses them and the
    # reference path must still accept them.
    record(chain, 2, event="odd.numbers", data={"ratio": 1.0, "tiny": 1e-7, "text": "ü\u2028"})
    body = verify(audit_client)
    assert body["valid"] is True, body
    assert body["checked"] == head_of(chain)["seq"]


@pytest.mark.skipif(not _is_sqlite(), reason="PostgreSQL's timestamptz column refuses such values")
@pytest.mark.parametrize("value", ["not a time", "2026-13-45 99:00:00", "2026-11-22T05:00:00.123+01:00"])
def test_a_timestamp_overwritten_in_another_form_is_reported_not_a_crash(chain, audit_client, value):
    victim = event_at(chain, 7)
    raw_sql(f"UPDATE {TABLE} SET timestamp = %s WHERE id = %s", [value, victim.id])
    body = verify(audit_client)
    assert body["valid"] is False
    assert body["first_invalid"]["seq"] == 7
    assert body["checked"] == 6
