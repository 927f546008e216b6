"""django-q2 entry points: they take ids, re-read the rows through the engine, and are safe to run twice."""

from runs.engine import core
from runs.engine.reconciler import reconcile_once


def step_execute(step_run_id: str) -> None:
    core.step_execute(step_run_id)


def reconcile() -> dict:
    return reconcile_once()
