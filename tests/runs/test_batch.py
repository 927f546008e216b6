"""Many runs created at once (runs/services/batch.py): the rows, events and audit records `run_create` writes
for each run, the admission limits, the quota (exactly the runs left) and refused runs one by one."""

import re

import pytest

from accounts.principal import SystemActor
from audit.models import AuditEvent
from runs.choices import RunStatus, RunTrigger
from runs.engine import dispatch as dispatch_module
from runs.models import Run, RunEvent, StepRun
from runs.services import run_create
from runs.services.batch import NewRun, runs_create_many
from tests.workflows.support.helpers import make_workflow, transform
from workflows.models import WorkflowVersion
from workflows.services import workflow_create

RUN_FIELDS = ("status", "trigger", "env", "dry_run", "concurrency_key", "event_seq", "triggered_by",
              "triggered_by_type", "pause_signal", "workflow_version_id", "definition_hash")  # fmt: skip


@pytest.fixture
def workflow(engine, org, owner):
    return make_workflow(org, owner)


def limited_workflow(engine, concurrency, inputs=None):
    steps = {"name": "Limited", "steps": [transform("only", "x")], **({"inputs": inputs} if inputs else {})}
    return workflow_create(
        organization=engine.org, actor=engine.actor, definition=steps, concurrency=concurrency
    )


def version_of(workflow):
    return WorkflowVersion.objects.get(workflow=workflow, number=workflow.current_version)


def item(workflow, n, **overrides):
    actor = SystemActor(organization=workflow.organization, actor_type="schedule", actor_id="sched_1")
    values = {
        "workflow": workflow,
        "version": version_of(workflow),
        "actor": actor,
        "input_data": {"who": f"n{n}"},
        "metadata": {"n": n},
        "audit_data": {"n": n},
    }
    return NewRun(**{**values, **overrides})


def shape(run):
    """What a created run looks like, ids and times aside."""
    run = Run.objects.get(pk=run.pk)
    steps = StepRun.objects.filter(run=run).order_by("step_id")
    events = RunEvent.objects.filter(run=run).order_by("seq")
    audit = AuditEvent.objects.filter(run_id=run.id).order_by("seq")
    return {
        **{name: getattr(run, name) for name in RUN_FIELDS},
        "started": run.started_at is not None,
        "deadline": run.deadline_at is not None,
        "steps": [(row.step_id, row.status, row.queued_at is not None) for row in steps],
        "events": [(event.seq, event.type, event.step_id, event.data) for event in events],
        "audit": [(event.event, event.actor_type, {k: v for k, v in event.data.items() if k != "n"})
                  for event in audit],
    }  # fmt: skip


def test_the_batch_writes_what_run_create_writes(workflow, engine):
    single = run_create(
        workflow=workflow, actor=item(workflow, 0).actor, version=version_of(workflow),
        input_data={"who": "n0"}, metadata={"n": 0}, trigger=RunTrigger.SCHEDULE, audit_data={"n": 0},
    )  # fmt: skip
    dispatch_module.MANUAL_QUEUE.clear()
    many = runs_create_many([item(workflow, n) for n in range(1, 4)], trigger=RunTrigger.SCHEDULE)
    assert all(isinstance(run, Run) for run in many)
    expected = shape(single)
    assert expected["status"] == RunStatus.RUNNING and expected["steps"][0][1] == "queued"
    for n, run in enumerate(many, start=1):
        assert shape(run) == expected
        stored = Run.objects.get(pk=run.pk)
        assert (stored.input_data, stored.metadata) == ({"who": f"n{n}"}, {"n": n})
    # One dispatch for the batch: each run's first step, in order.
    assert list(dispatch_module.MANUAL_QUEUE) == [
        StepRun.objects.get(run=run, step_id="hello").id for run in many
    ]
    engine.drain()
    assert {Run.objects.get(pk=run.pk).result for run in many} == {"Hello n1!", "Hello n2!", "Hello n3!"}
    workflow.refresh_from_db()
    assert workflow.last_run_at == max(run.created_at for run in many)


def test_a_refused_run_does_not_hold_the_others_back(workflow):
    results = runs_create_many(
        [item(workflow, 1), item(workflow, 2, input_data={}), item(workflow, 3)], trigger=RunTrigger.SCHEDULE
    )
    assert isinstance(results[0], Run) and isinstance(results[2], Run)
    assert results[1].code == "invalid_input" and "who" in results[1].details["errors"][0]
    assert Run.objects.count() == 2


