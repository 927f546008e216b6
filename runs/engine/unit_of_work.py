"""The unit of work of one transaction on a locked run: what it will write when it saves.

An engine transaction locks a run, changes it and its step rows in memory, and writes them together at
its end: the buffered events in one INSERT, the instant steps' rows in one statement, the run, then the
audit events of its outcome. `UnitOfWork` holds that pending work; each transaction makes its own, so
nothing is shared between threads or tasks executing other runs (or the same run, one after the other).

The engine's hand-written statements (config/sql.py) live here, behind plainly named functions.
"""

from __future__ import annotations

from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from audit.services import audit_record
from config import sql
from runs.choices import StepStatus
from runs.models import Run, RunEvent, StepRun
from runs.notifications import note_events

_RUN_FIELDS = ("status", "started_at", "completed_at", "deadline_at", "result", "error", "event_seq",
               "cancel_requested_at", "terminate_requested_at", "pause_requested_at", "pause_signal",
               "total_tokens", "cost_usd")  # fmt: skip
# What executing an instant step changes on its row (execute.py `execute_instant`, outcomes.py).
_INSTANT_FIELDS = ("status", "output_data", "error", "input_data", "attempt", "attempts", "state",
                   "queued_at", "started_at", "completed_at", "dispatched_at", "wake_at")  # fmt: skip
# The columns advancing (and an instant step's execution) reads from a run's top-level rows.
ADVANCE_FIELDS = ("id", "run_id", "step_id", "type", "status", "skip_reason", "output_data", "error",
                   "parent_id", "iteration", "attempt", "attempts", "state", "queued_at",
                   "started_at")  # fmt: skip

_LOCK_RUN = sql.Select(Run, None, "{pk} = %s", for_update=True)
_SAVE_RUN = sql.Update(Run, _RUN_FIELDS, must_exist=True)  # as run.save(update_fields=…) was
_INSERT_EVENTS = sql.Insert(RunEvent, ("run", "seq", "type", "step_id", "data", "created_at"))
_SAVE_INSTANT_ROWS = sql.Update(StepRun, _INSTANT_FIELDS)
_QUEUE_ROWS = sql.Update(StepRun, ("status", "queued_at", "dispatched_at"))
# Every column but the key, as `StepRun.save()` writes them (no field of StepRun sets itself on save).
_SAVE_STEP = sql.Update(
    StepRun,
    tuple(field.name for field in StepRun._meta.concrete_fields if not field.primary_key),
    must_exist=True,
)
_READ_ROWS = sql.Select(
    StepRun, ADVANCE_FIELDS, "{run_id} = %s AND {parent_id} IS NULL", order_by="{queued_at}, {id}"
)
# A claim's reads by the step run's id: its run (locked), the step run, the run's top-level rows.
_RUN_OF_STEP = "(SELECT {run} FROM {table} WHERE {id} = %s)".format(
    run=StepRun._meta.get_field("run").column, table=StepRun._meta.db_table, id=StepRun._meta.pk.column
)
_LOCK_RUN_OF_STEP = sql.Select(Run, None, "{pk} = " + _RUN_OF_STEP, for_update=True)
# A step run by id in a given status (a claim's re-read); a leased one locked by its token (a record's).
_STEP_IN_STATUS = sql.Select(StepRun, None, "{pk} = %s AND {status} = %s")
_LOCK_LEASED_STEP = sql.Select(
    StepRun, None, "{pk} = %s AND {status} = %s AND {lease_owner} = %s", for_update=True
)
_CLAIM_PEEK = sql.Select(StepRun, ("run_id", "status", "step_id", "type", "parent_id"), "{pk} = %s")
_READ_ROWS_OF_STEP = sql.Select(
    StepRun,
    ADVANCE_FIELDS,
    f"{{run_id}} = {_RUN_OF_STEP} AND {{parent_id}} IS NULL",
    order_by="{queued_at}, {id}",
)


