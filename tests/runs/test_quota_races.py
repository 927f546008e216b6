"""Quota races: many triggers at once never create more runs than the monthly run limit — threads on
PostgreSQL (row locks), processes on a SQLite file (its IMMEDIATE transactions) or PostgreSQL. run_create
counts the month's runs under the organisation's row lock (runs/quotas.py), so with L runs left exactly L
triggers succeed and every other one gets 402 quota_exceeded."""

import json
import subprocess
import threading
from contextlib import closing

import pytest
from django.db import connections

from accounts.principal import Principal
from config.errors import QuotaExceeded
from runs.models import Run
from runs.services import run_create
from tests.factories import WorkflowFactory
from tests.runs.conftest import pg_only
from tests.runs.support.cluster import cluster_env, driver_process
from tests.support.concurrency import at_once, race_drivers


@pg_only
@pytest.mark.django_db(transaction=True)
def test_threads_triggering_at_once_create_exactly_the_runs_left(settings, org, owner):
    settings.BATON_ENGINE_DISPATCH = "manual"
    limit, threads_count, per_thread = 7, 8, 3
    org.monthly_run_limit = limit
    org.save(update_fields=["monthly_run_limit"])
    actor = Principal(organization=org, user=owner, role="owner")
    workflow = WorkflowFactory(organization=org, actor=actor, name="Q")
    run_create(workflow=workflow, actor=actor)  # one of the month's runs exists already: L − 1 are left
    created, refused = [], []

    def trigger(_index):
        for _ in range(per_thread):
            try:
                created.append(run_create(workflow=workflow, actor=actor).id)
            except QuotaExceeded as exc:
                refused.append(exc.details)

    assert at_once(threads_count, trigger) == []
    assert len(created) == limit - 1
    assert len(refused) == threads_count * per_thread - (limit - 1)
    assert all(details["used"] == limit and details["limit"] == limit for details in refused)
    assert Run.objects.filter(organization=org).count() == limit


@pytest.fixture(scope="module")
def _race_env(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        env = cluster_env(tmp_path_factory.mktemp("quota"))
    return {**env, "BATON_ENGINE_DISPATCH": "manual"}


def _driver(env, *args) -> subprocess.Popen:
    return driver_process(env, "tests.runs.support.quota_driver", *args)


def _count_runs(env, org_id) -> int:
    if "BATON_SQLITE_PATH" in env:
        import sqlite3

        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            return db.execute("SELECT COUNT(*) FROM runs_run WHERE organization_id = ?", [org_id]).fetchone()[
                0
            ]
    return Run.objects.filter(organization_id=org_id).count()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_triggering_at_once_create_exactly_the_limit(_race_env, tmp_path):
    env = _race_env
    limit, processes, per_process = 9, 4, 5
    setup = _driver(env, "setup", limit)
    out, err = setup.communicate(timeout=60)
    assert setup.returncode == 0, err
    ids = json.loads(out)
    start = tmp_path / "go"
    workers = [
        _driver(env, "trigger", ids["org"], ids["workflow"], per_process, start) for _ in range(processes)
    ]
    reports = race_drivers(workers, start)
    created = [run_id for report in reports for run_id in report["created"]]
    refused = sum(report["refused"] for report in reports)
    assert len(created) == len(set(created)) == limit
    assert refused == processes * per_process - limit
    assert _count_runs(env, ids["org"]) == limit


# --- tokens: several workers record agent steps of one run at once -----------------------------------


def _loop_of_agents(count: int) -> list[dict]:
    return [
        {
            "id": "each",
            "type": "loop",
            "config": {
                "items": list(range(count)),
                "max_concurrency": count,
                "step": {"type": "agent_task", "config": {"goal": "Say {{ item }}", "max_tokens": 500}},
            },
        }
    ]


def _execute_concurrently(step_run_ids: list[str]) -> list[Exception]:
    from runs.engine.execute import step_execute

    barrier = threading.Barrier(len(step_run_ids))
    errors = []

    def execute(step_run_id):
        try:
            barrier.wait()
            step_execute(step_run_id)
        except Exception as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=execute, args=(step_run_id,)) for step_run_id in step_run_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


