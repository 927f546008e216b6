"""Idempotency-Key on POST /workflows/{ref}/run: replay, reuse with another body, release on error, and
concurrent identical requests against real HTTP servers (threads in one process, and two processes)."""

import json

import httpx
import pytest

from accounts.principal import Principal
from config.models import IdempotencyRecord
from runs.models import Run
from tests.config.test_idempotency_race import (  # noqa: F401  (server fixtures used by name)
    _baton_server,
    _setup,
    baton_server,
    fire_at_once,
)
from tests.conftest import key_for
from tests.factories import UserFactory, make_org
from tests.runs.api.conftest import GREETER, GreeterFactory

CONCURRENCY = 20


def trigger(client, workflow, body, key):
    return client.post(f"/api/v1/workflows/{workflow.id}/run", body, format="json", HTTP_IDEMPOTENCY_KEY=key)


def test_same_key_and_body_replays_the_first_response(api_key_client, workflow):
    first = trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-1")
    second = trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-1")

    assert first.status_code == second.status_code == 202
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json() == first.json()
    assert Run.objects.count() == 1


def test_same_key_with_another_body_is_422(api_key_client, workflow):
    trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-2")

    response = trigger(api_key_client, workflow, {"input_data": {"who": "B"}}, "k-2")

    assert response.status_code == 422 and response.json()["error"]["code"] == "idempotency_key_reused"
    assert Run.objects.count() == 1


def test_a_failed_trigger_releases_the_key(api_key_client, workflow):
    failed = trigger(api_key_client, workflow, {"input_data": {}}, "k-3")
    fixed_elsewhere = trigger(api_key_client, workflow, {"input_data": {}}, "k-3")

    assert failed.status_code == fixed_elsewhere.status_code == 422
    assert "Idempotent-Replayed" not in fixed_elsewhere.headers
    assert trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-3").status_code == 202


def _check_one_run(responses) -> str:
    accepted = [r for r in responses if r.status_code == 202]
    in_flight = [r for r in responses if r.status_code == 409]
    assert len(accepted) + len(in_flight) == CONCURRENCY, [(r.status_code, r.text[:200]) for r in responses]
    assert len([r for r in accepted if r.headers.get("Idempotent-Replayed") != "true"]) == 1
    assert len({r.json()["run_id"] for r in accepted}) == 1
    assert all(r.json()["error"]["code"] == "idempotency_request_in_progress" for r in in_flight)
    return accepted[0].json()["run_id"]


@pytest.mark.slow
def test_concurrent_identical_triggers_create_one_run_live_server(live_server, settings):
    settings.BATON_ENGINE_DISPATCH = "manual"
    owner = UserFactory()
    org = make_org(name="Racers", plan="enterprise", owner=owner)
    workflow = GreeterFactory(organization=org, actor=Principal(organization=org, user=owner, role="owner"))
    headers = {"Authorization": f"Bearer {key_for(org, owner)}", "Idempotency-Key": "race-run"}

    responses = fire_at_once(
        f"{live_server.url}/api/v1/workflows/{workflow.id}/run",
        headers,
        {"input_data": {"who": "A"}},
        CONCURRENCY,
    )

    run_id = _check_one_run(responses)
    assert list(Run.objects.filter(organization=org).values_list("pk", flat=True)) == [run_id]


@pytest.mark.slow
def test_concurrent_identical_triggers_create_one_run_across_processes(baton_server):  # noqa: F811  (the fixture)
    base, env = baton_server
    created = json.loads(_setup(env, "create"))
    auth = {"Authorization": f"Bearer {created['key']}"}
    made = httpx.post(f"{base}/api/v1/workflows", json={"definition": GREETER}, headers=auth, timeout=30)
    assert made.status_code == 201, made.text
    url = f"{base}/api/v1/workflows/{made.json()['id']}/run"

    responses = fire_at_once(url, {**auth, "Idempotency-Key": "race-processes"}, {"input": {"who": "A"}},
                             CONCURRENCY)  # fmt: skip

    run_id = _check_one_run(responses)
    listed = httpx.get(f"{base}/api/v1/runs", headers=auth, timeout=30).json()
    assert [entry["id"] for entry in listed["runs"]] == [run_id]
    replay = httpx.post(
        url, json={"input": {"who": "A"}}, headers={**auth, "Idempotency-Key": "race-processes"}
    )
    assert replay.status_code == 202 and replay.headers["Idempotent-Replayed"] == "true"


@pytest.mark.parametrize("dispatch_mode", ["inline", "queue"])
@pytest.mark.django_db(transaction=True)
def test_a_trigger_killed_before_its_answer_is_stored_leaves_no_run(
    api_key_client, workflow, settings, monkeypatch, dispatch_mode
):
    """The reservation, the run (and whatever the engine did in the trigger's transaction) and the stored
    answer commit together: a process dying after the handler, before the answer is stored, leaves neither
    the run nor a key stuck `in progress` (the crash soak's web kill, issue 22). Real transactions, so that
    a commit inside the handler would show; the retry with the key then creates the run once."""
    from config.api import idempotency

    settings.BATON_ENGINE_DISPATCH = dispatch_mode
    if dispatch_mode == "queue":
        monkeypatch.setattr("runs.engine.dispatch.enqueue", lambda ids: None)  # no broker: nothing to deliver
    stored = idempotency._complete

    def killed(*args, **kwargs):
        raise RuntimeError("the web process is killed here")

    monkeypatch.setattr(idempotency, "_complete", killed)
    api_key_client.raise_request_exception = False
    crashed = trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-killed")

    assert crashed.status_code == 500
    assert not Run.objects.exists()
    assert not IdempotencyRecord.objects.filter(key="k-killed").exists()
    monkeypatch.setattr(idempotency, "_complete", stored)
    retried = trigger(api_key_client, workflow, {"input_data": {"who": "A"}}, "k-killed")
    assert retried.status_code == 202 and "Idempotent-Replayed" not in retried.headers
    assert list(Run.objects.values_list("pk", flat=True)) == [retried.json()["run_id"]]
    assert IdempotencyRecord.objects.get(key="k-killed").in_progress is False
