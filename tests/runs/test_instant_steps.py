"""Instant steps (transform, condition, end): executed under the run lock in the transaction that found them
ready, without a queue round trip, a lease or transactions of their own (docs/engine.md "Instant steps").
What is stored is the same as for any step; only the number of transactions differs."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import RunEvent, StepRun
from tests.runs.conftest import flaky_step, transform

BURN = " + ".join(["(range(20000) | sum) * 0"] * 3)  # a few milliseconds of template work


def chain(length, burn=False):
    extra = f" + {BURN}" if burn else ""
    steps = [transform("s0", f"{{{{ inputs.n{extra} }}}}")]
    steps += [
        transform(f"s{i}", f"{{{{ steps.s{i - 1}.output + 1{extra} }}}}", depends_on=[f"s{i - 1}"])
        for i in range(1, length)
    ]
    return steps


def transactions(queries) -> int:
    """Engine transactions run inside the test's transaction, as savepoints."""
    return sum(1 for query in queries.captured_queries if query["sql"].startswith("SAVEPOINT"))


def record(engine, run):
    """What a run left behind, without ids and timestamps."""
    run = engine.reload(run)
    steps = {
        row.step_id: (
            row.status,
            row.output_data,
            row.input_data,
            row.attempt,
            [(entry["attempt"], entry["status"]) for entry in row.attempts],
            row.skip_reason,
            (row.error or {}).get("code"),
        )
        for row in StepRun.objects.filter(run=run)
    }
    events = [(event.type, event.step_id) for event in run.events.order_by("seq")]
    return run.status, run.result, (run.error or {}).get("code"), steps, events


def test_a_chain_of_transforms_runs_in_the_transaction_of_its_first_claim(engine, settings):
    # A budget no first execution in a process can exhaust (it loads the secrets and compiles the templates).
    settings.BATON_INSTANT_STEPS_MS = 60_000
    run = engine.start(chain(10), input_data={"n": 5}, output="{{ steps.s9.output }}", drain=False)
    with CaptureQueriesContext(connection) as queries:
        assert engine.drain() == 1  # the root's message; no other step was queued
    # The claim's transaction, which executed all ten; the admission after the run finished is a plain read
    # when no run is queued (runs/concurrency.py admit).
    assert transactions(queries) == 1
    run = engine.reload(run)
    assert run.status == "completed" and run.result == 14
    rows = StepRun.objects.filter(run=run)
    for row in rows:
        assert row.status == "completed" and row.attempt == 1
        assert row.lease_owner == "" and row.lease_expires_at is None and row.dispatched_at is None
        assert row.queued_at and row.started_at and row.completed_at >= row.started_at
        assert [entry["status"] for entry in row.attempts] == ["completed"]
        assert row.attempts[0]["started_at"] is not None
    assert {row.step_id: row.input_data for row in rows}["s3"] == {"value": 8}
    types = [event.type for event in RunEvent.objects.filter(run=run).order_by("seq")]
    steps = ["step_started", "step_completed"] * 10
    assert types == ["run_queued", "run_started", *steps, "run_completed"]


@pytest.mark.parametrize(
    "steps",
    [
        pytest.param(
            [
                transform("a", "{{ inputs.n }}"),
                transform("b", "{{ steps.a.output + 1 }}", depends_on=["a"]),
                transform("c", "{{ steps.a.output + 2 }}", depends_on=["a"]),
                transform("d", "{{ steps.b.output * steps.c.output }}", depends_on=["b", "c"]),
            ],
            id="diamond",
        ),
        pytest.param(
            [
                transform("a", "{{ inputs.n }}"),
                {
                    "id": "big",
                    "type": "condition",
                    "depends_on": ["a"],
                    "config": {"expression": "steps.a.output > 3", "then": ["yes"], "else": ["no"]},
                },
                transform("yes", "big", depends_on=["big"]),
                transform("no", "small", depends_on=["big"]),
                transform("after_no", "{{ steps.no.output }}", depends_on=["no"]),
                transform("late", 1, depends_on=["a"], when="steps.a.output < 0"),
                {
                    "id": "stop",
                    "type": "end",
                    "depends_on": ["yes"],
                    "config": {"status": "completed", "output": "{{ steps.yes.output }}"},
                },
                transform("never", 1, depends_on=["stop"]),
            ],
            id="branches-when-end",
        ),
        pytest.param(
            [
                transform("a", "{{ inputs.n }}"),
                transform("b", "{{ inputs.missing }}", depends_on=["a"]),
                transform("c", 1, depends_on=["b"]),
                transform("d", 2, depends_on=["a"]),
            ],
            id="template-error",
        ),
        pytest.param(
            [
                transform("a", "{{ inputs.missing }}", on_failure="continue"),
                transform("b", "{{ steps.a.error.code }}", depends_on=["a"]),
            ],
            id="on-failure-continue",
        ),
    ],
)
def test_instant_and_leased_execution_store_the_same_record(engine, settings, steps):
    records = []
    for budget in (100, 0):
        settings.BATON_INSTANT_STEPS_MS = budget
        records.append(record(engine, engine.start(steps, input_data={"n": 5})))
    assert records[0] == records[1]
    assert records[0][0] in ("completed", "failed")


