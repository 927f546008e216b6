"""The append on PostgreSQL: one statement that locks the head, links the event and inserts it, the hash
computed by the server from canonical pieces the client prepares (audit.services). It must produce the
same bytes as the rule (`chain.chain_hash`) for every kind of value; elsewhere the three-statement append."""

from datetime import UTC, datetime

import pytest
import rfc8785
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext

from accounts.principal import SYSTEM
from audit import selectors
from audit.chain import chain_hash
from audit.models import AuditEvent
from audit.services import _canonical_pieces, _jsonable, audit_record, event_as_dict, format_timestamp
from config import sql
from tests.audit.conftest import raw_sql

pytestmark = pytest.mark.django_db

TARGETS = [None, ("run", "run_1"), ("workflow", "wf_é ✓")]
DATA = [
    {},
    {"n": 1, "f": 0.1, "big": 2**53 + 1, "neg": -0.0, "nested": {"z": [1, "二", None, True], "a": {}}},
    {"text": 'quote " backslash \\ newline \n tab \t emoji 😀 surrogate-free', "é": "ü"},
    {"keys": {"b": 1, "a": 2, "A": 3, "_": 4, "é": 5, "😀": 6}, "list": [[], [{}], 1e300, 5e-324]},
]


@pytest.mark.parametrize("target", TARGETS)
@pytest.mark.parametrize("data", DATA)
def test_the_canonical_pieces_join_into_the_rules_bytes(org, target, data):
    row = AuditEvent(organization_id=org.pk, event="x.y", actor="usr_1", actor_type="user",
                     target_type=target[0] if target else "", target_id=target[1] if target else "",
                     run_id="run_1" if target else None, note="a note" if data else None,
                     data=_jsonable(data),
                     ip="203.0.113.9" if data else None, request_id="req_1", hash="")  # fmt: skip
    prefix, middle, suffix = _canonical_pieces(row)
    row.seq = 1234567
    row.timestamp = datetime(2026, 12, 3, 17, 5, 9, 81000, tzinfo=UTC)
    body = event_as_dict(row)
    del body["prev_hash"], body["hash"]
    joined = prefix + b"1234567" + middle + format_timestamp(row.timestamp).encode() + suffix
    assert joined == rfc8785.dumps(body)


def test_appends_link_every_event_as_the_rule_does(org, owner):
    audit_record(organization=org, event="first.append", actor=SYSTEM)  # this process has seen the head
    rows = []
    for index, data in enumerate(DATA * 2):
        target = TARGETS[index % len(TARGETS)]
        with CaptureQueriesContext(connection) as queries:
            row = audit_record(organization=org, event=f"e.{index}", actor=SYSTEM, target=target, data=data,
                               note=None if index % 2 else "n", run_id=f"run_{index}")  # fmt: skip
        rows.append(row)
        # One statement on PostgreSQL; the head's lock, the insert and the head's update elsewhere.
        assert len(queries) == (1 if connection.vendor == "postgresql" else 3)
    stored = {row.pk: row for row in AuditEvent.objects.filter(pk__in=[row.pk for row in rows])}
    previous = rows[0].prev_hash
    for row in rows:
        assert row.prev_hash == previous
        saved = stored[row.pk]
        assert (saved.seq, saved.prev_hash, saved.hash, saved.timestamp) == (
            row.seq, row.prev_hash, row.hash, row.timestamp)  # fmt: skip
        body = event_as_dict(saved)
        del body["prev_hash"], body["hash"]
        assert saved.hash == chain_hash(saved.prev_hash, body)
        assert saved.timestamp.microsecond % 1000 == 0
        previous = row.hash
    assert [row.seq for row in rows] == list(range(rows[0].seq, rows[0].seq + len(rows)))
    assert [row.timestamp for row in rows] == sorted(row.timestamp for row in rows)
    assert selectors.audit_chain_verify(organization=org).valid


def test_a_deferred_append_is_filled_in_when_its_pipeline_has_its_results(org):
    audit_record(organization=org, event="first.append", actor=SYSTEM)
    with transaction.atomic(), sql.pipeline():
        row = audit_record(organization=org, event="later", actor=SYSTEM, data={"n": 1}, defer=True)
        if connection.vendor == "postgresql":
            assert row.seq is None  # sent, not waited for
    assert row.seq is not None and row.hash
    assert AuditEvent.objects.get(pk=row.pk).hash == row.hash
    assert selectors.audit_chain_verify(organization=org).valid


def test_an_append_never_drops_its_event_when_the_head_is_gone(org):
    audit_record(organization=org, event="first.append", actor=SYSTEM)
    raw_sql("DELETE FROM audit_auditchainhead WHERE organization_id = %s", [org.pk])
    # PostgreSQL: without a head the one statement inserts a null seq. Elsewhere a new head starts at seq 0
    # and the event's seq 1 is taken. Either way the append fails, loudly, and its change with it.
    with pytest.raises(DatabaseError), transaction.atomic():
        audit_record(organization=org, event="lost?", actor=SYSTEM)
    assert not AuditEvent.objects.filter(organization=org, event="lost?").exists()
