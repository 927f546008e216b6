"""Pause and resume inside the engine: timers hold while a run is paused, a loop stops between iterations and
tops up again on resume, a step message arriving after the pause puts its step back."""

from datetime import timedelta

from django.utils import timezone

from runs import services
from runs.engine.reconciler import reconcile_once
from runs.models import Run, RunEvent, StepRun
from tests.runs.conftest import flaky_step, transform


def test_a_paused_runs_wait_holds_until_the_resume(engine):
    run = engine.start(
        [{"id": "nap", "type": "wait", "config": {"seconds": 60}}, transform("after", 1, depends_on=["nap"])]
    )
    assert engine.statuses(run)["nap"] == "waiting"

    paused = services.run_pause(run=run, actor=engine.actor)
    assert paused.status == "paused"  # nothing was running: paused at once
    assert paused.deadline_at is None
    past = timezone.now() - timedelta(seconds=1)
    nap = StepRun.objects.get(run=run, step_id="nap")
    StepRun.objects.filter(pk=nap.pk).update(wake_at=past, state={**nap.state, "until": past.isoformat()})
    counts = reconcile_once()  # the timer is due, but the run is paused
    assert counts["woken"] == 0 and counts["timed_out"] == 0
    assert engine.reload(run).status == "paused" and engine.statuses(run)["nap"] == "waiting"

    resumed = services.run_resume(run=run, actor=engine.actor)
    assert resumed.status == "running" and resumed.deadline_at is not None
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed"
    assert engine.statuses(run) == {"nap": "completed", "after": "completed"}
    types = [event.type for event in RunEvent.objects.filter(run=run).order_by("seq")]
    assert types.count("run_paused") == 1 and types[-1] == "run_completed"


def test_a_loop_pauses_between_iterations_and_tops_up_on_resume(engine, flaky):
    paused = []

    def pause_once(context):
        if not paused:
            paused.append(
                services.run_pause(run=Run.objects.get(pk=context.run_id), actor=engine.actor).status
            )

    flaky.hooks["each"] = pause_once
    run = engine.start(
        [{"id": "each", "type": "loop",
          "config": {"items": [1, 2, 3], "max_concurrency": 1, "step": {"type": "flaky", "config": {}}}}]
    )  # fmt: skip
    assert paused == ["running"]  # asked while the first iteration ran
    run = engine.reload(run)
    assert run.status == "paused"
    children = StepRun.objects.filter(run=run, parent__isnull=False).order_by("iteration")
    assert [child.status for child in children] == ["completed", "pending", "pending"]
    assert len(flaky.calls) == 1

    services.run_resume(run=run, actor=engine.actor)
    engine.drain()
    run = engine.reload(run)
    assert run.status == "completed" and len(flaky.calls) == 3


def test_a_step_message_after_the_pause_puts_the_step_back(engine, flaky):
    run = engine.start([flaky_step("a"), flaky_step("b", depends_on=["a"])], drain=False)
    assert engine.statuses(run)["a"] == "queued"
    services.run_pause(run=run, actor=engine.actor)
    assert engine.reload(run).status == "running"  # a queued step may still be claimed: not paused yet
    engine.drain()  # the worker gets the message: it does not run the step
    assert flaky.calls == [] and engine.statuses(run) == {"a": "pending", "b": "pending"}
    assert engine.reload(run).status == "paused"
    reconcile_once()
    assert engine.queued == []  # nothing to redispatch for a paused run

    services.run_resume(run=run, actor=engine.actor)
    engine.drain()
    assert engine.reload(run).status == "completed" and [call[0] for call in flaky.calls] == ["a", "b"]


def test_resume_from_a_step_of_a_paused_run_runs_it_again(engine, flaky):
    flaky.hooks["a"] = lambda context: (
        flaky.hooks.pop("a")
        and services.run_pause(run=Run.objects.get(pk=context.run_id), actor=engine.actor)
    )
    run = engine.start([flaky_step("a"), flaky_step("b", depends_on=["a"])])
    assert engine.reload(run).status == "paused" and engine.statuses(run) == {
        "a": "completed",
        "b": "pending",
    }

    services.run_resume(run=run, actor=engine.actor, from_step="a")
    engine.drain()
    rows = engine.steps(run)
    assert engine.reload(run).status == "completed"
    assert [call[0] for call in flaky.calls] == ["a", "a", "b"]
    assert rows["a"].attempt == 2 and [a["status"] for a in rows["a"].attempts] == ["completed", "completed"]
