"""Worker processes skip Django's database health check before each task (runs/apps.py): a step whose
connection the server dropped meanwhile runs once more on a new connection (runs/tasks.py)."""

import pytest
from django.db import close_old_connections, connection

from runs import tasks
from runs.apps import _start_reconciler
from runs.engine.execute import step_execute
from tests.runs.conftest import transform
from tests.support.postgres import terminate

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="a server that drops connections"),
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture
def worker_settings(monkeypatch):
    """The connection settings a worker process gets at spawn (without its reconciler and scheduler
    threads, which would outlive the test's database, nor its I/O slots)."""
    monkeypatch.setattr("runs.engine.reconciler.start_reconciler_thread", lambda: None)
    monkeypatch.setattr("runs.scheduling.start_scheduler_thread", lambda: None)
    monkeypatch.setattr("runs.engine.slots.enable", lambda: None)  # nor its I/O slots and SIGTERM handler
    saved = dict(connection.settings_dict)
    _start_reconciler(sender=None)
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is False
    connection.close()  # a connection reads the setting when it connects
    yield
    connection.settings_dict.update(saved)
    connection.close()


def _drop_connection():
    """Terminate this process's connection from another one, as a server restart would (and wait until the
    session is gone: the health check of web processes reads the socket, config/postgresql/base.py)."""
    connection.ensure_connection()
    terminate(connection.connection.info.backend_pid)


def test_a_step_whose_connection_was_dropped_runs_on_a_new_connection(engine, worker_settings):
    run = engine.start([transform("a", "{{ inputs.n }}")], input_data={"n": 2}, drain=False)
    [step_run_id] = engine.queued
    _drop_connection()

    tasks.step_execute(step_run_id)

    run = engine.reload(run)
    assert (run.status, run.result) == ("completed", None) and engine.steps(run)["a"].output_data == 2


def test_a_health_checked_connection_is_replaced_before_the_claims_pipeline(engine):
    """Web processes check a connection's health before its first statement of a request: the check must
    come before the claim's pipeline is bound to the connection, or the pipeline runs on the dead one."""
    connection.close()  # connect anew, with the health checks of web processes
    assert connection.settings_dict["CONN_HEALTH_CHECKS"] is True
    run = engine.start([transform("a", "{{ inputs.n }}")], input_data={"n": 5}, drain=False)
    [step_run_id] = engine.queued
    _drop_connection()
    close_old_connections()  # what a new request (or django-q2 before a task) does

    step_execute(step_run_id)

    assert engine.steps(engine.reload(run))["a"].output_data == 5
