"""Every tamper caught: six ways to change a chain behind Baton's back (raw SQL, as someone with database
access would), each detected by the full verify, by `manage.py audit_verify` and by the standalone script
on an export, and truncation and recomputation also by the default verify; each report names the first
bad seq."""

import base64
import importlib.util
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from accounts.principal import SYSTEM
from audit.chain import chain_hash
from audit.checkpoints import audit_checkpoint_create, public_keys_document
from audit.services import _body_of, audit_record
from tests.audit.conftest import TABLE, event_at, head_of, raw_sql, record

ROOT = Path(__file__).resolve().parents[2]
EVENTS = 22
CHECKPOINTS = (8, 16, 22)


def _standalone():
    spec = importlib.util.spec_from_file_location(
        "standalone_audit_verify", ROOT / "docs" / "audit_verify.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


STANDALONE = _standalone()


def _json(value: str) -> str:
    return value + "::jsonb" if connection.vendor == "postgresql" else value


def _set_head(org, seq: int, hash_: str) -> None:
    raw_sql(
        "UPDATE audit_auditchainhead SET seq = %s, hash = %s WHERE organization_id = %s", [seq, hash_, org.pk]
    )


def edit_data(org, other):
    raw_sql(
        f"UPDATE {TABLE} SET data = {_json('%s')} WHERE organization_id = %s AND seq = 5",
        ['{"n": 999}', org.pk],
    )
    return 5, "edited"


def delete_row(org, other):
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq = 5", [org.pk])
    return 6, "expected seq 5"  # reported at the event found where seq 5 belongs


def swap_rows(org, other):
    for old, new in ((5, 1_000_000), (6, 5), (1_000_000, 6)):
        raw_sql(f"UPDATE {TABLE} SET seq = %s WHERE organization_id = %s AND seq = %s", [new, org.pk, old])
    return 5, "reordered"


def splice_other_org(org, other):
    # Another organisation's event takes seq 5's place, even pointing at seq 4's hash.
    prev = event_at(org, 4).hash
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq = 5", [org.pk])
    raw_sql(
        f"UPDATE {TABLE} SET organization_id = %s, seq = 5, prev_hash = %s "
        "WHERE organization_id = %s AND seq = 2",
        [org.pk, prev, other.pk],
    )
    # Moved into this chain the row carries this organisation's id, which its hash does not cover.
    return 5, "edited"


def truncate_tail(org, other):
    raw_sql(f"DELETE FROM {TABLE} WHERE organization_id = %s AND seq > 18", [org.pk])
    last = event_at(org, 18)
    _set_head(org, 18, last.hash)
    return 19, "events at the end were deleted"


def edit_and_recompute(org, other):
    raw_sql(
        f"UPDATE {TABLE} SET data = {_json('%s')} WHERE organization_id = %s AND seq = 10",
        ['{"n": 999}', org.pk],
    )
    prev = event_at(org, 9).hash
    for seq in range(10, EVENTS + 1):
        event = event_at(org, seq)
        event.prev_hash = prev
        prev = chain_hash(prev, _body_of(event))
        raw_sql(
            f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE organization_id = %s AND seq = %s",
            [event.prev_hash, prev, org.pk, seq],
        )
    _set_head(org, EVENTS, prev)
    return 16, "in seq 9..16 was edited"  # the first checkpoint the chain no longer agrees with


TAMPERS = [edit_data, delete_row, swap_rows, splice_other_org, truncate_tail, edit_and_recompute]
DEFAULT_VERIFY_CATCHES = {truncate_tail, edit_and_recompute}


@pytest.fixture
def signed_chain(org, other_org, audit_client):
    """22 events (the API key's creation among them), signed at seq 8, 16 and 22 (the last, as an export
    would)."""
    for seq in range(head_of(org)["seq"] + 1, EVENTS + 1):
        audit_record(organization=org, event="test.happened", actor=SYSTEM, data={"n": seq})
        if seq in CHECKPOINTS:
            assert audit_checkpoint_create(organization=org).seq == seq
    record(other_org, 3)
    assert head_of(org)["seq"] == EVENTS
    return org


def _api_verify(client, **query):
    response = client.get("/api/v1/audit/verify", query)
    assert response.status_code == 200, response.content
    return response.json()


def _export(client, tmp_path) -> Path:
    response = client.get("/api/v1/audit/export")
    assert response.status_code == 200
    path = tmp_path / "export.jsonl"
    path.write_bytes(b"".join(response.streaming_content))
    return path


def _public_key() -> str:
    return public_keys_document()["keys"][0]["public_key"]


def test_the_untampered_chain_verifies_every_way(signed_chain, audit_client, tmp_path):
    full, default = _api_verify(audit_client, full="true"), _api_verify(audit_client)
    assert full["valid"] and default["valid"]
    assert (full["checked"], default["checked"]) == (EVENTS, 0)  # the default walks only past seq 22
    assert default["checkpoint"]["seq"] == EVENTS
    path = _export(audit_client, tmp_path)
    out = StringIO()
    call_command("audit_verify", str(path), "--public-key", _public_key(), stdout=out)
    assert "signatures verified" in out.getvalue()
    keys = STANDALONE.load_keys([_public_key()])
    assert STANDALONE.verify(path.read_bytes().split(b"\n"), keys)[0] == EVENTS


@pytest.mark.parametrize("tamper", TAMPERS, ids=[tamper.__name__ for tamper in TAMPERS])
def test_every_tamper_is_caught_naming_the_first_bad_seq(
    signed_chain, other_org, audit_client, tmp_path, tamper
):
    bad_seq, reason = tamper(signed_chain, other_org)

    full = _api_verify(audit_client, full="true")
    assert not full["valid"]
    assert full["first_invalid"]["seq"] == bad_seq, full
    assert reason in full["first_invalid"]["reason"]

    default = _api_verify(audit_client)
    if tamper in DEFAULT_VERIFY_CATCHES:
        assert not default["valid"]
        assert default["first_invalid"]["seq"] == bad_seq, default
        assert reason in default["first_invalid"]["reason"]

    path = _export(audit_client, tmp_path)
    with pytest.raises(CommandError) as failure:
        call_command("audit_verify", str(path), "--public-key", _public_key(), stdout=StringIO())
    assert failure.value.returncode == 1
    assert f"seq {bad_seq} " in str(failure.value)

    keys = STANDALONE.load_keys([_public_key()])
    with pytest.raises(STANDALONE.Invalid) as caught:
        STANDALONE.verify(path.read_bytes().split(b"\n"), keys)
    assert caught.value.seq == bad_seq, str(caught.value)


def test_without_a_key_the_offline_check_still_catches_a_recomputed_chain(
    signed_chain, other_org, audit_client, tmp_path
):
    bad_seq, _ = edit_and_recompute(signed_chain, other_org)
    path = _export(audit_client, tmp_path)
    with pytest.raises(CommandError, match=f"seq {bad_seq} "):
        call_command("audit_verify", str(path), stdout=StringIO())


def test_a_checkpoint_line_rewritten_to_match_a_recomputed_chain_fails_its_signature(
    signed_chain, other_org, audit_client, tmp_path
):
    import orjson

    edit_and_recompute(signed_chain, other_org)
    path = _export(audit_client, tmp_path)
    lines = path.read_bytes().splitlines()
    hashes = {}
    fixed = []
    for line in lines:
        record_ = orjson.loads(line)
        if record_.get("type") == "checkpoint":
            record_["hash"] = hashes[record_["seq"]]
        else:
            hashes[record_["seq"]] = record_["hash"]
        fixed.append(orjson.dumps(record_))
    path.write_bytes(b"\n".join(fixed) + b"\n")
    with pytest.raises(CommandError, match="signature that does not hold"):
        call_command("audit_verify", str(path), "--public-key", _public_key(), stdout=StringIO())
    forged = base64.b64encode(b"\0" * 32).decode()
    with pytest.raises(CommandError, match="not among the public keys given"):
        call_command("audit_verify", str(path), "--public-key", forged, stdout=StringIO())


def test_the_standalone_script_exits_0_when_intact_and_1_naming_the_seq(
    signed_chain, audit_client, tmp_path, capsys
):
    path = _export(audit_client, tmp_path)
    assert STANDALONE.main([str(path), "--public-key", _public_key()]) == 0
    assert "signatures verified" in capsys.readouterr().out
    lines = path.read_bytes().splitlines()
    path.write_bytes(b"\n".join(lines[:4] + lines[5:]) + b"\n")  # seq 5's line removed
    assert STANDALONE.main([str(path)]) == 1
    assert "INVALID: seq 6 on line 5: expected seq 5" in capsys.readouterr().err
