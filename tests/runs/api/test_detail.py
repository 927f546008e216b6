"""GET /runs/{id} (the API.md run object) and GET /runs/{id}/events."""

from decimal import Decimal

from runs.models import Run, StepRun
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import GreeterRunFactory, drain

RUN_FIELDS = {
    "id", "workflow_id", "workflow_name", "workflow_version", "status", "trigger", "input_data", "metadata",
    "env", "dry_run", "result", "error", "parent_run_id", "pinned", "pause_signal", "created_at",
    "started_at", "completed_at", "duration_ms", "total_tokens", "cost_usd", "step_count",
    "current_step_ids", "steps",
}  # fmt: skip
STEP_FIELDS = {
    "id", "step_id", "name", "type", "status", "attempt", "attempts", "input_data", "output_data", "error",
    "started_at", "completed_at", "duration_ms", "tokens", "cost_usd",
}  # fmt: skip

DOUBLE = {"type": "transform", "config": {"value": "{{ item * 2 }}"}}
LOOPING = {
    "name": "Looping",
    "steps": [
        {"id": "each", "type": "loop", "name": "Each", "config": {"items": "{{ [1,2,3] }}", "step": DOUBLE}},
        {"id": "after", "type": "transform", "config": {"value": "{{ steps.each.output }}"},
         "depends_on": ["each"]},
    ],
    "output": "{{ steps.after.output }}",
}  # fmt: skip


def test_detail_has_every_contract_field(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor, input_data={"who": "Ada"}, metadata={"k": "v"})
    drain()

    body = api_key_client.get(f"/api/v1/runs/{run.id}").json()

    assert set(body) >= RUN_FIELDS
    assert body["status"] == "completed" and body["result"] == "Hello Ada!"
    assert body["workflow_version"] == 1 and body["workflow_name"] == "Greeter"
    assert body["step_count"] == 2 and body["current_step_ids"] == []
    assert body["created_at"].endswith("Z") and body["completed_at"].endswith("Z")
    assert isinstance(body["duration_ms"], int) and body["duration_ms"] >= 0
    assert body["cost_usd"] == 0 and body["total_tokens"] == 0
    hello = body["steps"][0]
    assert set(hello) >= STEP_FIELDS
    assert (hello["step_id"], hello["type"], hello["status"], hello["attempt"]) == (
        "hello", "transform", "completed", 1
    )  # fmt: skip
    assert hello["output_data"] == "Hello Ada"
    assert hello["tokens"] == {"prompt": 0, "completion": 0, "total": 0}
    assert hello["attempts"][0]["attempt"] == 1 and hello["attempts"][0]["status"] == "completed"
    assert isinstance(hello["duration_ms"], int)


def test_tokens_and_cost_are_numbers(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)
    drain()
    StepRun.objects.filter(run=run, step_id="hello").update(
        tokens={"prompt": 10, "completion": 5, "total": 15}, cost_usd=Decimal("0.0125")
    )
    Run.objects.filter(pk=run.pk).update(total_tokens=15, cost_usd=Decimal("0.0125"))

    body = api_key_client.get(f"/api/v1/runs/{run.id}").json()

    assert body["total_tokens"] == 15 and body["cost_usd"] == 0.0125
    assert body["steps"][0]["tokens"] == {"prompt": 10, "completion": 5, "total": 15}
    assert body["steps"][0]["cost_usd"] == 0.0125


def test_loop_iterations_are_listed_under_the_loop_step(api_key_client, org, actor):
    looping = WorkflowFactory(organization=org, actor=actor, definition=LOOPING)
    run = GreeterRunFactory(workflow=looping, actor=actor, input_data={})
    drain()

    body = api_key_client.get(f"/api/v1/runs/{run.id}").json()

    assert body["status"] == "completed", body
    assert body["step_count"] == 2
    loop, after = body["steps"]
    assert (loop["step_id"], after["step_id"]) == ("each", "after")
    assert loop["iteration_count"] == 3
    assert [it["iteration"] for it in loop["iterations"]] == [0, 1, 2]
    assert [it["output_data"] for it in loop["iterations"]] == [2, 4, 6]
    assert all(it["status"] == "completed" and it["tokens"]["total"] == 0 for it in loop["iterations"])
    assert "iterations" not in after


def test_current_step_ids_lists_steps_in_flight(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    body = api_key_client.get(f"/api/v1/runs/{run.id}").json()

    assert body["status"] == "running"
    assert body["current_step_ids"] == ["hello"]
    assert body["duration_ms"] is None


def test_failed_run_shows_the_error(api_key_client, org, actor):
    failing = WorkflowFactory(organization=org, actor=actor, definition={"name": "Failing", "steps": [
        {"id": "boom", "type": "end", "config": {"status": "failed", "output": "nope"}}]})  # fmt: skip
    run = GreeterRunFactory(workflow=failing, actor=actor, input_data={})
    drain()

    body = api_key_client.get(f"/api/v1/runs/{run.id}").json()

    assert body["status"] == "failed"
    assert body["error"] is None or set(body["error"]) >= {"code", "message"}


def test_unknown_and_foreign_runs_are_404(api_key_client, outsider_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    for client, run_id in ((api_key_client, "run_nope"), (outsider_key_client, run.id)):
        response = client.get(f"/api/v1/runs/{run_id}")
        assert response.status_code == 404
        assert response.json()["error"] == {**response.json()["error"], "code": "run_not_found",
                                            "message": f"Run {run_id} was not found."}  # fmt: skip


def test_detail_query_count_does_not_grow_with_iterations(
    api_key_client, org, actor, django_assert_max_num_queries
):
    looping = WorkflowFactory(organization=org, actor=actor, definition=LOOPING)
    run = GreeterRunFactory(workflow=looping, actor=actor, input_data={})
    drain()

    with django_assert_max_num_queries(12):
        assert api_key_client.get(f"/api/v1/runs/{run.id}").status_code == 200


def test_events_are_paginated_in_sequence(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)
    drain()
    total = run.events.count()
    assert total >= 5

    first = api_key_client.get(f"/api/v1/runs/{run.id}/events?limit=2").json()
    rest = api_key_client.get(f"/api/v1/runs/{run.id}/events?limit=500&offset=2").json()

    assert (first["total"], first["limit"], first["offset"]) == (total, 2, 0)
    seqs = [e["seq"] for e in first["events"] + rest["events"]]
    assert seqs == list(range(1, total + 1))
    assert first["events"][0]["type"] == "run_queued" and first["events"][0]["step_id"] is None
    assert set(first["events"][0]) == {"seq", "type", "step_id", "data", "created_at"}
    step_events = [e for e in rest["events"] if e["type"] == "step_completed"]
    assert {e["step_id"] for e in step_events} == {"hello", "shout"}


def test_events_after_seq(api_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)
    drain()
    total = run.events.count()

    body = api_key_client.get(f"/api/v1/runs/{run.id}/events?after_seq=3").json()

    assert [e["seq"] for e in body["events"]] == list(range(4, total + 1))
    assert body["total"] == total - 3


def test_events_bad_parameters_and_tenancy(api_key_client, outsider_key_client, workflow, actor):
    run = GreeterRunFactory(workflow=workflow, actor=actor)

    assert api_key_client.get(f"/api/v1/runs/{run.id}/events?after_seq=-1").status_code == 400
    assert api_key_client.get(f"/api/v1/runs/{run.id}/events?after=2").status_code == 400
    assert api_key_client.get(f"/api/v1/runs/{run.id}/events?limit=501").status_code == 400
    assert outsider_key_client.get(f"/api/v1/runs/{run.id}/events").status_code == 404