def test_the_budget_ends_the_transaction_and_the_rest_goes_the_usual_way(engine, settings):
    settings.BATON_INSTANT_STEPS_MS = 1  # shorter than one step's work
    run = engine.start(chain(6, burn=True), input_data={"n": 0}, drain=False)
    with CaptureQueriesContext(connection) as queries:
        engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    # Each transaction executes one instant step, then claims the next with a lease (executed outside
    # a transaction, recorded in the next one, which executes one more instantly, and so on).
    assert transactions(queries) > 1
    assert all(
        [entry["status"] for entry in row.attempts] == ["completed"]
        for row in StepRun.objects.filter(run=run)
    )
    steps = {row.step_id: row.output_data for row in StepRun.objects.filter(run=run)}
    assert steps == {f"s{i}": i for i in range(6)}


def test_a_step_that_is_not_instant_is_claimed_with_a_lease_between_instant_ones(engine, flaky):
    seen = {}

    def hook(context):
        row = StepRun.objects.get(pk=context.step_run_id)
        seen.update(status=row.status, leased=bool(row.lease_owner), before=StepRun.objects.get(
            run_id=context.run_id, step_id="before").status)  # fmt: skip

    flaky.hooks["middle"] = hook
    run = engine.start(
        [
            transform("before", "{{ inputs.n }}"),
            flaky_step("middle", depends_on=["before"]),
            transform("after", "{{ steps.middle.output.value }}!", depends_on=["middle"]),
        ],
        input_data={"n": 1},
    )
    # The flaky step ran outside the transaction that executed `before`: that one had committed, and the
    # flaky step held a lease of its own.
    assert seen == {"status": "running", "leased": True, "before": "completed"}
    run = engine.reload(run)
    assert run.status == "completed"
    assert engine.steps(run)["after"].output_data == "middle!"


def test_a_secret_used_by_an_instant_step_is_redacted_from_what_is_stored(engine, org, actor):
    from accounts.services import secret_create

    secret_create(organization=org, actor=actor, name="TOKEN", value="s3cret-value-123")
    run = engine.start([transform("t", "Bearer {{ secrets.TOKEN }}")])
    row = engine.steps(run)["t"]
    assert row.status == "completed"
    assert row.output_data == "Bearer ***"
    assert "s3cret-value-123" not in str(row.input_data)


def test_a_loop_of_transforms_runs_its_iterations_instantly(engine, settings):
    steps = [
        {"id": "each", "type": "loop",
         "config": {"items": "{{ [1, 2, 3, 4] }}", "max_concurrency": 2,
                    "step": {"type": "transform", "config": {"value": "{{ item * 10 }}"}}}},
        transform("sum", "{{ steps.each.output['items'] | sum }}", depends_on=["each"]),
    ]  # fmt: skip
    counts, records = [], []
    for budget in (100, 0):
        settings.BATON_INSTANT_STEPS_MS = budget
        run = engine.start(steps, drain=False)
        with CaptureQueriesContext(connection) as queries:
            engine.drain()
        counts.append(transactions(queries))
        records.append(record(engine, run))
        assert engine.steps(run)["sum"].output_data == 100
    assert records[0] == records[1]
    # An iteration claimed from its message is executed in that claim's transaction (one that the record of
    # the previous iteration continues into is claimed with a lease, as before).
    assert counts[0] < counts[1], counts


def test_an_end_step_renders_the_workflow_output_from_steps_of_the_same_transaction(engine, settings):
    settings.BATON_INSTANT_STEPS_MS = 60_000  # one transaction for the whole run
    run = engine.start(
        [
            transform("a", "{{ inputs.n * 2 }}"),
            transform("b", "{{ steps.a.output + 1 }}", depends_on=["a"]),
            {"id": "stop", "type": "end", "depends_on": ["b"], "config": {"status": "completed"}},
            transform("never", 1, depends_on=["stop"]),
        ],
        input_data={"n": 20},
        output={"a": "{{ steps.a.output }}", "b": "{{ steps.b.output }}"},
    )
    run = engine.reload(run)
    # The end step renders the output from the stored rows: the steps before it, executed (and saved
    # later, with the others) in this same transaction, must already be there.
    assert run.status == "completed" and run.result == {"a": 40, "b": 41}
    assert engine.statuses(run) == {
        "a": "completed",
        "b": "completed",
        "stop": "completed",
        "never": "cancelled",
    }
