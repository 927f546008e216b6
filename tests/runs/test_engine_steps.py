"""wait, loop and dry runs, end to end through the engine."""

from datetime import timedelta

from django.utils import timezone

from runs.engine.reconciler import reconcile_once
from runs.models import StepRun
from tests.runs.conftest import flaky_step, transform


def test_wait_parks_without_a_worker_and_resumes_on_time(engine):
    run = engine.start(
        [
            {"id": "pause", "type": "wait", "config": {"seconds": "{{ inputs.delay }}"}},
            transform("b", 1, depends_on=["pause"]),
        ],
        input_data={"delay": 120},
    )
    pause = engine.steps(run)["pause"]
    assert pause.status == "waiting" and engine.queued == [] and run.status == "running"
    assert timedelta(seconds=119) < pause.wake_at - timezone.now() <= timedelta(seconds=120)
    assert pause.input_data == {"seconds": 120}
    assert reconcile_once()["woken"] == 0

    StepRun.objects.filter(pk=pause.pk).update(
        wake_at=timezone.now() - timedelta(seconds=1),
        state={**pause.state, "started_at": (timezone.now() - timedelta(seconds=121)).isoformat(),
               "until": (timezone.now() - timedelta(seconds=1)).isoformat()},
    )  # fmt: skip
    assert reconcile_once()["woken"] == 1
    engine.drain()
    run = engine.reload(run)
    pause = engine.steps(run)["pause"]
    assert run.status == "completed"
    assert pause.attempt == 1 and pause.output_data["waited_seconds"] >= 120
    assert [kind for kind, step in engine.events(run) if step == "pause"] == [
        "step_started",
        "step_completed",
    ]


def test_wait_woken_early_sleeps_again(engine):
    run = engine.start([{"id": "pause", "type": "wait", "config": {"seconds": 300}}])
    StepRun.objects.filter(run=run).update(wake_at=timezone.now() - timedelta(seconds=1))
    reconcile_once()
    engine.drain()
    pause = engine.steps(run)["pause"]
    assert pause.status == "waiting" and pause.wake_at > timezone.now() + timedelta(seconds=290)


def test_wait_until_the_past_finishes_at_once(engine):
    run = engine.start([{"id": "pause", "type": "wait", "config": {"until": "2020-01-01T00:00:00Z"}}])
    assert run.status == "completed"
    assert engine.steps(run)["pause"].output_data == {"waited_seconds": 0}


def _loop(items, inline_value, **config):
    inline = {"type": "transform", "config": {"value": inline_value}}
    return {"id": "each", "type": "loop", "config": {"items": items, "step": inline, **config}}


def test_loop_runs_each_item_and_collects_outputs_in_order(engine):
    run = engine.start(
        [_loop("inputs.names", "{{ index }}:{{ item | upper }}", max_concurrency=2),
         transform("after", "{{ steps.each.output['items'] | length }}", depends_on=["each"])],
        input_data={"names": ["ann", "bob", "cy", "dee", "eve"]},
        output="{{ steps.each.output.items }}",
        drain=False,
    )  # fmt: skip
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    assert run.result == ["0:ANN", "1:BOB", "2:CY", "3:DEE", "4:EVE"]
    assert engine.steps(run)["after"].output_data == 5
    children = StepRun.objects.filter(run=run, parent__isnull=False).order_by("iteration")
    assert [child.iteration for child in children] == [0, 1, 2, 3, 4]
    assert all(child.status == "completed" and child.attempt == 1 for child in children)


def test_loop_respects_max_concurrency(engine):
    run = engine.start([_loop([1, 2, 3, 4, 5], "{{ item * 10 }}", max_concurrency=2)], drain=False)
    loop_id = engine.queued[0]
    from runs.engine import dispatch

    dispatch.MANUAL_QUEUE.clear()
    from runs.engine.execute import step_execute

    step_execute(loop_id)  # spawns the iterations
    children = StepRun.objects.filter(run=run, parent__isnull=False)
    assert children.count() == 5
    assert sorted(children.values_list("status", flat=True)) == ["pending"] * 3 + ["queued"] * 2
    assert len(engine.queued) == 2 and engine.steps(run)["each"].status == "waiting"
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed" and engine.steps(run)["each"].output_data == {
        "items": [10, 20, 30, 40, 50]
    }