class UnitOfWork:
    """A locked run and the writes its transaction has pending: events (as row values, in
    `_INSERT_EVENTS`' order: a run of transform steps emits a dozen), completed instant step rows whose
    save was deferred, audit records of the run's outcome, and `rows`, the run's top-level step rows as the
    last advance left them (for the template variables of a step continued into), with `read`, each row's
    stored values as that read returned them (see `current_rows`)."""

    __slots__ = ("audit", "events", "read", "rows", "run", "unsaved_rows")

    def __init__(self, run: Run):
        self.run = run
        self.events: list[tuple] = []
        self.unsaved_rows: list[StepRun] = []
        self.audit: list[dict] = []
        self.rows: dict[str, StepRun] | None = None
        self.read: dict[str, tuple] = {}

    def carry(self, earlier: UnitOfWork) -> None:
        """Take the rows an earlier transaction of this thread on the same run read (a worker continuing
        the run): the next `current_rows` reuses those the database still holds unchanged."""
        self.rows, self.read = earlier.rows, earlier.read

    def emit(self, event_type: str, step_id: str = "", data: dict | None = None) -> None:
        """Append an event to the run's log (written by `save`, numbered by `run.event_seq`)."""
        run = self.run
        run.event_seq += 1
        self.events.append((run.id, run.event_seq, event_type, step_id, data or {}, timezone.now()))

    def take_events(self) -> list[tuple]:
        """The pending events, handed to the caller to write in this transaction (`save`, or a new run's
        INSERT: runs/fastpaths.py `insert_started_run`); the notices they call for (approvals, inputs,
        failures) are sent after the commit."""
        events, self.events = self.events, []
        note_events(self.run.id, events)
        return events

    def flush_rows(self) -> None:
        """Save the deferred instant step rows, in one statement: called before anything in the transaction
        reads step rows from the database again."""
        if self.unsaved_rows:
            rows, self.unsaved_rows = self.unsaved_rows, []
            _SAVE_INSTANT_ROWS.save_many(rows)

    def save(self, *, last: bool = False) -> None:
        """Write what the transaction changed: deferred step rows, events (one INSERT), the run, then the
        audit records. `last`: nothing follows in the outermost transaction, whose COMMIT goes with these
        writes (on PostgreSQL one round trip, so the audit chain's head stays locked only while the server
        runs the append and the commit)."""
        with sql.pipeline(commit=last):
            self.flush_rows()
            if self.events:
                _INSERT_EVENTS.add_values(self.take_events())
            _SAVE_RUN.save(self.run)
            if self.audit:
                entries, self.audit = self.audit, []
                for entry in entries:
                    audit_record(**entry, defer=True)


def lock_run(run_id: str) -> UnitOfWork:
    """The run, locked (`SELECT … FOR UPDATE`), in a new unit of work; Run.DoesNotExist when absent."""
    run = _LOCK_RUN.first(run_id)
    if run is None:
        raise Run.DoesNotExist(f"run {run_id} does not exist")
    return UnitOfWork(run)


def current_rows(work: UnitOfWork) -> dict[str, StepRun]:
    """The locked run's top-level step rows by step id, with the columns advancing and instant steps need
    (other fields load on access; saving such a row writes only its loaded fields); also kept as
    `work.rows`. See `keep_rows`."""
    return keep_rows(work, _READ_ROWS.send(work.run.id).raw())


def keep_rows(work: UnitOfWork, fetched: list[tuple]) -> dict[str, StepRun]:
    """The rows of a read of `_READ_ROWS` (unconverted) as instances: a row whose stored values are those
    an earlier read of this unit of work returned (`work.read`) keeps that read's instance, unless its
    status in hand differs (this thread changed it meanwhile); only the others are converted and made
    anew. A run of steps advanced by one worker then makes one or two instances per step, where it made
    (and decoded the JSON columns of) every row of the run each time (docs/performance.md)."""
    known, earlier = work.read, work.rows or {}
    rows: dict[str, StepRun] = {}
    read: dict[str, tuple] = {}
    for values in fetched:
        step_id = values[_STEP_ID]
        row = earlier.get(step_id)
        if row is None or known.get(step_id) != values or row.status != values[_STATUS]:
            row = _READ_ROWS.instance(values)
        rows[step_id] = row
        read[step_id] = values
    work.rows, work.read = rows, read
    return rows


# Where `keep_rows` finds a row's step id and status (both statements select the same columns).
_STEP_ID = _READ_ROWS.names.index("step_id")
_STATUS = _READ_ROWS.names.index("status")


