"""multipart triggers with an `attachment`: storage, limits, cleanup on failure, and downloads."""

import hashlib
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from runs.models import Run, RunFile
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import GREETER


def upload(name="report.csv", content=b"a,b\n1,2\n", content_type="text/csv"):
    return SimpleUploadedFile(name, content, content_type=content_type)


def post_multipart(client, ref, data, **extra):
    return client.post(f"/api/v1/workflows/{ref}/run", data, format="multipart", **extra)


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_attachment_is_stored_and_described_in_the_input(api_key_client, workflow, org, settings):
    content = b"a,b\n1,2\n"
    response = post_multipart(
        api_key_client,
        workflow.id,
        {"attachment": upload(content=content), "who": "Ada", "count": "3", "metadata": '{"batch": "b1"}'},
    )

    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    attachment = run.input_data["attachment"]
    row = RunFile.objects.get(pk=attachment["file_id"])
    assert attachment == {
        "file_id": row.id,
        "name": "report.csv",
        "size": len(content),
        "content_type": "text/csv",
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    assert (row.run_id, row.organization_id, row.sha256) == (run.id, org.id, attachment["sha256"])
    assert row.storage_path == f"{org.id}/{row.id}"
    assert (Path(settings.MEDIA_ROOT) / org.id / row.id).read_bytes() == content
    # `count` is declared an integer: "3" became 3; `who` is a string and stays one.
    assert run.input_data["who"] == "Ada" and run.input_data["count"] == 3
    assert run.metadata == {"batch": "b1"}


def test_form_values_stay_strings_unless_the_schema_wants_another_type(api_key_client, org, actor):
    free = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={**GREETER, "name": "Typed", "inputs": {"type": "object", "properties": {
            "who": {"type": "string"}, "n": {"type": "number"}, "flag": {"type": "boolean"},
            "tags": {"type": "array"}, "extra": {}}}},
    )  # fmt: skip

    response = post_multipart(
        api_key_client,
        free.id,
        {"who": "42", "n": "2.5", "flag": "true", "tags": '["a", "b"]', "extra": "{}", "other": "7"},
    )

    assert response.status_code == 202, response.content
    assert Run.objects.get().input_data == {
        "who": "42", "n": 2.5, "flag": True, "tags": ["a", "b"], "extra": "{}", "other": "7"
    }  # fmt: skip


def test_multipart_options_are_fields(api_key_client, workflow):
    response = post_multipart(
        api_key_client,
        workflow.id,
        {"who": "Ada", "dry_run": "true", "env": "ci", "version": "1", "input_data": '{"count": 2}'},
    )

    assert response.status_code == 202, response.content
    run = Run.objects.get()
    assert (run.dry_run, run.env) == (True, "ci")
    assert run.input_data == {"who": "Ada", "count": 2}


def test_oversized_attachment_is_413_and_nothing_is_kept(api_key_client, workflow, settings):
    settings.BATON_MAX_UPLOAD_BYTES = 1024

    response = post_multipart(
        api_key_client, workflow.id, {"attachment": upload(content=b"x" * 1025), "who": "A"}
    )

    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == "payload_too_large" and error["details"]["max_bytes"] == 1024
    assert not Run.objects.exists() and not RunFile.objects.exists()
    assert stored_files(settings) == []


def test_default_limit_is_3_75_mb(api_key_client, workflow, settings):
    assert settings.BATON_MAX_UPLOAD_BYTES == 3_932_160
    big = upload(content=b"x" * (3_932_160 + 1))

    response = post_multipart(api_key_client, workflow.id, {"attachment": big, "who": "A"})

    assert response.status_code == 413


def test_failed_creation_removes_the_stored_file(api_key_client, workflow, settings):
    response = post_multipart(api_key_client, workflow.id, {"attachment": upload(), "count": "x"})

    assert response.status_code == 422
    assert set(response.json()["error"]["details"]["fields"]) >= {"who", "count"}
    assert not Run.objects.exists() and not RunFile.objects.exists()
    assert stored_files(settings) == []


def test_schema_without_attachment_refuses_the_upload(api_key_client, org, actor, settings):
    strict = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={
            **GREETER,
            "name": "Strict",
            "inputs": {**GREETER["inputs"], "additionalProperties": False},
        },
    )

    response = post_multipart(api_key_client, strict.id, {"attachment": upload(), "who": "A"})

    assert response.status_code == 422
    assert stored_files(settings) == []


