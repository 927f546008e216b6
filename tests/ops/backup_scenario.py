"""The two halves of the backup round trip, each run in its own process on one data directory:

    python -m tests.ops.backup_scenario seed   # prints what it made, as JSON
    python -m tests.ops.backup_scenario check '<that JSON>'   # prints what it found, as JSON

`seed` makes an organisation with an API key, a secret, a run with an uploaded file and signed audit
checkpoints; `check` uses each through the real stack (the API key authenticates a request, the secret
decrypts, the file downloads, the audit chain and its signed checkpoints verify, also offline)."""

import os
import sys

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup()

import orjson  # noqa: E402
from django.core.files.uploadedfile import SimpleUploadedFile  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

CONTENT = b"name,amount\nAda,42\n"
SECRET = "s3cr3t-value-for-the-round-trip"
GREETER = {
    "name": "Greeter",
    "inputs": {"type": "object", "properties": {"who": {"type": "string"}}},
    "steps": [{"id": "hello", "type": "transform", "config": {"value": "Hello {{ inputs.who }}"}}],
}


def _client(key: str) -> APIClient:
    client = APIClient(HTTP_HOST="localhost")
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


def seed() -> dict:
    from accounts.choices import ALL_SCOPES, Role
    from accounts.models import User
    from accounts.principal import Principal
    from accounts.services import api_key_create, organization_create, secret_create
    from audit.checkpoints import audit_checkpoint_create
    from workflows.choices import WorkflowStatus
    from workflows.services import workflow_create

    owner = User.objects.create_user("owner@backup.test", "a-long-password-1")
    org = organization_create(name="Backup", owner=owner)
    actor = Principal(organization=org, user=owner, role=Role.OWNER)
    key = api_key_create(organization=org, actor=actor, name="round trip", scopes=ALL_SCOPES).key
    secret = secret_create(organization=org, actor=actor, name="TOKEN", value=SECRET)
    workflow = workflow_create(
        organization=org, actor=actor, definition=GREETER, status=WorkflowStatus.ACTIVE
    )
    audit_checkpoint_create(organization=org)
    upload = SimpleUploadedFile("report.csv", CONTENT, content_type="text/csv")
    response = _client(key).post(
        f"/api/v1/workflows/{workflow.id}/run", {"attachment": upload, "who": "Ada"}, format="multipart"
    )
    assert response.status_code == 202, response.content
    run_id = response.json()["run_id"]
    file_id = _client(key).get(f"/api/v1/runs/{run_id}").json()["input_data"]["attachment"]["file_id"]
    checkpoint = audit_checkpoint_create(organization=org)
    return {"key": key, "secret_id": secret.id, "run_id": run_id, "file_id": file_id,
            "checkpoint_seq": checkpoint.seq, "org_id": org.id}  # fmt: skip


def check(made: dict) -> dict:
    import tempfile
    from io import StringIO

    from django.core.management import call_command

    from accounts.crypto import decrypt
    from accounts.models import Secret
    from audit.checkpoints import public_keys_document

    client = _client(made["key"])
    found = {"authenticated": client.get("/api/v1/workflows").status_code}
    found["secret"] = decrypt(Secret.objects.get(pk=made["secret_id"]).value_encrypted) == SECRET
    download = client.get(f"/api/v1/runs/{made['run_id']}/files/{made['file_id']}", HTTP_ACCEPT="*/*")
    found["download"] = [download.status_code, b"".join(download.streaming_content) == CONTENT]
    full = client.get("/api/v1/audit/verify", {"full": "true"}).json()
    default = client.get("/api/v1/audit/verify").json()
    found["verify"] = [full["valid"], default["valid"], (full["checkpoint"] or {}).get("seq")]
    export = client.get("/api/v1/audit/export")
    with tempfile.NamedTemporaryFile(suffix=".jsonl") as file:
        file.write(b"".join(export.streaming_content))
        file.flush()
        out = StringIO()
        key = public_keys_document()["keys"][0]["public_key"]
        call_command("audit_verify", file.name, "--public-key", key, stdout=out)
    found["offline"] = out.getvalue()
    return found


if __name__ == "__main__":
    result = seed() if sys.argv[1] == "seed" else check(orjson.loads(sys.argv[2]))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
