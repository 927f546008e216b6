"""Several workers at once on one database: each step is claimed by exactly one of them (threads with their
own connections: row locks on PostgreSQL, the writer lock on SQLite's file database)."""

import pytest

from runs.engine.execute import step_execute
from runs.engine.reconciler import reconcile_once
from runs.models import RunEvent, StepRun
from tests.runs.conftest import flaky_step
from tests.support.concurrency import at_once

# threads racing for rows: a deadlock would hang the test
pytestmark = pytest.mark.timeout(120)


def _at_once(count, target, *args):
    assert at_once(count, lambda _index: target(*args)) == []


@pytest.mark.django_db(transaction=True)
def test_one_step_delivered_to_eight_workers_runs_once(engine, flaky):
    run = engine.start([flaky_step("a"), flaky_step("b", depends_on=["a"])], drain=False)
    step_run_id = engine.queued.pop()
    _at_once(8, step_execute, step_run_id)
    assert flaky.calls == [("a", 1), ("b", 1)]
    run = engine.reload(run)
    assert run.status == "completed"
    kinds = [event.type for event in RunEvent.objects.filter(run=run, step_id="a")]
    assert kinds == ["step_started", "step_completed"]
    seqs = list(RunEvent.objects.filter(run=run).order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1))


@pytest.mark.django_db(transaction=True)
def test_concurrent_reconcilers_reclaim_a_step_once(engine, flaky):
    from datetime import timedelta

    from django.utils import timezone

    run = engine.start([flaky_step("a", retry={"max_attempts": 2, "backoff_seconds": 60})], drain=False)
    StepRun.objects.filter(pk=engine.queued.pop()).update(
        status="running",
        lease_owner="dead",
        attempt=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
    )
    _at_once(6, reconcile_once)
    a = StepRun.objects.get(run=run)
    assert a.status == "waiting" and len(a.attempts) == 1
    assert RunEvent.objects.filter(run=run, type="step_retrying").count() == 1