@pytest.fixture
def fake_openai(settings):
    from tests.runs.support.llm_fake import FakeLlm

    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    server = FakeLlm("openai").start()
    yield server
    server.stop()


def _agent_run(settings, org, owner, fake, count):
    from accounts.services import llm_provider_create
    from runs.engine import dispatch as dispatch_module
    from workflows.services import workflow_create

    settings.BATON_ENGINE_DISPATCH = "manual"
    dispatch_module.MANUAL_QUEUE.clear()
    actor = Principal(organization=org, user=owner, role="owner")
    llm_provider_create(organization=org, actor=actor, name="Local", kind="openai", base_url=fake.base_url,
                        api_key="sk-test-0123456789abcdef", default_model="m", input_price_per_million="1",
                        output_price_per_million="2")  # fmt: skip
    workflow = workflow_create(
        organization=org, actor=actor, definition={"name": "Agents", "steps": _loop_of_agents(count)}
    )
    run = run_create(workflow=workflow, actor=actor)
    (loop_step,) = list(dispatch_module.MANUAL_QUEUE)
    dispatch_module.MANUAL_QUEUE.clear()
    from runs.engine.execute import step_execute

    step_execute(loop_step)  # spawns the iterations
    iterations = list(dispatch_module.MANUAL_QUEUE)
    dispatch_module.MANUAL_QUEUE.clear()
    assert len(iterations) == count
    return run, iterations


@pg_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_agent_steps_add_up_their_tokens_exactly(
    settings, org, owner, fake_openai, api_key_client
):
    count = 6
    for index in range(count):
        fake_openai.push(content=f"answer {index}", prompt_tokens=100 + index, completion_tokens=10 * index,
                         delay=0.2)  # fmt: skip
    run, iterations = _agent_run(settings, org, owner, fake_openai, count)

    assert _execute_concurrently(iterations) == []
    from runs.engine import dispatch as dispatch_module

    dispatch_module.drain()
    dispatch_module.MANUAL_QUEUE.clear()

    run = Run.objects.get(pk=run.pk)
    prompt, completion = sum(100 + i for i in range(count)), sum(10 * i for i in range(count))
    assert run.status == "completed", run.error
    assert len(fake_openai.requests) == count
    assert run.total_tokens == prompt + completion
    assert float(run.cost_usd) == pytest.approx((prompt * 1 + completion * 2) / 1e6)
    usage = api_key_client.get("/api/v1/usage").json()
    assert usage["tokens"]["used"] == prompt + completion and usage["runs"]["used"] == 1


@pg_only
@pytest.mark.django_db(transaction=True)
def test_concurrent_agent_steps_pass_the_token_quota_by_at_most_one_call_each(
    settings, org, owner, fake_openai
):
    count, quota = 6, 100
    org.monthly_token_quota = quota
    org.save(update_fields=["monthly_token_quota"])
    for _ in range(count):
        fake_openai.push(content="ok", prompt_tokens=40, completion_tokens=30, delay=0.2)
    run, iterations = _agent_run(settings, org, owner, fake_openai, count)

    assert _execute_concurrently(iterations) == []

    from runs.models import StepRun

    rows = list(StepRun.objects.filter(run_id=run.pk, parent__isnull=False))
    called = len(fake_openai.requests)
    run = Run.objects.get(pk=run.pk)
    # Every iteration was recorded (completed, or failed before calling with token_quota_exceeded), every
    # call's tokens were counted, each call asked for at most what was left, and the quota was passed by
    # at most one call per concurrent step (docs/quotas.md).
    assert {row.status for row in rows} <= {"completed", "failed"}
    assert all(row.error["code"] == "token_quota_exceeded" for row in rows if row.status == "failed")
    assert sum(row.status == "completed" for row in rows) == called
    assert all(request["body"]["max_tokens"] <= quota for request in fake_openai.requests)
    assert run.total_tokens == 70 * called
    assert run.total_tokens - quota < count * 70
    assert called >= 2  # two calls fit even one after the other (0 → 70 → 140); overlapping ones add more
