"""cancel, delete, pin/unpin and the bulk actions."""

from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from runs import services
from runs.models import Run, RunEvent, RunFile, StepRun
from runs.services import bulk
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import GreeterRunFactory, drain


def audited(org, event) -> list[str]:
    return list(AuditEvent.objects.filter(organization=org, event=event).values_list("target_id", flat=True))


# --- cancel ---------------------------------------------------------------------------------------


def test_cancel_with_a_running_step_is_202_then_cancelled(api_key_client, workflow, actor, org):
    run = GreeterRunFactory(workflow=workflow, actor=actor)
    StepRun.objects.filter(run=run, step_id="hello").update(status="running")

    response = api_key_client.post(f"/api/v1/runs/{run.id}/cancel", {"reason": "wrong input"}, format="json")

    assert response.status_code == 202, response.content
    assert response.json()["id"] == run.id and response.json()["status"] == "running"
    assert Run.objects.get(pk=run.pk).cancel_requested_at is not None
    assert audited(org, "run.cancelled") == [run.id]


def test_cancel_of_a_run_with_nothing_running_is_200_cancelled(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)  # its first step is queued, not started

    response = api_key_client.post(f"/api/v1/runs/{run.id}/cancel", format="json")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "cancelled"


@pytest.mark.parametrize("status", ["completed", "failed", "cancelled"])
def test_cancel_of_a_finished_run_is_409(api_key_client, workflow, actor, status):
    run = GreeterRunFactory(workflow=workflow, actor=actor, status=status)

    response = api_key_client.post(f"/api/v1/runs/{run.id}/cancel", format="json")

    assert response.status_code == 409 and response.json()["error"]["code"] == "run_not_cancellable"


