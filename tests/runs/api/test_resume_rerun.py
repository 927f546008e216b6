"""POST /runs/{id}/pause, /resume (re-running in place) and /rerun, end to end through the API with the engine
in manual mode and real HTTP steps against a counting server on 127.0.0.1: the counter proves which steps
ran again."""

import pytest

from audit.models import AuditEvent
from runs.models import Run, RunEvent, StepRun
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import drain
from tests.runs.support.http_server import running_server


@pytest.fixture
def server(settings):
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    with running_server() as srv:
        yield srv


def pipeline(server, fail=1):
    """fetch (counted) → check (fails its first `fail` calls) → report (uses fetch's output)."""
    return {
        "name": "Pipeline",
        "steps": [
            {"id": "fetch", "type": "http_request", "config": {"url": f"{server.base}/json"}},
            {"id": "check", "type": "http_request", "config": {"url": f"{server.base}/flaky?fail={fail}"},
             "depends_on": ["fetch"]},
            {"id": "report", "type": "transform", "config": {"value": "{{ steps.fetch.output.body.items }}"},
             "depends_on": ["check"]},
        ],
        "output": "{{ steps.report.output }}",
    }  # fmt: skip


def trigger(client, workflow, **body):
    response = client.post(f"/api/v1/workflows/{workflow.id}/run", {"input_data": {}, **body}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["run_id"]


def detail(client, run_id) -> dict:
    response = client.get(f"/api/v1/runs/{run_id}")
    assert response.status_code == 200, response.content
    return response.json()


def steps(body) -> dict:
    return {step["step_id"]: step for step in body["steps"]}


def audited(org, event):
    return list(AuditEvent.objects.filter(organization=org, event=event).order_by("seq"))


@pytest.fixture
def failed_run(api_key_client, org, actor, server):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server))
    run_id = trigger(api_key_client, workflow)
    drain()
    body = detail(api_key_client, run_id)
    assert body["status"] == "failed" and body["error"]["step_id"] == "check"
    assert server.count("/json") == 1 and server.count("/flaky") == 1
    return workflow, run_id


# --- resume in place ------------------------------------------------------------------------------------


def test_resume_of_a_failed_run_reruns_only_the_failed_step_and_what_follows(
    api_key_client, org, server, failed_run
):
    _, run_id = failed_run
    first_fetch = StepRun.objects.get(run_id=run_id, step_id="fetch")

    response = api_key_client.post(f"/api/v1/runs/{run_id}/resume", {}, format="json")
    assert response.status_code == 202, response.content
    assert response.json()["status"] in ("queued", "running")
    drain()

    body = detail(api_key_client, run_id)
    assert body["status"] == "completed", body["error"]
    assert body["result"] == [1, 2]  # the kept upstream output feeds the re-run steps
    assert server.count("/json") == 1  # fetch did not run again
    assert server.count("/flaky") == 2
    rows = steps(body)
    assert rows["fetch"]["attempt"] == 1 and rows["fetch"]["id"] == first_fetch.id
    assert rows["check"]["attempt"] == 2  # the attempt history continues
    assert [a["status"] for a in rows["check"]["attempts"]] == ["failed", "completed"]
    assert body["error"] is None and body["completed_at"] is not None
    [event] = audited(org, "run.resumed")
    assert event.target_id == run_id and event.data["steps"] == ["check", "report"]


def test_resume_from_a_step_reruns_it_and_everything_after_it(api_key_client, server, failed_run):
    _, run_id = failed_run
    response = api_key_client.post(f"/api/v1/runs/{run_id}/resume", {"from_step": "fetch"}, format="json")
    assert response.status_code == 202, response.content
    drain()
    assert detail(api_key_client, run_id)["status"] == "completed"
    assert server.count("/json") == 2 and server.count("/flaky") == 2


def test_resume_of_a_cancelled_run(api_key_client, org, actor, server):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    run_id = trigger(api_key_client, workflow)
    assert api_key_client.post(f"/api/v1/runs/{run_id}/cancel", {}, format="json").status_code in (200, 202)
    drain()
    assert detail(api_key_client, run_id)["status"] == "cancelled"
    assert server.count("/json") == 0

    assert api_key_client.post(f"/api/v1/runs/{run_id}/resume", {}, format="json").status_code == 202
    drain()
    body = detail(api_key_client, run_id)
    assert body["status"] == "completed" and body["result"] == [1, 2]
    assert server.count("/json") == 1


@pytest.mark.parametrize("status", ["running", "completed"])
def test_resume_of_a_run_that_is_not_paused_failed_or_cancelled_is_409(
    api_key_client, org, actor, server, status
):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    run_id = trigger(api_key_client, workflow)
    if status == "completed":
        drain()
    response = api_key_client.post(f"/api/v1/runs/{run_id}/resume", {}, format="json")
    assert response.status_code == 409, response.content
    assert response.json()["error"]["code"] == "run_not_resumable"


