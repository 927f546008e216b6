"""The scheduler's decisions: ordering, fan-out/fan-in, when/skip propagation, condition branches, outputs."""

import pytest

from runs.engine.advance import advance
from runs.engine.execute import step_execute
from runs.models import RunEvent, StepRun
from tests.runs.conftest import transform

# Every test twice: transforms (and conditions, ends) as instant steps, and claimed with leases.
pytestmark = pytest.mark.usefixtures("both_step_modes")


def test_diamond_fans_out_and_joins(engine):
    run = engine.start(
        [
            transform("a", 1),
            transform("b", "{{ steps.a.output + 10 }}", depends_on=["a"]),
            transform("c", "{{ steps.a.output + 20 }}", depends_on=["a"]),
            transform("d", "{{ steps.b.output + steps.c.output }}", depends_on=["b", "c"]),
        ],
        drain=False,
    )
    assert len(engine.queued) == 1  # only a
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    assert engine.steps(run)["d"].output_data == 32
    started = [step for kind, step in engine.events(run) if kind == "step_started"]
    assert started[0] == "a" and started[-1] == "d" and set(started[1:3]) == {"b", "c"}


def test_roots_start_together(engine):
    run = engine.start([transform("x", 1), transform("y", 2), transform("z", 3)], drain=False)
    assert len(engine.queued) == 3
    assert set(engine.statuses(run).values()) == {"queued"}
    engine.drain()
    assert engine.reload(run).status == "completed"


def test_when_false_skips_and_skips_propagate(engine):
    run = engine.start(
        [
            transform("a", "{{ inputs.flag }}"),
            transform("b", "never", depends_on=["a"], when="steps.a.output == true"),
            transform("c", "after b", depends_on=["b"]),
            transform("d", "{{ steps.b.status }}", depends_on=["a", "b"]),
        ],
        input_data={"flag": False},
        output={"d": "{{ steps.d.output }}"},
    )
    steps = engine.steps(run)
    assert run.status == "completed"
    assert steps["b"].status == "skipped" and steps["b"].skip_reason == "when_false"
    assert steps["c"].status == "skipped" and steps["c"].skip_reason == "upstream_skipped"
    # d has one finished and one skipped dependency: it runs and sees b's status.
    assert steps["d"].status == "completed" and steps["d"].output_data == "skipped"
    assert run.result == {"d": "skipped"}
    assert ("step_skipped", "b") in engine.events(run)


def test_when_true_runs(engine):
    run = engine.start(
        [transform("a", 5), transform("b", "ran", depends_on=["a"], when="{{ steps.a.output > 3 }}")]
    )
    assert engine.statuses(run) == {"a": "completed", "b": "completed"}


def _branching(value):
    return [
        transform("score", value),
        {"id": "check", "type": "condition", "depends_on": ["score"],
         "config": {"expression": "steps.score.output >= 50", "then": ["high"], "else": ["low"]}},
        transform("high", "high", depends_on=["check"]),
        transform("low", "low", depends_on=["check"]),
        transform("after_high", "x", depends_on=["high"]),
        transform("join", "{{ steps.high.output if steps.high.output else steps.low.output }}",
                  depends_on=["high", "low"]),
    ]  # fmt: skip


def test_condition_true_skips_else_branch(engine):
    run = engine.start(_branching(70), output="{{ steps.join.output }}")
    statuses = engine.statuses(run)
    assert engine.steps(run)["check"].output_data == {"result": True}
    assert statuses["high"] == "completed" and statuses["after_high"] == "completed"
    assert statuses["low"] == "skipped" and engine.steps(run)["low"].skip_reason == "branch_not_taken"
    assert run.status == "completed" and run.result == "high"


def test_condition_false_skips_then_branch_and_its_descendants(engine):
    run = engine.start(_branching(10), output="{{ steps.join.output }}")
    statuses = engine.statuses(run)
    assert engine.steps(run)["check"].output_data == {"result": False}
    assert statuses["high"] == "skipped" and statuses["after_high"] == "skipped"
    assert statuses["low"] == "completed" and statuses["join"] == "completed"
    assert run.result == "low"


def test_output_template_error_fails_run(engine):
    run = engine.start([transform("a", 1)], output="{{ steps.a.output.missing }}")
    assert run.status == "failed"
    assert run.error["code"] == "output_error"


def test_advance_twice_changes_nothing_the_second_time(engine):
    run = engine.start([transform("a", 1), transform("b", 2, depends_on=["a"])], drain=False)
    before = (list(engine.queued), engine.statuses(run), RunEvent.objects.filter(run=run).count())
    assert advance(run.id) == []
    assert advance(run.id) == []
    assert (list(engine.queued), engine.statuses(run), RunEvent.objects.filter(run=run).count()) == before
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    events = RunEvent.objects.filter(run=run).count()
    assert advance(run.id) == []
    assert RunEvent.objects.filter(run=run).count() == events
    assert engine.reload(run).completed_at == run.completed_at


def test_executing_a_step_twice_runs_it_once(engine):
    run = engine.start([transform("a", 1)], drain=False)
    step_run_id = engine.queued[0]
    engine.drain()
    step_execute(step_run_id)  # a duplicate message after the step finished
    assert StepRun.objects.get(pk=step_run_id).attempt == 1
    assert [kind for kind, _ in engine.events(engine.reload(run))].count("step_started") == 1


def test_end_step_completes_run_with_its_output_and_cancels_the_rest(engine):
    run = engine.start(
        [
            transform("a", 3),
            {
                "id": "stop",
                "type": "end",
                "depends_on": ["a"],
                "config": {"output": {"n": "{{ steps.a.output }}"}},
            },
            transform("later", 1, depends_on=["stop"]),
        ],
        output="ignored",
    )
    assert run.status == "completed" and run.result == {"n": 3}
    assert engine.statuses(run)["later"] == "cancelled"


def test_end_step_failed_fails_run(engine):
    run = engine.start(
        [{"id": "stop", "type": "end", "config": {"status": "failed", "message": "Nothing to do"}}]
    )
    assert run.status == "failed"
    assert run.error == {"code": "run_ended", "message": "Nothing to do", "step_id": "stop"}


def test_run_outcomes_are_audited(engine, org):
    from audit.models import AuditEvent

    ok = engine.start([transform("a", 1)])
    bad = engine.start([transform("a", "{{ inputs.missing }}")])
    events = {(e.event, e.target_id, e.actor_type) for e in AuditEvent.objects.filter(organization=org)}
    assert ("run.completed", ok.id, "system") in events
    assert ("run.failed", bad.id, "system") in events
    assert ("run.triggered", ok.id, "user") in events