@pytest.mark.parametrize(
    "data",
    [
        {"attachment": "not a file", "who": "A"},
        {"other_file": upload(), "who": "A"},
        {"attachment": [upload(), upload()], "who": "A"},
        {"who": ["A", "B"]},
        {"who": "A", "dry_run": "maybe"},
        {"who": "A", "metadata": "{not json"},
    ],
)
def test_malformed_multipart_is_400(api_key_client, workflow, settings, data):
    response = post_multipart(api_key_client, workflow.id, data)

    assert response.status_code == 400, response.content
    assert not Run.objects.exists()
    assert stored_files(settings) == []


def _uploaded_run(client, workflow, **kwargs):
    response = post_multipart(client, workflow.id, {"attachment": upload(**kwargs), "who": "A"})
    assert response.status_code == 202, response.content
    body = response.json()
    return body["run_id"], body["run"]["input_data"]["attachment"]["file_id"]


def test_download_returns_the_bytes_as_a_safe_attachment(api_key_client, workflow):
    run_id, file_id = _uploaded_run(api_key_client, workflow, content=b"a,b\n")

    response = api_key_client.get(f"/api/v1/runs/{run_id}/files/{file_id}", HTTP_ACCEPT="*/*")

    assert response.status_code == 200
    assert b"".join(response.streaming_content) == b"a,b\n"
    assert response["Content-Type"] == "text/csv"
    assert response["Content-Disposition"] == 'attachment; filename="report.csv"'
    assert response["X-Content-Type-Options"] == "nosniff"


def test_dangerous_content_types_are_served_as_octet_stream(api_key_client, workflow):
    run_id, file_id = _uploaded_run(
        api_key_client, workflow, name='../../x"<b>.html', content=b"<script>", content_type="text/html"
    )

    response = api_key_client.get(
        f"/api/v1/runs/{run_id}/files/{file_id}", HTTP_ACCEPT="application/octet-stream"
    )

    assert response.status_code == 200
    assert response["Content-Type"] == "application/octet-stream"
    disposition = response["Content-Disposition"]
    assert disposition.startswith("attachment;") and "/" not in disposition and ".." not in disposition
    assert RunFile.objects.get().name == 'x"<b>.html'


def test_unknown_file_and_other_runs_file_are_404(api_key_client, workflow):
    run_id, file_id = _uploaded_run(api_key_client, workflow)
    other_run_id, _ = _uploaded_run(api_key_client, workflow)

    missing = api_key_client.get(f"/api/v1/runs/{run_id}/files/file_nope")
    wrong_run = api_key_client.get(f"/api/v1/runs/{other_run_id}/files/{file_id}")

    assert missing.status_code == 404 and missing.json()["error"]["code"] == "file_not_found"
    assert wrong_run.status_code == 404 and wrong_run.json()["error"]["code"] == "file_not_found"


def test_another_organisation_gets_404(api_key_client, outsider_key_client, workflow):
    run_id, file_id = _uploaded_run(api_key_client, workflow)

    response = outsider_key_client.get(f"/api/v1/runs/{run_id}/files/{file_id}")

    assert response.status_code == 404 and response.json()["error"]["code"] == "run_not_found"


def test_missing_bytes_are_404_not_500(api_key_client, workflow, settings):
    run_id, file_id = _uploaded_run(api_key_client, workflow)
    for path in stored_files(settings):
        path.unlink()

    response = api_key_client.get(f"/api/v1/runs/{run_id}/files/{file_id}")

    assert response.status_code == 404 and response.json()["error"]["code"] == "file_not_found"


def test_concurrency_rejection_removes_the_stored_file(api_key_client, org, actor, settings):
    limited = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={**GREETER, "name": "Limited"},
        concurrency={"limit": 1, "key": None, "on_limit": "reject"},
    )
    first = post_multipart(api_key_client, limited.id, {"attachment": upload(), "who": "A"})

    second = post_multipart(api_key_client, limited.id, {"attachment": upload(), "who": "B"})

    assert first.status_code == 202, first.content
    assert second.status_code == 409 and second.json()["error"]["code"] == "workflow_already_running"
    assert RunFile.objects.count() == 1
    assert len(stored_files(settings)) == 1
