"""Loops: one child step run per item; the loop step waits (holding no worker) until they finish."""

from __future__ import annotations

from django.db.models import Count

from runs.choices import STEP_FINISHED, StepStatus
from runs.engine.context import StepOutcome
from runs.engine.outcomes import UNSTARTED, attempt_entry, complete_step, step_failed
from runs.engine.plan import Plan, plan_for
from runs.engine.unit_of_work import UnitOfWork
from runs.models import StepRun


def spawn_iterations(work: UnitOfWork, row: StepRun, step: dict, items: list, now) -> list[str]:
    """Create the loop's iterations and start the first ones; returns the step run ids queued."""
    run = work.run
    inline = step["config"]["step"]
    if not items:
        complete_step(work, row, StepOutcome.completed({"items": []}), now)
        return after_step_finished(work, row, plan_for(run), now)
    StepRun.objects.bulk_create(
        [
            StepRun(
                run_id=run.id,
                step_id=row.step_id,
                type=inline["type"],
                name=inline.get("name", ""),
                parent=row,
                iteration=index,
                state={"item": item},
            )
            for index, item in enumerate(items)
        ]
    )
    row.status = StepStatus.WAITING
    row.wake_at = None
    row.state = {"iterations": len(items)}
    row.save()
    return advance_loop(work, row, step, now)


def after_step_finished(work: UnitOfWork, row: StepRun, plan: Plan, now) -> list[str]:
    """An iteration finished: let its loop start more or finish. Top-level steps: nothing to do here."""
    if row.parent_id is None:
        return []
    parent = StepRun.objects.select_for_update().get(pk=row.parent_id)
    if parent.status != StepStatus.WAITING:
        return []  # the loop already failed or was cancelled
    return advance_loop(work, parent, plan.steps[parent.step_id], now)


def advance_loop(work: UnitOfWork, parent: StepRun, step: dict, now) -> list[str]:
    """Fail, complete or top up a waiting loop; a few indexed queries, whatever the number of items."""
    children = StepRun.objects.filter(parent=parent)
    failed = children.filter(status=StepStatus.FAILED).order_by("iteration").first()
    if failed is not None:
        error = {
            "code": "loop_iteration_failed",
            "message": f"Iteration {failed.iteration} failed: {(failed.error or {}).get('message', '')}",
        }
        children.filter(status__in=UNSTARTED).update(status=StepStatus.CANCELLED, completed_at=now)
        parent.attempts = [*parent.attempts, attempt_entry(parent, "failed", error)]
        step_failed(work, parent, step, error, now)
        return []
    counts = dict(children.values_list("status").annotate(count=Count("pk")).order_by())
    unfinished = sum(count for status, count in counts.items() if status not in STEP_FINISHED)
    if unfinished == 0:
        outputs = children.order_by("iteration").values_list("output_data", flat=True)
        complete_step(work, parent, StepOutcome.completed({"items": list(outputs)}), now)
        return []
    in_flight = unfinished - counts.get(StepStatus.PENDING, 0)
    room = step["config"].get("max_concurrency", 1) - in_flight
    if room <= 0:
        return []
    ready = list(
        children.filter(status=StepStatus.PENDING).order_by("iteration").values_list("pk", flat=True)[:room]
    )
    if ready:
        StepRun.objects.filter(pk__in=ready).update(
            status=StepStatus.QUEUED, queued_at=now, dispatched_at=now
        )
    return ready
