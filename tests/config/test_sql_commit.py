"""`sql.pipeline(commit=True)`: the outermost transaction's COMMIT goes with the pipeline's statements on
PostgreSQL (one round trip, no lock held while the client gets round to committing); Django's commit at
the atomic block's exit then has nothing left to do, and its on_commit callbacks still run after it.
Real transactions (`transaction=True`), so that a commit is a commit."""

import pytest
from django.db import IntegrityError, connection, transaction

from config import sql
from runs.engine import dispatch
from runs.models import Run, RunEvent
from tests.factories import RunFactory
from tests.support.postgres import other_session

pytestmark = pytest.mark.django_db(transaction=True)

SAVE_STATUS = sql.Update(Run, ("status",), must_exist=True)


@pytest.fixture
def run(settings, org, owner):
    settings.BATON_ENGINE_DISPATCH = "manual"
    steps = [{"id": "a", "type": "wait", "config": {"seconds": 60}}]
    yield RunFactory(workflow__organization=org, workflow__steps=steps, input_data={})
    dispatch.MANUAL_QUEUE.clear()
    dispatch.MANUAL_ADMISSIONS.clear()


def _status_seen_elsewhere(run_id: str) -> str:
    """The run's status as another connection sees it: only what is committed (PostgreSQL)."""
    with other_session() as other:
        return other.execute("SELECT status FROM runs_run WHERE id = %s", [run_id]).fetchone()[0]


def test_a_committing_pipeline_commits_its_writes_and_the_callbacks_run_after(run):
    called = []
    run.status = "cancelled"
    with transaction.atomic():
        transaction.on_commit(lambda: called.append(Run.objects.get(pk=run.pk).status))
        with sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
        if connection.vendor == "postgresql":
            # Committed with the statements: another connection sees it before the atomic block ends.
            assert _status_seen_elsewhere(run.pk) == "cancelled"
        assert called == []  # on_commit callbacks wait for the atomic block, as always
    assert called == ["cancelled"]
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_a_committing_pipeline_inside_another_atomic_block_leaves_the_commit_to_it(run):
    original = run.status
    run.status = "cancelled"
    with pytest.raises(RuntimeError, match="outer"), transaction.atomic():
        with transaction.atomic(), sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
        if connection.vendor == "postgresql":
            assert _status_seen_elsewhere(run.pk) == original  # not committed: a savepoint's block
        raise RuntimeError("outer")
    assert Run.objects.get(pk=run.pk).status == original  # rolled back with the outer block


def test_a_failing_statement_in_a_committing_pipeline_commits_nothing(run):
    original = run.status
    run.status = "cancelled"
    taken = RunEvent.objects.filter(run=run).first()
    called = []
    with pytest.raises(IntegrityError), transaction.atomic():
        transaction.on_commit(lambda: called.append(True))
        with sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
            sql.Insert(RunEvent).add([RunEvent(run_id=run.pk, seq=taken.seq, type="step_started")])
    assert Run.objects.get(pk=run.pk).status == original
    assert called == []
    with transaction.atomic():  # the connection is usable again
        assert Run.objects.filter(pk=run.pk).exists()