def test_loop_over_nothing_completes_empty(engine):
    run = engine.start([_loop([], "{{ item }}")])
    assert run.status == "completed" and engine.steps(run)["each"].output_data == {"items": []}


def test_loop_iteration_failure_fails_the_loop(engine):
    run = engine.start([_loop([1, 0, 2], "{{ 10 // item }}")])
    each = engine.steps(run)["each"]
    assert run.status == "failed"
    assert each.status == "failed" and each.error["code"] == "loop_iteration_failed"
    assert run.error["step_id"] == "each" and "Iteration 1" in run.error["message"]
    statuses = dict(StepRun.objects.filter(run=run, parent__isnull=False).values_list("iteration", "status"))
    assert statuses == {0: "completed", 1: "failed", 2: "cancelled"}


def test_loop_over_max_items_fails(engine):
    run = engine.start([_loop("inputs.xs", "{{ item }}", max_items=3)], input_data={"xs": [1, 2, 3, 4]})
    assert run.status == "failed" and run.error["code"] == "loop_too_many_items"


def test_loop_retry_policy_applies_to_each_iteration(engine, flaky):
    flaky.fail_times["each"] = 1  # every iteration fails its first attempt
    inline = {"type": "flaky", "config": {"value": "{{ item }}"}}
    step = {
        "id": "each",
        "type": "loop",
        "retry": {"max_attempts": 2},
        "config": {"items": [1, 2], "step": inline},
    }
    run = engine.start([step])
    assert run.status == "completed"
    assert engine.steps(run)["each"].output_data == {
        "items": [{"attempt": 2, "value": 1}, {"attempt": 2, "value": 2}]
    }


def test_dry_run_skips_side_effects_with_their_resolved_input(engine):
    run = engine.start(
        [
            transform("a", "{{ inputs.who }}"),
            {"id": "notify", "type": "webhook", "depends_on": ["a"],
             "config": {"url": "https://hooks.example.com/{{ steps.a.output }}",
                        "payload": {"n": "{{ inputs.n }}"}}},
            {"id": "script", "type": "script", "config": {"language": "python", "code": "print({{ 1 }})"}},
            transform("b", "done", depends_on=["notify"]),
        ],
        input_data={"who": "ops", "n": 3},
        dry_run=True,
    )  # fmt: skip
    steps = engine.steps(run)
    assert run.status == "completed" and run.dry_run
    assert steps["notify"].status == "skipped" and steps["notify"].skip_reason == "dry_run"
    assert steps["notify"].input_data == {"url": "https://hooks.example.com/ops", "payload": {"n": 3}}
    assert steps["script"].skip_reason == "dry_run"
    assert steps["script"].input_data == {"language": "python", "code": "print({{ 1 }})"}  # literal field
    # A dry-run skip is a planned step, not a skipped branch: downstream still runs.
    assert steps["b"].status == "completed"


def test_dry_run_still_runs_side_effect_free_steps(engine, flaky):
    run = engine.start([flaky_step("a")], dry_run=True)
    assert run.status == "completed" and flaky.calls == [("a", 1)]


def test_outputs_are_stored_as_plain_json(engine):
    steps = [transform("a", "{{ range(3) }}"), transform("b", {"t": "{{ (1, 2) }}"}, depends_on=["a"])]
    run = engine.start(steps)
    assert run.status == "completed"
    assert engine.steps(run)["a"].output_data == [0, 1, 2]
    assert engine.steps(run)["b"].output_data == {"t": [1, 2]}


def test_attempts_record_their_start_and_duration(engine, flaky):
    flaky.fail_times["a"] = 1
    run = engine.start([flaky_step("a", retry={"max_attempts": 2, "backoff_seconds": 0})])
    attempts = engine.steps(run)["a"].attempts
    assert [entry["attempt"] for entry in attempts] == [1, 2]
    assert all(entry["started_at"].endswith("Z") and entry["duration_ms"] >= 0 for entry in attempts)
    assert attempts[0]["started_at"] <= attempts[1]["started_at"]


def test_a_long_loop_completes_with_every_item_in_order(engine):
    # How long it takes is a benchmark check (bench/checks_bench.py).
    run = engine.start([_loop("range(150) | list", "{{ item * 2 }}", max_concurrency=5)])
    assert run.status == "completed"
    assert engine.steps(run)["each"].output_data["items"] == [i * 2 for i in range(150)]
