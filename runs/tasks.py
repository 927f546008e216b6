"""django-q2 entry points: they take ids, re-read the rows through the engine, and are safe to run twice."""

import logging

from django.db import InterfaceError, OperationalError, connection

from runs.engine import execute, slots
from runs.engine.reconciler import reconcile_once

logger = logging.getLogger("baton.engine")


def step_execute(step_run_id: str) -> None:
    with slots.main_task():  # a SIGTERM meanwhile ends the worker once this step is done
        _step_execute(step_run_id)


def _step_execute(step_run_id: str) -> None:
    try:
        execute.step_execute(step_run_id)
    except (OperationalError, InterfaceError):
        # Worker processes skip Django's health check before each task (a round trip each; runs/apps.py):
        # a connection the server dropped meanwhile (a restart, a failover, an idle timeout) fails its first
        # statement instead. Once more on a new connection: the claim's compare-and-set makes a second
        # execution of the same message harmless (a step already claimed or finished is left alone), and
        # the other operational errors (a deadlock, a lock timeout) deserve a second try too.
        logger.warning("step %s: database error; once more on a new connection", step_run_id, exc_info=True)
        connection.close()
        execute.step_execute(step_run_id)


def reconcile() -> dict:
    return reconcile_once()