def test_the_organisation_cap_admits_in_order_and_queues_the_rest(workflow, org, engine):
    org.max_concurrent_runs = 2
    org.save(update_fields=["max_concurrent_runs"])
    many = runs_create_many([item(workflow, n) for n in range(5)], trigger=RunTrigger.SCHEDULE)
    statuses = [Run.objects.get(pk=run.pk).status for run in many]
    assert statuses == ["running", "running", "queued", "queued", "queued"]
    queued = shape(many[2])
    assert queued["events"] == [(1, "run_queued", "", {"workflow_version": 1})]
    assert [step[1] for step in queued["steps"]] == ["pending", "pending"]
    engine.drain()  # finishing runs admit the queued ones
    assert {Run.objects.get(pk=run.pk).status for run in many} == {"completed"}


def test_runs_already_queued_go_first(workflow, org, engine):
    org.max_concurrent_runs = 1
    org.save(update_fields=["max_concurrent_runs"])
    first = run_create(workflow=workflow, actor=engine.actor, input_data={"who": "a"})
    waiting = run_create(workflow=workflow, actor=engine.actor, input_data={"who": "b"})
    assert (first.status, Run.objects.get(pk=waiting.pk).status) == ("running", "queued")
    many = runs_create_many([item(workflow, n) for n in range(2)], trigger=RunTrigger.SCHEDULE)
    assert {Run.objects.get(pk=run.pk).status for run in many} == {"queued"}
    engine.drain()
    order = list(Run.objects.order_by("started_at").values_list("pk", flat=True))
    assert order == [first.pk, waiting.pk, many[0].pk, many[1].pk]


def test_the_monthly_limit_creates_exactly_the_runs_left(workflow, org):
    org.monthly_run_limit = 3
    org.save(update_fields=["monthly_run_limit"])
    results = runs_create_many([item(workflow, n) for n in range(5)], trigger=RunTrigger.SCHEDULE)
    assert [type(result).__name__ for result in results] == ["Run"] * 3 + ["QuotaExceeded"] * 2
    assert results[3].code == "quota_exceeded"
    assert Run.objects.count() == 3


def test_a_rejecting_concurrency_limit_is_checked_run_by_run(org, engine):
    limited = limited_workflow(engine, {"limit": 1, "on_limit": "reject"})
    results = runs_create_many(
        [item(limited, n, input_data={}) for n in range(3)], trigger=RunTrigger.SCHEDULE
    )
    assert isinstance(results[0], Run)
    assert [result.code for result in results[1:]] == ["workflow_already_running"] * 2


def test_a_queueing_concurrency_group_is_admitted_by_key(org, engine):
    grouped = limited_workflow(
        engine,
        {"limit": 1, "key": "{{ inputs.k }}"},
        {"type": "object", "properties": {"k": {"type": "string"}}},
    )
    many = runs_create_many(
        [item(grouped, n, input_data={"k": key}) for n, key in enumerate("aab")], trigger=RunTrigger.SCHEDULE
    )
    assert [Run.objects.get(pk=run.pk).status for run in many] == ["running", "queued", "running"]
    assert [run.concurrency_key for run in many] == ["a", "a", "b"]


def test_runs_of_two_organisations_are_refused(workflow, other_org, outsider):
    theirs = make_workflow(other_org, outsider)
    with pytest.raises(ValueError):
        runs_create_many([item(workflow, 1), item(theirs, 2)], trigger=RunTrigger.SCHEDULE)


def _statements(workflow, count: int) -> list[str]:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    items = [item(workflow, n) for n in range(count)]
    with CaptureQueriesContext(connection) as captured:
        runs = runs_create_many(items, trigger=RunTrigger.SCHEDULE)
    assert {Run.objects.get(pk=run.pk).status for run in runs} == {"running"}
    # Per run: the audit appends (pipelined on PostgreSQL) and the security policy's read at each run's
    # start (runs/engine/secrets.py `run_limits`); every other statement is one per batch.
    per_run = ("audit", "allow_script_steps")
    return [
        "SAVEPOINT" if sql.startswith(("SAVEPOINT", "RELEASE")) else sql.split("(")[0][:60]
        for query in captured
        for sql in [re.sub(r"^\d+ times: ", "", query["sql"])]
        if not any(marker in query["sql"] for marker in per_run)
    ]


def test_the_statements_do_not_grow_with_the_batch(workflow, org):
    org.max_concurrent_runs = None  # every run starts at once: its first advance is written with the batch
    org.save(update_fields=["max_concurrent_runs"])
    _statements(workflow, 1)  # the version's plan, read once per process
    assert _statements(workflow, 2) == _statements(workflow, 12)
