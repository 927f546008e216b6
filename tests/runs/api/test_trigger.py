"""POST /workflows/{ref}/run: input aliases, options, versions, workflow states, validation and wait."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from audit.models import AuditEvent
from runs.models import Run, StepRun
from tests.factories import WorkflowFactory
from tests.runs.api.conftest import GREETER, GreeterFactory, drain
from workflows.services import workflow_publish, workflow_set_status, workflow_update


def trigger(client, ref, body=None, **kwargs):
    return client.post(
        f"/api/v1/workflows/{ref}/run", body if body is not None else {}, format="json", **kwargs
    )


@pytest.mark.parametrize("alias", ["input_data", "data", "input"])
def test_each_input_alias_triggers_a_queued_run(api_key_client, workflow, alias):
    response = trigger(api_key_client, workflow.id, {alias: {"who": "Ada"}})

    assert response.status_code == 202, response.content
    body = response.json()
    run = Run.objects.get(pk=body["run_id"])
    assert body["status"] == run.status == "running"  # advanced at once: its first step is dispatched
    assert run.input_data == {"who": "Ada"}
    assert body["run"]["id"] == run.id
    assert body["run"]["workflow_version"] == 1
    assert body["run"]["trigger"] == "api"
    assert [step["step_id"] for step in body["run"]["steps"]] == ["hello", "shout"]
    assert body["run"]["current_step_ids"] == ["hello"]


def test_two_input_aliases_are_refused(api_key_client, workflow):
    response = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}, "data": {"who": "B"}})

    assert response.status_code == 400
    assert set(response.json()["error"]["details"]["fields"]) == {"input_data", "data"}
    assert not Run.objects.exists()


def test_trigger_by_slug_records_options_and_the_principal(api_key_client, workflow, org):
    response = trigger(
        api_key_client,
        workflow.slug,
        {
            "input_data": {"who": "Ada"},
            "metadata": {"customer": "acme", "priority": 2, "vip": True},
            "dry_run": True,
            "env": "staging",
            "model": "gpt-4o-mini",
        },
    )

    assert response.status_code == 202, response.content
    run = Run.objects.get(pk=response.json()["run_id"])
    assert run.metadata == {"customer": "acme", "priority": 2, "vip": True}
    assert (run.dry_run, run.env, run.model) == (True, "staging", "gpt-4o-mini")
    assert run.triggered_by_type == "api_key" and run.triggered_by.startswith("key_")
    shown = response.json()["run"]
    assert (shown["model"], shown["env"], shown["dry_run"]) == ("gpt-4o-mini", "staging", True)
    assert shown["triggered_by"] == {"type": "api_key", "id": run.triggered_by}
    event = AuditEvent.objects.get(organization=org, event="run.triggered")
    assert event.target_id == run.id


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"input_data": [1]}, "input_data"),
        ({"input_data": {"who": "A"}, "unknown": 1}, "unknown"),
        ({"input_data": {"who": "A"}, "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"input_data": {"who": "A"}, "metadata": {"k": "x" * 513}}, "metadata"),
        ({"input_data": {"who": "A"}, "metadata": {"k" * 65: "v"}}, "metadata"),
        ({"input_data": {"who": "A"}, "metadata": {"k": {"nested": 1}}}, "metadata"),
        ({"input_data": {"who": "A"}, "metadata": ["k"]}, "metadata"),
        ({"input_data": {"who": "A"}, "dry_run": "yes"}, "dry_run"),
        ({"input_data": {"who": "A"}, "dry_run": "true"}, "dry_run"),
        ({"input_data": '{"who": "A"}'}, "input_data"),
        ({"input_data": {"who": "A"}, "metadata": '{"k": "v"}'}, "metadata"),
        ({"input_data": {"who": "A"}, "env": "e" * 101}, "env"),
        ({"input_data": {"who": "A"}, "model": "m" * 201}, "model"),
        ({"input_data": {"who": "A"}, "version": "newest"}, "version"),
        ({"input_data": {"who": "A"}, "version": 0}, "version"),
        ({"input_data": {"who": "A"}, "version": True}, "version"),
        ({"input_data": {"who": "A"}, "wait": 0}, "wait"),
        ({"input_data": {"who": "A"}, "wait": 301}, "wait"),
        ({"input_data": {"who": "A"}, "wait": "soon"}, "wait"),
        ({"input_data": {"who": "A"}, "wait": True}, "wait"),
    ],
)
def test_bad_trigger_bodies_are_400_with_the_field(api_key_client, workflow, body, field):
    response = trigger(api_key_client, workflow.id, body)

    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid_request"
    assert field in error["details"]["fields"]
    assert not Run.objects.exists()


def test_invalid_input_is_422_with_failing_fields(api_key_client, workflow):
    response = trigger(api_key_client, workflow.id, {"input_data": {"count": "three"}})

    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert set(error["details"]["fields"]) == {"who", "count"}
    assert error["details"]["fields"]["who"] == ["This field is required."]
    assert error["details"]["errors"]  # run_create's sentences stay
    assert not Run.objects.exists()


def test_no_input_at_all_means_an_empty_object(api_key_client, org, actor):
    free = WorkflowFactory(
        organization=org, actor=actor, definition={**GREETER, "name": "Free", "inputs": {"type": "object"}}
    )

    response = trigger(api_key_client, free.id, {})

    assert response.status_code == 202, response.content
    assert Run.objects.get().input_data == {}


def test_version_selection(api_key_client, workflow, actor):
    only = [{"id": "only", "type": "transform", "config": {"value": 1}}]
    changed = {**GREETER, "steps": only, "output": "{{ steps.only.output }}"}
    workflow, _ = workflow_update(workflow=workflow, actor=actor, definition=changed)
    workflow = workflow_publish(workflow=workflow, actor=actor, version=1)

    by_default = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}}).json()["run"]
    published = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}, "version": "published"})
    numbered = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}, "version": "2"})
    missing = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}, "version": 7})

    assert by_default["workflow_version"] == 2 and [s["step_id"] for s in by_default["steps"]] == ["only"]
    assert published.json()["run"]["workflow_version"] == 1
    assert numbered.json()["run"]["workflow_version"] == 2
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "version_not_found"


def test_unpublished_workflow_has_no_published_version(api_key_client, workflow):
    response = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}, "version": "published"})

    assert response.status_code == 404
    assert response.json()["error"]["code"] == "version_not_found"


def test_paused_workflow_is_409_and_archived_is_404(api_key_client, workflow, actor):
    workflow_set_status(workflow=workflow, actor=actor, status="active")
    workflow_set_status(workflow=workflow, actor=actor, status="paused")
    paused = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}})
    workflow_set_status(workflow=workflow, actor=actor, status="archived")
    archived = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}})

    assert paused.status_code == 409 and paused.json()["error"]["code"] == "workflow_disabled"
    assert archived.status_code == 404 and archived.json()["error"]["code"] == "workflow_not_found"
    assert not Run.objects.exists()


def test_unknown_and_foreign_workflows_are_404(api_key_client, outsider_key_client, workflow):
    assert trigger(api_key_client, "no-such-flow").json()["error"]["code"] == "workflow_not_found"
    foreign = trigger(outsider_key_client, workflow.id, {"input_data": {"who": "A"}})
    assert foreign.status_code == 404 and foreign.json()["error"]["code"] == "workflow_not_found"


def test_monthly_run_limit_is_402(api_key_client, workflow, org):
    org.monthly_run_limit = 1
    org.save(update_fields=["monthly_run_limit"])

    first = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}})
    second = trigger(api_key_client, workflow.id, {"input_data": {"who": "A"}})

    assert first.status_code == 202
    assert second.status_code == 402 and second.json()["error"]["code"] == "quota_exceeded"
    assert Run.objects.count() == 1


AGENT_FLOW = {
    "name": "Agentic",
    "steps": [
        {
            "id": "each",
            "type": "loop",
            "config": {
                "items": "{{ [1, 2] }}",
                "step": {"type": "agent_task", "config": {"model": "m", "goal": "Say {{ item }}"}},
            },
        }
    ],
}


def test_agent_steps_without_an_llm_provider_are_400(api_key_client, org, actor):
    agentic = WorkflowFactory(organization=org, actor=actor, definition=AGENT_FLOW)

    response = trigger(api_key_client, agentic.id, {})

    assert response.status_code == 400, response.content
    assert response.json()["error"]["code"] == "no_llm_provider"
    assert not Run.objects.exists()


def test_wait_returns_200_with_the_finished_run(api_key_client, workflow, settings, transactional_db):
    settings.BATON_ENGINE_DISPATCH = "inline"

    response = trigger(api_key_client, workflow.id, {"input_data": {"who": "Ada"}, "wait": 5})

    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "completed"
    assert body["run"]["result"] == "Hello Ada!"
    assert [step["status"] for step in body["run"]["steps"]] == ["completed", "completed"]
    assert body["run"]["duration_ms"] is not None


def test_wait_times_out_with_202_and_the_unfinished_run(api_key_client, workflow):
    response = trigger(api_key_client, workflow.id, {"input_data": {"who": "Ada"}, "wait": 0.3})

    assert response.status_code == 202
    assert response.json()["status"] == "running"
    drain()
    assert Run.objects.get().status == "completed"


def test_trigger_query_count_is_bounded(api_key_client, workflow):
    with CaptureQueriesContext(connection) as ctx:
        response = trigger(api_key_client, workflow.id, {"input_data": {"who": "Ada"}})
    assert response.status_code == 202
    assert len(ctx.captured_queries) < 60, [q["sql"][:120] for q in ctx.captured_queries]


# --- the 202 body: the run as its creation left it, without reading it back ------------------------------

LOOP = {
    "id": "each",
    "type": "loop",
    "config": {"items": "{{ inputs.tags }}", "step": {"type": "transform", "config": {"value": 1}}},
}
FAILING_WHEN = "{{ inputs.count // 0 > 1 }}"  # valid, but fails when evaluated


def _shown_as_read(client, body) -> None:
    """The trigger's body is the run detail a GET returns at once (nothing was executed since: manual
    dispatch), to the value and type (JSON text with sorted keys: PostgreSQL's jsonb reorders keys)."""
    shown = client.get(f"/api/v1/runs/{body['run_id']}")
    assert shown.status_code == 200
    assert body["status"] == shown.json()["status"]
    assert body["run"] == shown.json()
    assert json.dumps(body["run"], sort_keys=True) == json.dumps(shown.json(), sort_keys=True)


def _trigger_reading_steps(client, ref, body):
    """The trigger's response, and the SELECTs it made of the step runs' table."""
    with CaptureQueriesContext(connection) as ctx:
        response = trigger(client, ref, body)
    table = connection.ops.quote_name(StepRun._meta.db_table)
    return response, [
        q["sql"] for q in ctx.captured_queries if q["sql"].startswith("SELECT") and table in q["sql"]
    ]


@pytest.mark.parametrize(
    "steps, options, status",
    [
        pytest.param(GREETER["steps"], {}, "running", id="chain"),
        pytest.param(
            [
                {"id": "a", "type": "transform", "config": {"value": 1}},
                {"id": "b", "type": "transform", "config": {"value": 2}, "when": "{{ inputs.count > 5 }}"},
                {"id": "c", "type": "transform", "config": {"value": 3}, "depends_on": ["a", "b"]},
                {
                    "id": "d",
                    "type": "transform",
                    "config": {"value": 4},
                    "when": FAILING_WHEN,
                    "on_failure": "continue",
                },
            ],
            {},
            "running",
            id="roots-skipped-and-failed-by-when",
        ),
        pytest.param([LOOP], {}, "running", id="loop"),
        pytest.param(GREETER["steps"], {"env": "production"}, "awaiting_approval", id="gated"),
        pytest.param(GREETER["steps"], {"dry_run": True, "env": "staging"}, "running", id="dry-run"),
        pytest.param(
            [
                {"id": "a", "type": "transform", "config": {"value": 1}, "when": FAILING_WHEN},
                {"id": "b", "type": "transform", "config": {"value": 2}, "depends_on": ["a"]},
            ],
            {},
            "failed",
            id="failed-at-once",
        ),
        pytest.param(
            [{"id": "a", "type": "transform", "config": {"value": 1}, "when": "{{ inputs.count < 0 }}"}],
            {},
            "completed",
            id="done",
        ),
    ],
)
def test_the_202_body_is_the_run_a_get_shows(api_key_client, org, actor, steps, options, status):
    workflow = WorkflowFactory(
        organization=org,
        actor=actor,
        definition={"name": "Shapes", "inputs": GREETER["inputs"], "steps": steps},
    )
    body = {
        "input_data": {"who": "Ada", "count": 7, "tags": ["x", 2.5, None, {"z": 1, "a": [1.0]}]},
        "metadata": {"zeta": "last", "alpha": 1, "mid": True},
        **options,
    }

    response, step_reads = _trigger_reading_steps(api_key_client, workflow.id, body)

    assert response.status_code == 202, response.content
    assert response.json()["status"] == status
    _shown_as_read(api_key_client, response.json())
    # Written from the rows in hand, except for a run that finished at once: its unstarted steps were
    # cancelled by an UPDATE, so the run is read back.
    assert bool(step_reads) == (status in ("completed", "failed"))


@pytest.mark.parametrize("on_limit", ["queue", "cancel_running"])
def test_the_202_body_of_a_limited_workflows_run_is_the_run_a_get_shows(api_key_client, org, actor, on_limit):
    limited = GreeterFactory(
        organization=org, actor=actor, concurrency={"limit": 1, "key": None, "on_limit": on_limit}
    )
    first = trigger(api_key_client, limited.id, {"input_data": {"who": "A"}}).json()
    _shown_as_read(api_key_client, first)

    second = trigger(api_key_client, limited.id, {"input_data": {"who": "B"}}).json()

    # cancel_running: the first run had no step running, so it is cancelled at once and the second starts
    assert second["status"] == ("queued" if on_limit == "queue" else "running")
    _shown_as_read(api_key_client, second)
    expected = "running" if on_limit == "queue" else "cancelled"
    assert api_key_client.get(f"/api/v1/runs/{first['run_id']}").json()["status"] == expected


def test_the_202_body_of_a_multipart_trigger_is_the_run_a_get_shows(api_key_client, workflow):
    from django.core.files.uploadedfile import SimpleUploadedFile

    attachment = SimpleUploadedFile("report.csv", b"a,b\n1,2\n", content_type="text/csv")
    response = api_key_client.post(
        f"/api/v1/workflows/{workflow.id}/run", {"attachment": attachment, "who": "Ada"}, format="multipart"
    )

    assert response.status_code == 202, response.content
    assert response.json()["run"]["input_data"]["attachment"]["name"] == "report.csv"
    _shown_as_read(api_key_client, response.json())


def test_the_202_body_is_written_without_reading_the_run_back(api_key_client, workflow):
    response, step_reads = _trigger_reading_steps(api_key_client, workflow.id, {"input_data": {"who": "Ada"}})

    assert response.status_code == 202
    assert step_reads == []  # the steps were neither read for the advance nor for the response
    _shown_as_read(api_key_client, response.json())


def test_with_inline_dispatch_the_202_body_shows_the_steps_executed_since(
    api_key_client, workflow, settings, transactional_db
):
    settings.BATON_ENGINE_DISPATCH = "inline"  # this process executes the ready steps after the commit

    response = trigger(api_key_client, workflow.id, {"input_data": {"who": "Ada"}})

    assert response.status_code == 202
    assert response.json()["status"] == "completed"
    assert [step["status"] for step in response.json()["run"]["steps"]] == ["completed", "completed"]
    _shown_as_read(api_key_client, response.json())