def test_resume_bad_bodies(api_key_client, failed_run):
    _, run_id = failed_run
    url = f"/api/v1/runs/{run_id}/resume"
    unknown = api_key_client.post(url, {"from_step": "nope"}, format="json")
    assert unknown.status_code == 400 and "from_step" in unknown.json()["error"]["details"]["fields"]
    mixed = api_key_client.post(
        url, {"type": "collect_inputs", "data": {}, "from_step": "fetch"}, format="json"
    )
    assert mixed.status_code == 400 and "from_step" in mixed.json()["error"]["details"]["fields"]
    typo = api_key_client.post(url, {"form_step": "fetch"}, format="json")
    assert typo.status_code == 400
    assert Run.objects.get(pk=run_id).status == "failed"  # nothing changed


# --- pause ------------------------------------------------------------------------------------------------


def test_pause_stops_new_steps_and_resume_continues_where_it_stopped(api_key_client, org, actor, server):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    run_id = trigger(api_key_client, workflow)
    # The first step is queued (dispatched, not yet claimed): the pause lands before a worker takes it.
    response = api_key_client.post(f"/api/v1/runs/{run_id}/pause", {}, format="json")
    assert response.status_code == 202, response.content  # a step is still queued
    drain()  # the worker finds the run pausing: it puts the step back and the run is paused
    body = detail(api_key_client, run_id)
    assert body["status"] == "paused"
    assert server.count("/json") == 0 and steps(body)["fetch"]["status"] == "pending"
    assert [e.type for e in RunEvent.objects.filter(run_id=run_id).order_by("seq")][-1] == "run_paused"

    again = api_key_client.post(f"/api/v1/runs/{run_id}/pause", {}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "paused"  # idempotent
    assert len(audited(org, "run.paused")) == 1

    assert api_key_client.post(f"/api/v1/runs/{run_id}/resume", {}, format="json").status_code == 202
    drain()
    body = detail(api_key_client, run_id)
    assert body["status"] == "completed" and server.count("/json") == 1
    assert len(audited(org, "run.resumed")) == 1


def test_pause_while_a_step_runs_lets_it_finish_then_pauses(api_key_client, org, actor, server):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    run_id = trigger(api_key_client, workflow)
    StepRun.objects.filter(run_id=run_id, step_id="fetch").update(status="running")
    response = api_key_client.post(f"/api/v1/runs/{run_id}/pause", {}, format="json")
    assert response.status_code == 202 and response.json()["status"] == "running"
    # The running step finishes (here: recorded as the worker would), and nothing new starts.
    from runs.engine.advance import advance

    StepRun.objects.filter(run_id=run_id, step_id="fetch").update(
        status="completed", output_data={"body": {}}
    )
    advance(run_id)
    assert Run.objects.get(pk=run_id).status == "paused"
    assert StepRun.objects.get(run_id=run_id, step_id="check").status == "pending"
    drain()  # the trigger's doorbell for `fetch`: the step is no longer queued, nothing runs
    assert server.count("/json") == server.count("/flaky") == 0
    assert Run.objects.get(pk=run_id).status == "paused"


def test_pause_of_a_queued_run_pauses_it_at_once_and_resume_requeues_it(api_key_client, org, actor, server):
    org.max_concurrent_runs = 1
    org.save(update_fields=["max_concurrent_runs"])
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    first = trigger(api_key_client, workflow)
    second = trigger(api_key_client, workflow)
    assert detail(api_key_client, second)["status"] == "queued"
    response = api_key_client.post(f"/api/v1/runs/{second}/pause", {}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "paused"
    drain()
    assert detail(api_key_client, first)["status"] == "completed"
    assert detail(api_key_client, second)["status"] == "paused"  # not admitted while paused
    assert api_key_client.post(f"/api/v1/runs/{second}/resume", {}, format="json").status_code == 202
    drain()
    assert detail(api_key_client, second)["status"] == "completed"


def test_pause_of_a_finished_run_is_409(api_key_client, failed_run):
    _, run_id = failed_run
    response = api_key_client.post(f"/api/v1/runs/{run_id}/pause", {}, format="json")
    assert response.status_code == 409 and response.json()["error"]["code"] == "run_not_pausable"


# --- rerun ------------------------------------------------------------------------------------------------


def test_rerun_from_failed_is_a_new_linked_run_reusing_upstream_outputs(
    api_key_client, org, server, failed_run
):
    _, run_id = failed_run
    response = api_key_client.post(f"/api/v1/runs/{run_id}/rerun", {"from_step": "failed"}, format="json")
    assert response.status_code == 202, response.content
    new_id = response.json()["run_id"]
    assert new_id != run_id and response.json()["run"]["parent_run_id"] == run_id
    drain()

    body = detail(api_key_client, new_id)
    assert body["status"] == "completed", body["error"]
    assert body["trigger"] == "rerun" and body["result"] == [1, 2]
    assert server.count("/json") == 1 and server.count("/flaky") == 2  # fetch was reused, not called
    rows = steps(body)
    assert rows["fetch"]["status"] == "completed" and rows["fetch"]["attempt"] == 0
    assert rows["fetch"]["output_data"] == StepRun.objects.get(run_id=run_id, step_id="fetch").output_data
    assert detail(api_key_client, run_id)["child_run_ids"] == [new_id]
    assert Run.objects.get(pk=run_id).status == "failed"  # the original is untouched
    [event] = [e for e in audited(org, "run.triggered") if e.target_id == new_id]
    assert event.data["parent_run_id"] == run_id and event.data["reused_steps"] == ["fetch"]


def test_rerun_from_start_runs_everything_again(api_key_client, server, failed_run):
    _, run_id = failed_run
    response = api_key_client.post(f"/api/v1/runs/{run_id}/rerun", {}, format="json")
    assert response.status_code == 202
    drain()
    assert detail(api_key_client, response.json()["run_id"])["status"] == "completed"
    assert server.count("/json") == 2


def test_rerun_from_a_named_step_keeps_the_steps_before_it(api_key_client, server, failed_run):
    _, run_id = failed_run
    response = api_key_client.post(f"/api/v1/runs/{run_id}/rerun", {"from_step": "check"}, format="json")
    assert response.status_code == 202
    drain()
    body = detail(api_key_client, response.json()["run_id"])
    assert body["status"] == "completed" and server.count("/json") == 1


def test_rerun_on_the_latest_version_reruns_changed_steps(api_key_client, org, actor, server, failed_run):
    from workflows.services import workflow_update

    workflow, run_id = failed_run
    definition = pipeline(server)
    definition["steps"].append({"id": "extra", "type": "transform", "config": {"value": 1}})
    workflow_update(workflow=workflow, actor=actor, definition=definition)

    pinned = api_key_client.post(f"/api/v1/runs/{run_id}/rerun", {"from_step": "failed"}, format="json")
    latest = api_key_client.post(
        f"/api/v1/runs/{run_id}/rerun", {"from_step": "failed", "version": "latest"}, format="json"
    )
    assert pinned.status_code == latest.status_code == 202
    assert pinned.json()["run"]["workflow_version"] == 1 and latest.json()["run"]["workflow_version"] == 2
    drain()
    new = steps(detail(api_key_client, latest.json()["run_id"]))
    assert new["extra"]["status"] == "completed" and new["extra"]["attempt"] == 1  # new in v2: it ran
    assert new["fetch"]["attempt"] == 0  # same id and type: reused
    assert server.count("/json") == 1


def test_rerun_errors(api_key_client, org, actor, server):
    workflow = WorkflowFactory(organization=org, actor=actor, definition=pipeline(server, fail=0))
    run_id = trigger(api_key_client, workflow)
    drain()
    url = f"/api/v1/runs/{run_id}/rerun"
    nothing = api_key_client.post(url, {"from_step": "failed"}, format="json")
    assert nothing.status_code == 409 and nothing.json()["error"]["code"] == "run_not_failed"
    unknown = api_key_client.post(url, {"from_step": "nope"}, format="json")
    assert unknown.status_code == 400 and "from_step" in unknown.json()["error"]["details"]["fields"]
    version = api_key_client.post(url, {"version": "7"}, format="json")
    assert version.status_code == 400
    workflow.status = "paused"
    workflow.save(update_fields=["status"])
    paused = api_key_client.post(url, {}, format="json")
    assert paused.status_code == 409 and paused.json()["error"]["code"] == "workflow_disabled"
    assert Run.objects.filter(parent_run_id=run_id).count() == 0


# --- access and tenancy ---------------------------------------------------------------------------------


@pytest.mark.parametrize("action", ["pause", "resume", "rerun"])
def test_another_organisation_gets_404(outsider_key_client, failed_run, action):
    _, run_id = failed_run
    response = outsider_key_client.post(f"/api/v1/runs/{run_id}/{action}", {}, format="json")
    assert response.status_code == 404 and response.json()["error"]["code"] == "run_not_found"


@pytest.mark.parametrize("action", ["pause", "resume", "rerun"])
def test_a_key_without_runs_write_is_403(make_key_client, failed_run, action):
    _, run_id = failed_run
    client = make_key_client(["runs:read"])
    response = client.post(f"/api/v1/runs/{run_id}/{action}", {}, format="json")
    assert response.status_code == 403 and response.json()["error"]["code"] == "insufficient_scope"


def test_a_viewer_cannot_resume(make_jwt_client, org, viewer, failed_run):
    _, run_id = failed_run
    response = make_jwt_client(viewer, org).post(f"/api/v1/runs/{run_id}/resume", {}, format="json")
    assert response.status_code == 403
    assert Run.objects.get(pk=run_id).status == "failed"


def test_the_openapi_schema_lists_pause_resume_and_rerun(db):
    from drf_spectacular.generators import SchemaGenerator

    paths = SchemaGenerator().get_schema(public=True)["paths"]
    for action in ("pause", "resume", "rerun"):
        assert "post" in paths[f"/api/v1/runs/{{run_id}}/{action}"]
