"""`sql.pipeline(commit=True)`: the outermost transaction's COMMIT goes with the pipeline's statements on
PostgreSQL (one round trip, no lock held while the client gets round to committing); Django's commit at
the atomic block's exit then has nothing left to do, and its on_commit callbacks still run after it.
Real transactions (`transaction=True`), so that a commit is a commit."""

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.transaction import TransactionManagementError

from config import sql
from runs.engine import dispatch
from runs.models import Run, RunEvent
from tests.factories import RunFactory
from tests.support.postgres import other_session, protocol_trace, round_trips

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


PG_ONLY = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the protocol of a PostgreSQL connection"
)


def _sent(lines: list[str]) -> list[str]:
    """The client's messages in a trace, a statement's as its text: `Parse "BEGIN"` → `BEGIN`."""
    sent = []
    for line in lines:
        parts = line.split("\t")
        if parts[0] == "F" and parts[2] in ("Sync", "Query", "Parse"):
            sent.append(parts[2] if parts[2] == "Sync" else parts[3].split('"')[3].split()[0])
    return sent


@PG_ONLY
def test_a_transaction_whose_first_work_is_a_committing_pipeline_is_one_round_trip(run):
    run.status = "cancelled"
    with transaction.atomic(), protocol_trace() as lines:
        with sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
            sql.Insert(RunEvent).add([RunEvent(run_id=run.pk, seq=999, type="step_started")])
        assert _status_seen_elsewhere(run.pk) == "cancelled"
        assert not connection.connection.autocommit  # psycopg as Django's atomic block set it
    # BEGIN, the statements and the COMMIT go together; the one Sync is the one wait.
    assert _sent(lines) == ["BEGIN", "UPDATE", "INSERT", "COMMIT", "Sync"], lines
    assert round_trips(lines) == 1
    assert RunEvent.objects.filter(run=run, seq=999).exists()


@PG_ONLY
def test_a_committing_pipeline_after_other_statements_waits_once(run):
    run.status = "cancelled"
    with transaction.atomic():
        Run.objects.select_for_update().get(pk=run.pk)
        with protocol_trace() as lines, sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
    assert _sent(lines) == ["UPDATE", "COMMIT", "Sync"], lines
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_an_error_raised_in_a_committing_pipeline_rolls_back_and_the_connection_is_usable(run):
    original = run.status
    run.status = "cancelled"
    called = []
    with pytest.raises(RuntimeError, match="in the block"), transaction.atomic():
        transaction.on_commit(lambda: called.append(True))
        with sql.pipeline(commit=True):
            SAVE_STATUS.save(run)
            raise RuntimeError("in the block")
    assert called == []
    assert Run.objects.get(pk=run.pk).status == original
    with transaction.atomic():
        SAVE_STATUS.save(run)
    assert Run.objects.get(pk=run.pk).status == "cancelled"


def test_an_error_caught_inside_the_atomic_block_leaves_it_unusable(run):
    """The committing pipeline's failure is the transaction's: its writes are gone, and more statements in
    the same atomic block are refused rather than run in a transaction of their own."""
    original = run.status
    run.status = "cancelled"
    with transaction.atomic():
        try:
            with sql.pipeline(commit=True):
                SAVE_STATUS.save(run)
                raise RuntimeError("caught")
        except RuntimeError:
            pass
        if connection.vendor == "postgresql":
            with pytest.raises(TransactionManagementError):
                Run.objects.filter(pk=run.pk).exists()
        else:  # SQLite's pipeline is a plain block: the caller decides, as in any atomic block
            assert connection.needs_rollback is False
            transaction.set_rollback(True)
    assert Run.objects.get(pk=run.pk).status == original


def _last_statement_seen(pid: int) -> str:
    with other_session() as other:
        return other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


@PG_ONLY
def test_a_pipelines_statements_reach_the_server_together_at_its_end(run):
    run.status = "cancelled"
    with transaction.atomic():
        Run.objects.filter(pk=run.pk).exists()
        before = _last_statement_seen(connection.connection.info.backend_pid)
        with sql.pipeline():
            SAVE_STATUS.save(run)
            # Still in this process's buffer: the server has not seen the UPDATE.
            assert _last_statement_seen(connection.connection.info.backend_pid) == before
        assert _last_statement_seen(connection.connection.info.backend_pid).startswith("UPDATE")
    assert Run.objects.get(pk=run.pk).status == "cancelled"


@PG_ONLY
def test_a_pipeline_larger_than_libpqs_buffer_runs_every_statement_in_order(run):
    """Past 64 KiB libpq sends what it holds by itself; the rest goes at the end, in order."""
    statuses = ["running", "cancelled"] * 200  # 400 UPDATEs, each with a 300-character comment
    with transaction.atomic(), sql.pipeline(commit=True), connection.cursor() as cursor:
        for status in statuses:
            cursor.execute(
                f"UPDATE runs_run SET status = %s WHERE id = %s /* {'x' * 300} */", [status, run.pk]
            )
    assert _status_seen_elsewhere(run.pk) == statuses[-1]