def test_cancel_reason_is_limited(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    response = api_key_client.post(f"/api/v1/runs/{run.id}/cancel", {"reason": "x" * 1001}, format="json")

    assert response.status_code == 400 and "reason" in response.json()["error"]["details"]["fields"]


# --- terminate ------------------------------------------------------------------------------------


def test_terminate_with_a_running_step_is_202_and_audited(api_key_client, workflow, actor, org):
    run = GreeterRunFactory(workflow=workflow, actor=actor)
    StepRun.objects.filter(run=run, step_id="hello").update(status="running")

    response = api_key_client.post(f"/api/v1/runs/{run.id}/terminate", {"reason": "stuck"}, format="json")

    assert response.status_code == 202, response.content
    assert Run.objects.get(pk=run.pk).terminate_requested_at is not None
    assert audited(org, "run.terminated") == [run.id]


def test_terminate_of_a_run_with_nothing_running_is_200_cancelled(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    response = api_key_client.post(f"/api/v1/runs/{run.id}/terminate", format="json")

    assert response.status_code == 200 and response.json()["status"] == "cancelled"


def test_terminate_of_a_finished_run_is_409(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor, status="completed")

    response = api_key_client.post(f"/api/v1/runs/{run.id}/terminate", format="json")

    assert response.status_code == 409 and response.json()["error"]["code"] == "run_not_cancellable"


# --- delete ---------------------------------------------------------------------------------------


def test_delete_removes_the_run_steps_events_and_files(
    api_key_client, workflow, org, settings, django_capture_on_commit_callbacks
):
    upload = SimpleUploadedFile("a.txt", b"hello", content_type="text/plain")
    response = api_key_client.post(
        f"/api/v1/workflows/{workflow.id}/run", {"attachment": upload, "who": "A"}, format="multipart"
    )
    run_id = response.json()["run_id"]
    drain()
    stored = Path(settings.MEDIA_ROOT) / RunFile.objects.get(run_id=run_id).storage_path
    assert stored.exists()

    with django_capture_on_commit_callbacks(execute=True):
        deleted = api_key_client.delete(f"/api/v1/runs/{run_id}")

    assert deleted.status_code == 204
    assert not Run.objects.filter(pk=run_id).exists()
    assert not StepRun.objects.filter(run_id=run_id).exists()
    assert not RunEvent.objects.filter(run_id=run_id).exists()
    assert not RunFile.objects.filter(run_id=run_id).exists()
    assert not stored.exists()
    assert audited(org, "run.deleted") == [run_id]
    assert api_key_client.get(f"/api/v1/runs/{run_id}").status_code == 404


def test_delete_keeps_files_when_the_transaction_does_not_commit(workflow, actor, settings):
    run = GreeterRunFactory(workflow=workflow, actor=actor, status="completed")
    path = Path(settings.MEDIA_ROOT) / "x" / "file_1"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"1")
    RunFile.objects.create(run=run, organization=run.organization, name="f", sha256="0" * 64,
                           storage_path="x/file_1")  # fmt: skip

    services.run_delete(run=run, actor=actor)  # inside the test's transaction: never committed

    assert path.exists()


def test_delete_of_an_active_run_is_409(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    response = api_key_client.delete(f"/api/v1/runs/{run.id}")

    assert response.status_code == 409 and response.json()["error"]["code"] == "run_active"
    assert Run.objects.filter(pk=run.pk).exists()


def test_delete_of_a_loop_run(api_key_client, org, actor):
    from tests.runs.api.test_detail import LOOPING

    looping = WorkflowFactory(organization=org, actor=actor, definition=LOOPING)
    run = GreeterRunFactory(workflow=looping, actor=actor, input_data={})
    drain()
    assert StepRun.objects.filter(run=run, parent__isnull=False).count() == 3

    assert api_key_client.delete(f"/api/v1/runs/{run.id}").status_code == 204
    assert not StepRun.objects.filter(run_id=run.id).exists()


# --- pin ------------------------------------------------------------------------------------------


def test_pin_and_unpin(api_key_client, workflow, actor, org):
    run = GreeterRunFactory(workflow=workflow, actor=actor, status="completed")

    pinned = api_key_client.post(f"/api/v1/runs/{run.id}/pin")
    again = api_key_client.post(f"/api/v1/runs/{run.id}/pin")
    unpinned = api_key_client.delete(f"/api/v1/runs/{run.id}/pin")

    assert pinned.status_code == 200 and pinned.json()["pinned"] is True
    assert again.json()["pinned"] is True
    assert unpinned.status_code == 200 and unpinned.json()["pinned"] is False
    assert Run.objects.get(pk=run.pk).pinned is False
    assert audited(org, "run.pinned") == [run.id]  # pinning a pinned run changes nothing: no event
    assert audited(org, "run.unpinned") == [run.id]


# --- bulk -----------------------------------------------------------------------------------------


@pytest.fixture
def mixed(workflow, actor):
    return {
        "done": GreeterRunFactory(
            workflow=workflow, actor=actor, status="completed", metadata={"batch": "b1"}
        ),
        "failed": GreeterRunFactory(
            workflow=workflow, actor=actor, status="failed", metadata={"batch": "b1"}
        ),
        "active": GreeterRunFactory(workflow=workflow, actor=actor, metadata={"batch": "b1"}),
        "other": GreeterRunFactory(workflow=workflow, actor=actor, metadata={"batch": "b2"}),
    }


def test_bulk_delete_by_ids_skips_active_runs(api_key_client, mixed, org):
    ids = [mixed["done"].id, mixed["failed"].id, mixed["active"].id, "run_unknown"]

    response = api_key_client.post("/api/v1/runs/bulk/delete", {"ids": ids}, format="json")

    assert response.status_code == 200, response.content
    assert response.json() == {"matched": 3, "affected": 2, "remaining": 0}
    assert set(Run.objects.values_list("pk", flat=True)) == {mixed["active"].id, mixed["other"].id}
    assert sorted(audited(org, "run.deleted")) == sorted([mixed["done"].id, mixed["failed"].id])


def test_bulk_delete_by_filter(api_key_client, mixed):
    response = api_key_client.post(
        "/api/v1/runs/bulk/delete", {"filter": {"metadata": {"batch": "b1"}, "status": ["completed"]}},
        format="json",
    )  # fmt: skip

    assert response.json() == {"matched": 1, "affected": 1, "remaining": 0}
    assert not Run.objects.filter(pk=mixed["done"].id).exists()


def test_bulk_cancel_by_filter(api_key_client, mixed, org):
    response = api_key_client.post(
        "/api/v1/runs/bulk/cancel", {"filter": {"metadata.batch": "b1"}, "reason": "bad batch"}, format="json"
    )

    assert response.status_code == 200, response.content
    assert response.json() == {"matched": 3, "affected": 1, "remaining": 0}
    assert Run.objects.get(pk=mixed["active"].id).status == "cancelled"
    assert Run.objects.get(pk=mixed["other"].id).status == "running"
    assert audited(org, "run.cancelled") == [mixed["active"].id]


def test_bulk_filter_cap_reports_remaining(api_key_client, mixed, monkeypatch):
    monkeypatch.setattr(bulk, "BULK_FILTER_MAX", 1)

    first = api_key_client.post(
        "/api/v1/runs/bulk/delete", {"filter": {"metadata.batch": "b1"}}, format="json"
    )
    second = api_key_client.post(
        "/api/v1/runs/bulk/delete", {"filter": {"metadata.batch": "b1"}}, format="json"
    )

    assert first.json() == {"matched": 3, "affected": 1, "remaining": 1}
    assert second.json() == {"matched": 2, "affected": 1, "remaining": 0}


def test_bulk_stops_at_its_time_budget(api_key_client, mixed, monkeypatch):
    monkeypatch.setattr(bulk, "BULK_TIME_BUDGET_SECONDS", -1)

    deleted = api_key_client.post("/api/v1/runs/bulk/delete", {"filter": {}}, format="json")
    cancelled = api_key_client.post("/api/v1/runs/bulk/cancel", {"filter": {}}, format="json")

    assert deleted.json() == {"matched": 4, "affected": 0, "remaining": 2}
    assert cancelled.json() == {"matched": 4, "affected": 0, "remaining": 2}


def test_bulk_never_touches_another_organisation(outsider_key_client, mixed):
    ids = [run.id for run in mixed.values()]

    deleted = outsider_key_client.post("/api/v1/runs/bulk/delete", {"ids": ids}, format="json")
    cancelled = outsider_key_client.post("/api/v1/runs/bulk/cancel", {"filter": {}}, format="json")

    assert deleted.json() == {"matched": 0, "affected": 0, "remaining": 0}
    assert cancelled.json()["affected"] == 0
    assert Run.objects.count() == 4 and not Run.objects.filter(status="cancelled").exists()


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"ids": ["run_a"], "filter": {}},
        {"ids": []},
        {"ids": [f"run_{i}" for i in range(501)]},
        {"ids": "run_a"},
        {"filter": {"status": "nope"}},
        {"filter": {"stauts": "failed"}},
        {"filter": []},
        {"ids": ["run_a"], "extra": 1},
    ],
)
def test_bulk_bad_bodies_are_400(api_key_client, mixed, body):
    response = api_key_client.post("/api/v1/runs/bulk/delete", body, format="json")

    assert response.status_code == 400, response.content
    assert Run.objects.count() == 4
