"""Signed checkpoints: signing, the file outside the database, the cadence, keys and rotation, and what
the verify makes of deleted or edited checkpoints."""

import base64
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from django.core.management import call_command
from rest_framework.test import APIClient

from accounts.principal import SYSTEM
from audit import checkpoints
from audit.chain import checkpoint_digest, checkpoint_message
from audit.checkpoints import audit_checkpoint_create, checkpoint_as_dict, checkpoint_path, file_checkpoints
from audit.models import AppendOnlyError, AuditCheckpoint
from audit.services import audit_record
from tests.audit.conftest import head_of, raw_sql, record

ROOT = Path(__file__).resolve().parents[2]
VERIFY = "/api/v1/audit/verify"
KEY_A = base64.b64decode(base64.b64encode(b"a" * 32))
KEY_B = b"b" * 32


def verify(client, **query):
    response = client.get(VERIFY, query)
    assert response.status_code == 200, response.content
    return response.json()


def test_a_checkpoint_signs_the_head_and_names_the_one_before(org):
    first = audit_checkpoint_create(organization=org)
    record(org, 3)
    second = audit_checkpoint_create(organization=org)
    head = head_of(org)
    assert (second.seq, second.hash) == (head["seq"], head["hash"])
    assert first.previous is None
    assert second.previous == checkpoint_digest(checkpoint_as_dict(first))
    public = Ed25519PublicKey.from_public_bytes(
        base64.b64decode(checkpoints.public_keys_document()["keys"][0]["public_key"])
    )
    line = checkpoint_as_dict(second)
    public.verify(base64.b64decode(line["signature"]), checkpoint_message(line))  # raises if it does not hold
    assert file_checkpoints(org.pk) == [checkpoint_as_dict(first), line]
    assert oct(checkpoint_path(org.pk).stat().st_mode & 0o777) == "0o600"


def test_an_unchanged_head_is_not_signed_twice(org):
    first = audit_checkpoint_create(organization=org)
    assert audit_checkpoint_create(organization=org).pk == first.pk
    assert AuditCheckpoint.objects.filter(organization=org).count() == 1


def test_checkpoint_rows_are_append_only(org):
    row = audit_checkpoint_create(organization=org)
    with pytest.raises(AppendOnlyError):
        row.delete()
    with pytest.raises(AppendOnlyError):
        AuditCheckpoint.objects.filter(organization=org).update(seq=1)
    with pytest.raises(AppendOnlyError):
        row.save()


def test_appends_are_checkpointed_every_n_events_after_commit(
    org, settings, django_capture_on_commit_callbacks
):
    settings.BATON_AUDIT_CHECKPOINT_EVENTS = 5
    signed = 0
    for _ in range(8):  # seq 3..10, each append its own transaction
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            record(org, 1)
        signed += len(callbacks)
    assert signed == 2
    assert list(AuditCheckpoint.objects.filter(organization=org).values_list("seq", flat=True)) == [5, 10]