def read_for_claim(step_run_id: str) -> tuple[Run | None, dict | None, list[tuple]]:
    """(its run, locked; the step run's id, run_id, status, step_id, type and parent_id; the top-level rows,
    unconverted, for `keep_rows`) for a claim. One round trip on PostgreSQL (a pipeline): the server runs
    the three statements in order, so the step and the rows are read after the run's lock is granted and
    are current."""
    with sql.pipeline():
        locked = _LOCK_RUN_OF_STEP.send(step_run_id)
        peek = _CLAIM_PEEK.send(step_run_id)
        top_level = _READ_ROWS_OF_STEP.send(step_run_id)
        run = locked.first()
        found = peek.values()
        fetched = top_level.raw()
    return run, (found[0] if found else None), fetched


def save_step(row: StepRun) -> None:
    """`row.save()` of a step row read whole (a statement written once); a row read with some columns
    goes the ORM's way, which writes only the loaded ones."""
    if row.get_deferred_fields():
        row.save()
    else:
        _SAVE_STEP.save(row)


def queue_rows(rows: list[StepRun]) -> list[str]:
    """Persist ready rows (already `queued` in memory) in one statement; returns their ids."""
    if rows:
        _QUEUE_ROWS.save_many(rows)
    return [row.id for row in rows]


def read_step(step_run_id: str, status: str) -> StepRun | None:
    """The step run when it has this status (else None)."""
    return _STEP_IN_STATUS.first(step_run_id, status)


def lock_for_record(run_id: str, step_run_id: str, token: str) -> tuple[UnitOfWork, StepRun | None]:
    """The run, locked, in a new unit of work (Run.DoesNotExist when absent), and then the running step run
    still held with this lease token, locked (else None: it was reclaimed). One round trip on PostgreSQL
    (a pipeline; the server takes the locks in this order)."""
    with sql.pipeline():
        locked = _LOCK_RUN.send(run_id)
        leased = _LOCK_LEASED_STEP.send(step_run_id, StepStatus.RUNNING, token)
        run = locked.first()
        row = leased.first()
    if run is None:
        raise Run.DoesNotExist(f"run {run_id} does not exist")
    return UnitOfWork(run), row


def claim_step(step_run_id: str, expected: str, token: str, lease_expires_at, now) -> bool:
    """Compare-and-set the step run from status `expected` to `running` with this lease token: its attempt
    counted, its start kept if it had one, its dispatch and wake-up cleared (and, claimed straight from
    `pending`, queued now). True when the row was in that status and is ours."""
    db = connections[DEFAULT_DB_ALIAS]
    ops = db.ops
    lease, moment = ops.adapt_datetimefield_value(lease_expires_at), ops.adapt_datetimefield_value(now)
    from_pending = expected == StepStatus.PENDING
    queued = [moment] if from_pending else []
    params = [StepStatus.RUNNING, token, lease, moment, *queued, step_run_id, expected]
    with sql.cursor(db) as cursor:
        cursor.execute(_claim_statement(db.vendor, from_pending), params)
        return cursor.rowcount == 1


@cache
def _claim_statement(vendor: str, from_pending: bool) -> str:
    """`claim_step`'s UPDATE, written once per vendor (the ORM's with F() and Coalesce cost more Python to
    compile than the rest of a claim)."""
    column = {field.name: connections[DEFAULT_DB_ALIAS].ops.quote_name(field.column)
              for field in StepRun._meta.concrete_fields}  # fmt: skip
    queued = f", {column['queued_at']} = %s" if from_pending else ""
    return (
        f"UPDATE {connections[DEFAULT_DB_ALIAS].ops.quote_name(StepRun._meta.db_table)} "
        f"SET {column['status']} = %s, {column['lease_owner']} = %s, {column['lease_expires_at']} = %s, "
        f"{column['attempt']} = {column['attempt']} + 1, "
        f"{column['started_at']} = COALESCE({column['started_at']}, %s), "
        f"{column['dispatched_at']} = NULL, {column['wake_at']} = NULL{queued} "
        f"WHERE {column['id']} = %s AND {column['status']} = %s"
    )
