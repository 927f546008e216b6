"""GET /audit/export streams the chain as JSON Lines; `manage.py audit_verify` checks a file offline."""

import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import rfc8785
from django.core.management import CommandError, call_command

from audit.checkpoints import checkpoint_as_dict
from audit.models import AuditCheckpoint, AuditEvent
from audit.services import event_as_dict
from tests.audit.conftest import head_of

URL = "/api/v1/audit/export"
ROOT = Path(__file__).resolve().parents[2]


def export_lines(client) -> list[bytes]:
    response = client.get(URL)
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    content = b"".join(response.streaming_content)
    assert content.endswith(b"\n")
    return content.splitlines()


def events_only(lines: list[dict]) -> list[dict]:
    return [line for line in lines if line.get("type") != "checkpoint"]


def write(tmp_path, lines) -> Path:
    path = tmp_path / "chain.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return path


def verify_file(path, *args) -> str:
    from io import StringIO

    out = StringIO()
    call_command("audit_verify", str(path), *args, stdout=out)
    return out.getvalue()


def test_export_is_the_chain_one_event_per_line(chain, audit_client):
    response = audit_client.get(URL)
    head = head_of(chain)
    assert response["X-Audit-Head-Seq"] == str(head["seq"])
    assert response["X-Audit-Head-Hash"] == head["hash"]
    assert "attachment" in response["Content-Disposition"]
    lines = [orjson.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    assert lines[:-1] == [
        event_as_dict(e) for e in AuditEvent.objects.filter(organization=chain).order_by("seq")
    ]
    # Each event line is its body in RFC 8785 form, then prev_hash and hash: the bytes the hash covers.
    first = event_as_dict(AuditEvent.objects.get(organization=chain, seq=1))
    body = {name: value for name, value in first.items() if name not in ("prev_hash", "hash")}
    assert list(lines[0]) == [*sorted(body), "prev_hash", "hash"]
    raw = b"".join(audit_client.get(URL).streaming_content).splitlines()[0]
    assert (
        raw
        == rfc8785.dumps(body)[:-1]
        + f',"prev_hash":"{first["prev_hash"]}","hash":"{first["hash"]}"}}'.encode()
    )
    # The export signed the head it sent, and the checkpoint's line follows the event it states.
    checkpoint = AuditCheckpoint.objects.get(organization=chain)
    assert lines[-1] == checkpoint_as_dict(checkpoint)
    assert (lines[-1]["type"], lines[-1]["seq"], lines[-1]["hash"]) == (
        "checkpoint",
        head["seq"],
        head["hash"],
    )


def test_exported_file_verifies_offline(chain, audit_client, tmp_path):
    path = write(tmp_path, export_lines(audit_client))
    head = head_of(chain)
    out = verify_file(path)
    assert f"checked {head['seq']} events" in out
    assert f"head seq {head['seq']} hash {head['hash']}" in out
    assert "OK" in verify_file(path, "--head-seq", str(head["seq"]), "--head-hash", head["hash"])
    as_json = orjson.loads(verify_file(path, "--json"))
    checkpoint = AuditCheckpoint.objects.get(organization=chain)
    assert as_json == {
        "valid": True, "checked": head["seq"], "head": head, "first_invalid": None, "signatures": "unchecked",
        "checkpoint": {"seq": head["seq"], "hash": head["hash"], "key_id": checkpoint.key_id,
                       "signed_at": checkpoint_as_dict(checkpoint)["signed_at"]},
    }  # fmt: skip
    assert "signatures UNCHECKED" in out


def _tamper_data(lines):
    event = orjson.loads(lines[4])
    event["data"]["scopes"] = ["admin", "everything"]
    lines[4] = orjson.dumps(event)
    return lines, 5


def _drop_middle(lines):
    del lines[3]
    return lines, 5


def _swap(lines):
    lines[5], lines[6] = lines[6], lines[5]
    return lines, 7  # the event found where seq 6 belongs


def _other_org_line(lines):
    event = orjson.loads(lines[2])
    event["organization"] = "org_someone_else"
    lines[2] = orjson.dumps(event)
    return lines, 3


@pytest.mark.parametrize("tamper", [_tamper_data, _drop_middle, _swap, _other_org_line])
def test_tampered_file_fails_naming_the_first_bad_event(chain, audit_client, tmp_path, tamper):
    lines, bad_seq = tamper(export_lines(audit_client))
    path = write(tmp_path, lines)
    with pytest.raises(CommandError) as failure:
        verify_file(path)
    assert failure.value.returncode == 1
    assert f"seq {bad_seq} " in str(failure.value)


def test_truncated_file_fails_only_against_a_known_head(chain, audit_client, tmp_path):
    events = export_lines(audit_client)[:-1]  # without the checkpoint line
    head = head_of(chain)
    path = write(tmp_path, events[:-2])
    assert f"checked {head['seq'] - 2} events" in verify_file(path)
    with pytest.raises(CommandError, match="deleted"):
        verify_file(path, "--head-seq", str(head["seq"]))


def test_truncated_file_fails_against_its_checkpoint(chain, audit_client, tmp_path):
    lines = export_lines(audit_client)
    head = head_of(chain)
    with pytest.raises(CommandError, match=f"seq {head['seq'] - 1} .*past the chain's end"):
        verify_file(write(tmp_path, lines[:-3] + lines[-1:]))


def test_garbage_line_fails(chain, audit_client, tmp_path):
    lines = export_lines(audit_client)
    lines.insert(2, b"{not json")
    with pytest.raises(CommandError, match="on line 3: the line is not JSON"):
        verify_file(write(tmp_path, lines))


def test_command_exit_codes(chain, audit_client, tmp_path):
    lines = export_lines(audit_client)
    good = write(tmp_path, lines)
    run = [sys.executable, "manage.py", "audit_verify"]
    ok = subprocess.run([*run, str(good)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("OK: checked ")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b"\n".join(lines[:3] + lines[4:]) + b"\n")
    failed = subprocess.run([*run, str(bad)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1
    assert "seq 5" in failed.stderr and "INVALID" in failed.stderr
    missing = subprocess.run([*run, str(tmp_path / "nope.jsonl")], cwd=ROOT, capture_output=True, timeout=60)
    assert missing.returncode == 1


def test_export_holds_only_the_callers_organisation(chain, outsider_key_client, other_org):
    lines = events_only([orjson.loads(line) for line in export_lines(outsider_key_client)])
    assert {e["organization"] for e in lines} == {other_org.id}
    assert [e["seq"] for e in lines] == list(range(1, len(lines) + 1))


def test_export_needs_audit_read(chain, make_key_client):
    response = make_key_client(["runs:read"]).get(URL)
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "insufficient_scope"


@pytest.mark.django_db(transaction=True)
def test_export_streams_asynchronously_under_asgi(org, owner):
    """Under ASGI the export is an async iterator (a sync one would be read whole into memory first)."""
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import connections
    from django.test import AsyncClient

    from tests.audit.conftest import record
    from tests.conftest import key_for

    record(org, 5)
    key = key_for(org, owner, ["audit:read"])
    expected = [event_as_dict(e) for e in AuditEvent.objects.filter(organization=org).order_by("seq")]

    async def fetch():
        try:
            response = await AsyncClient().get(URL, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 200
            assert response.is_async
            return b"".join([chunk async for chunk in response.streaming_content])
        finally:
            # The chunks' queries ran in asgiref's thread for thread-sensitive calls, whose connection a
            # server closes at the request's end; the test client does not, and PostgreSQL would refuse to
            # drop the test database while it stays open.
            await sync_to_async(connections.close_all, thread_sensitive=True)()

    content = asyncio.run(fetch())
    assert events_only([orjson.loads(line) for line in content.splitlines()]) == expected