def test_an_append_long_after_the_last_checkpoint_is_checkpointed(
    org, settings, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        record(org, 1)
        assert not AuditCheckpoint.objects.filter(organization=org).exists()  # seen now, due in 600 s
        checkpoints._DUE[org.pk] = 0  # as if those seconds had passed
        record(org, 1)
    assert AuditCheckpoint.objects.get(organization=org).seq == head_of(org)["seq"]
    assert checkpoints._DUE[org.pk] > 0


def test_default_verify_walks_only_what_came_after_the_last_checkpoint(org, audit_client):
    audit_checkpoint_create(organization=org)
    at = head_of(org)["seq"]
    record(org, 4)
    body = verify(audit_client)
    assert body["valid"] and body["checked"] == 4
    assert body["checkpoint"]["seq"] == at
    assert set(body["checkpoint"]) == {"seq", "hash", "signed_at", "key_id"}
    full = verify(audit_client, full="true")
    assert full["valid"] and full["checked"] == head_of(org)["seq"]
    assert audit_client.get(VERIFY, {"full": "maybe"}).status_code == 400


def test_deleting_checkpoint_rows_is_detected(org, audit_client):
    made = []
    for _ in range(3):
        record(org, 2)
        made.append(audit_checkpoint_create(organization=org))
    raw_sql("DELETE FROM audit_auditcheckpoint WHERE id = %s", [made[1].pk])  # a middle one
    body = verify(audit_client)
    assert not body["valid"]
    assert "in the checkpoint file but not in the database" in body["first_invalid"]["reason"]
    assert body["first_invalid"]["seq"] == made[1].seq
    checkpoint_path(org.pk).unlink()  # without the file, the links still tell
    body = verify(audit_client)
    assert "does not name the checkpoint before it" in body["first_invalid"]["reason"]
    assert body["first_invalid"]["seq"] == made[2].seq


def test_deleting_the_latest_checkpoint_rows_is_detected_by_the_file(org, audit_client):
    record(org, 2)
    audit_checkpoint_create(organization=org)
    record(org, 2)
    latest = audit_checkpoint_create(organization=org)
    raw_sql("DELETE FROM audit_auditcheckpoint WHERE id = %s", [latest.pk])
    body = verify(audit_client)
    assert not body["valid"]
    assert "in the checkpoint file but not in the database" in body["first_invalid"]["reason"]


def test_an_edited_checkpoint_fails_its_signature(org, audit_client):
    record(org, 2)
    row = audit_checkpoint_create(organization=org)
    raw_sql("UPDATE audit_auditcheckpoint SET signed_at = signed_at WHERE id = %s", [row.pk])
    assert verify(audit_client)["valid"]
    raw_sql("UPDATE audit_auditcheckpoint SET signature = %s WHERE id = %s",
            [base64.b64encode(b"\0" * 64).decode(), row.pk])  # fmt: skip
    body = verify(audit_client)
    assert not body["valid"] and "signature that does not hold" in body["first_invalid"]["reason"]


def test_rotation_signs_with_the_first_key_and_still_verifies_the_old(org, audit_client, settings):
    settings.BATON_AUDIT_SIGNING_KEYS = [KEY_A]
    old = audit_checkpoint_create(organization=org)
    settings.BATON_AUDIT_SIGNING_KEYS = [KEY_B, KEY_A]
    record(org, 2)
    new = audit_checkpoint_create(organization=org)
    assert new.key_id != old.key_id
    keys = APIClient().get("/api/v1/audit/public-keys").json()["keys"]  # no authentication
    assert [(key["key_id"], key["active"], key["algorithm"]) for key in keys] == [
        (new.key_id, True, "ed25519"), (old.key_id, False, "ed25519")]  # fmt: skip
    body = verify(audit_client, full="true")
    assert body["valid"] and body["checkpoint"]["key_id"] == new.key_id
    settings.BATON_AUDIT_SIGNING_KEYS = [KEY_B]  # the old key dropped: its checkpoints no longer verify
    body = verify(audit_client, full="true")
    assert not body["valid"] and "which is not known" in body["first_invalid"]["reason"]


def test_audit_public_key_prints_what_the_endpoint_publishes(settings):
    settings.BATON_AUDIT_SIGNING_KEYS = [KEY_A, KEY_B]
    out = StringIO()
    call_command("audit_public_key", stdout=out)
    published = checkpoints.public_keys_document()["keys"]
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines] == [key["public_key"] for key in published]
    assert "active" in lines[0] and "retired" in lines[1]
    as_json = StringIO()
    call_command("audit_public_key", "--json", stdout=as_json)
    assert orjson.loads(as_json.getvalue())["keys"] == published
    new = StringIO()
    call_command("audit_public_key", "--generate-key", stdout=new)
    assert len(base64.b64decode(new.getvalue().strip())) == 32


def _settings_error(**env) -> str:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("BATON_")}
    environment.update(env)
    done = subprocess.run(
        [sys.executable, "-c", "import django, os; os.environ['DJANGO_SETTINGS_MODULE'] = 'config.settings'; "
         "from django.conf import settings; settings.INSTALLED_APPS"],
        cwd=ROOT, env=environment, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    return done.stderr


def test_production_fails_closed_without_a_signing_key(tmp_path):
    base = {"BATON_ENV": "production", "BATON_DATA_DIR": str(tmp_path), "BATON_SECRET_KEY": "s" * 60,
            "BATON_API_KEY_PEPPERS": "p1:" + "p" * 40}  # fmt: skip
    assert "BATON_AUDIT_SIGNING_KEY is required" in _settings_error(**base)
    assert "32 bytes" in _settings_error(**base, BATON_AUDIT_SIGNING_KEY="c2hvcnQ=")


def test_export_signs_the_head_it_sends(org, audit_client):
    record(org, 3)
    response = audit_client.get("/api/v1/audit/export")
    lines = [orjson.loads(line) for line in b"".join(response.streaming_content).splitlines()]
    head = head_of(org)
    assert lines[-1]["type"] == "checkpoint" and (lines[-1]["seq"], lines[-1]["hash"]) == (
        head["seq"],
        head["hash"],
    )
    audit_record(organization=org, event="after.export", actor=SYSTEM)
    assert AuditCheckpoint.objects.filter(organization=org).count() == 1


def test_audit_checkpoint_signs_every_chain_that_grew(org, other_org):
    audit_checkpoint_create(organization=org)
    record(other_org, 2)
    out = StringIO()
    call_command("audit_checkpoint", stdout=out)
    assert "1 new checkpoints signed" in out.getvalue()
    assert AuditCheckpoint.objects.get(organization=other_org).seq == head_of(other_org)["seq"]
    call_command("audit_checkpoint", stdout=out)
    assert AuditCheckpoint.objects.count() == 2
