"""Statements of the hot paths written once, with the ORM's own field conversions.

Building a queryset's SQL costs more Python than the database spends running it: a worker's transaction
that executes a run of transform steps spent most of its time (and of the SQLite write lock it holds)
compiling a handful of small statements again and again. The few statements on those paths are written
here once per database vendor from the model's metadata (table and column names quoted by the backend),
their values prepared by the fields (`get_db_prep_save`, or `_preparer`'s shortcut to the same result) and
their rows converted by the fields and the backend (`from_db_value`, the backend's converters) and turned
into instances with `Model.from_db`, as the ORM does. Everything else keeps using the ORM.

Only a few modules build statements here, each behind plainly named functions tested equal to the ORM:
the engine's unit of work (runs/engine/unit_of_work.py), the reconciler, the broker, admission
(runs/concurrency.py), the trigger's and run read's fast paths (runs/fastpaths.py, workflows/fastpaths.py),
the security policy read (runs/engine/secrets.py) and the audit append; `Rows` reads a `values_list` into
plain rows (the run read's columns).
"""

from __future__ import annotations

import json
import threading
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from functools import cache

import orjson
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models
from django.db.backends.utils import CursorDebugWrapper

_DOCUMENT_ROWS = 5_000  # rows per statement of a JSON document (see `_write_document`)
_local = threading.local()  # `checks`: the row-count checks of the pipeline open in this thread


def _postgresql(db) -> bool:
    return db.vendor == "postgresql" and settings.BATON_PG_PREPARED_STATEMENTS


def _preparing(db) -> bool:
    """Statements are bound on the server and prepared on a connection that lives on (a worker's): a web
    request's connection ends with the request (CONN_MAX_AGE=0) and would prepare nothing it runs again."""
    return _postgresql(db) and db.settings_dict["CONN_MAX_AGE"] != 0


def _cursor(db):
    """A cursor for these statements. On a worker's PostgreSQL connection it binds values on the server and
    prepares each statement the second time the connection runs it (psycopg's `prepare_threshold`): the
    worker then skips the parsing and planning of every hot statement, which had been a large share of the
    database's work in a run of transform steps. Elsewhere, and for the ORM, Django's own cursor."""
    if not _preparing(db):
        return db.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    db.close_if_health_check_failed()
    db.ensure_connection()
    if db.connection.prepare_threshold is None:  # Django's default; only server-binding cursors use it
        db.connection.prepare_threshold = 1
    with db.wrap_database_errors:
        cursor = ServerBindingCursor(db.connection)
    return _LoggedCursor(cursor, db) if db.queries_logged else db.make_cursor(cursor)


class _LoggedCursor(CursorDebugWrapper):
    """Logs the statement as sent, its values apart (psycopg keeps no text of a prepared execution for
    Django's `last_executed_query`)."""

    def debug_sql(self, sql=None, params=None, use_last_executed_query=False, many=False):
        return super().debug_sql(sql, params, use_last_executed_query=False, many=many)


@contextmanager
def pipeline(*, commit: bool = False):
    """On PostgreSQL, the statements run in this block are sent without waiting for each other: the server
    runs them in order, and the client waits once, when it reads a result (for everything sent before it)
    and at the end of the block. An error surfaces at that wait, from whichever statement failed, and the
    caller's transaction rolls back as with any failed statement. Elsewhere a plain block.

    For statements whose results are read at the end or not at all (`Select.send`, `Update`, `Insert`); a
    row-count check (`Update(must_exist=True)`, `after_pipeline`) runs when the block ends.

    `commit`: the block is the last database work of the outermost `transaction.atomic()` block, and its
    COMMIT goes with its statements (one round trip for both, and no locks held while the client gets
    round to sending the COMMIT: on a busy machine a preempted client held its rows locked for whole time
    slices). When the block is the transaction's first work, its BEGIN goes with them too (`_begun_here`).
    Django's own commit, when the atomic block exits, then finds nothing to commit; its `on_commit`
    callbacks run then, as usual. The checks run after the commit: only rows the transaction
    holds locked may be checked. Nested in a savepoint or another atomic block (a test's, say), or off
    PostgreSQL, the commit is left to the atomic block as usual; so it is inside `commit_held()` (an
    outermost block that writes more after its callee's last work: the stored answer of `@idempotent`)."""
    db = connections[DEFAULT_DB_ALIAS]
    if not _postgresql(db) or getattr(_local, "checks", None) is not None:
        yield
        return
    db.close_if_health_check_failed()  # before the pipeline is bound to this connection
    db.ensure_connection()
    committing = commit and not getattr(_local, "held", 0) and _outermost(db)
    # The transaction has run nothing yet: its BEGIN goes with the statements too (psycopg's own BEGIN in a
    # pipeline waits for the server's answer before anything else is sent).
    begins = committing and _plain_idle(db.connection)
    _local.checks = checks = []
    try:
        if begins:
            with _begun_here(db):
                yield
        else:
            with db.wrap_database_errors, db.connection.pipeline() as sending:
                _send_together(sending)
                yield
                if committing and _outermost(db):
                    _queue(db.connection, b"COMMIT")  # the block's end waits once, for everything
    finally:
        _local.checks = None
    for check in checks:
        check()


def _plain_idle(pg) -> bool:
    """Is this psycopg connection outside any transaction, and would its BEGIN be a plain `BEGIN`?"""
    from psycopg.pq import TransactionStatus

    return (
        pg.info.transaction_status == TransactionStatus.IDLE
        and not pg.autocommit
        and pg.isolation_level is None
        and pg.read_only is None
        and pg.deferrable is None
    )


def _send_together(sending) -> None:
    """The statements of this psycopg pipeline go to the server together: psycopg flushes the pipeline to the
    socket after every statement (a `poll` and a `send` each, 10 µs of CPU a statement here), and the server
    gets them one by one. Here each is left in libpq's buffer, which libpq itself sends when it grows past
    64 KiB, and the buffer goes with the first Sync or flush request: at the block's end, or when a result is
    read in it (psycopg asks for a flush before it waits for one). The order is kept, the server runs the
    statements as before, and an error surfaces where it did (at the wait). psycopg's own `_communicate_gen`
    does the sending when a Sync is queued; tests/config/test_sql_commit.py checks when the server sees a
    statement."""
    communicate, commands = sending._communicate_gen, sending.command_queue
    sync = sending.pgconn.pipeline_sync

    def buffered():
        syncing = sync in commands
        while commands:
            commands.popleft()()  # into libpq's buffer; PQpipelineSync also flushes it
        if syncing:
            yield from communicate()

    sending._communicate_gen = buffered


def _queue(pg, command: bytes) -> None:
    """Queue a transaction command in the open pipeline, to be sent with the next statement or the block's
    end, without waiting for its answer (psycopg's `commit()` waits for it, and the pipeline's end then waits
    again). psycopg's own way to queue its BEGIN and COMMIT: a cursor's `execute` would also flush the
    pipeline to the socket each time. tests/config/test_sql_commit.py checks the messages sent."""
    pg.wait(pg._exec_command(command))


@contextmanager
def _begun_here(db):
    """The committing pipeline of a transaction that has run nothing yet: psycopg is switched to autocommit
    for the block, so that it sends no BEGIN of its own, and the block's statements go between an explicit
    BEGIN and COMMIT, all in one round trip. On any error the transaction is rolled back here and the atomic
    block is marked for rollback; psycopg is switched back either way, the connection then outside any
    transaction, as Django's commit at the atomic block's end expects."""
    pg = db.connection
    pg.autocommit = True
    try:
        with db.wrap_database_errors, pg.pipeline() as sending:
            _send_together(sending)
            _queue(pg, b"BEGIN")
            yield
            if _outermost(db):
                _queue(pg, b"COMMIT")
            else:  # a nested block failed and marked the transaction for rollback
                _queue(pg, b"ROLLBACK")
    except BaseException:
        db.needs_rollback = True
        raise
    finally:
        _switch_back(db)


def _switch_back(db) -> None:
    from psycopg.pq import TransactionStatus

    pg = db.connection
    if pg.closed:
        return
    with db.wrap_database_errors:
        if pg.info.transaction_status != TransactionStatus.IDLE:
            db.needs_rollback = True
            pg.rollback()
        pg.autocommit = False


@contextmanager
def commit_held():
    """An outermost atomic block whose callees' committing pipelines must not commit it: it has more to
    write after them, which commits with their work or not at all (`@idempotent`'s stored answer)."""
    _local.held = getattr(_local, "held", 0) + 1
    try:
        yield
    finally:
        _local.held -= 1


def _outermost(db) -> bool:
    """Is the open transaction the outermost atomic block's own, with nothing to roll back?"""
    return (
        db.in_atomic_block
        and len(db.atomic_blocks) == 1
        and not db.savepoint_ids
        and not db.needs_rollback
        and not db.closed_in_transaction
        and not db.get_autocommit()
    )


def after_pipeline(check) -> None:
    """Call `check()` when the open `pipeline()` has its results (at once outside one): for a row count or
    a RETURNING row that only the server's answer tells."""
    checks = getattr(_local, "checks", None)
    if checks is not None:
        checks.append(check)
    else:
        check()


def cursor(db=None):
    """A cursor for a hand-written statement of a hot path: on a worker's PostgreSQL connection it binds and
    prepares like this module's statements (see `_cursor`); elsewhere Django's own."""
    return _cursor(db or connections[DEFAULT_DB_ALIAS])


# Field classes whose `get_db_prep_save` of a value of the expected type is the same as the backend's own
# adapter (or nothing at all): `to_python` and `get_prep_value` then hand the value through unchanged.
# Exact classes only: a subclass may convert. Everything else, and any other value, goes the ORM's way.
_TEXT = (models.CharField, models.TextField)
_INTEGERS = (
    models.IntegerField,
    models.BigIntegerField,
    models.SmallIntegerField,
    models.PositiveIntegerField,
    models.PositiveBigIntegerField,
    models.PositiveSmallIntegerField,
)


@cache
def _preparer(field):
    """`prepare(value, db)`, as `field.get_db_prep_save(value, db)`, without the fields' layers."""
    return _make_preparer(field)


def _per_tuple(function):
    """`function(fields)` kept for each tuple of fields, found by the tuple's identity: a statement's fields
    are a tuple made once, and hashing a tuple (as `functools.cache` does) hashes each field, in Python. Each
    tuple is kept with its result, so its identity is not reused while it is found by it."""
    kept: dict[int, tuple] = {}

    def kept_function(fields: tuple):
        found = kept.get(id(fields))
        if found is None or found[0] is not fields:
            if len(kept) >= 10_000:
                kept.clear()
            found = kept[id(fields)] = (fields, function(fields))
        return found[1]

    return kept_function


@_per_tuple
def _preparers(fields: tuple) -> tuple:
    """(attname, prepare) of each field of a statement (its fields are a tuple, made once)."""
    return tuple((field.attname, _preparer(field)) for field in fields)


def _make_preparer(field):
    slow = field.get_db_prep_save
    if field.many_to_one or field.one_to_one:  # as ForeignKey.get_db_prep_save: its target field prepares
        target, empty_is_null = _preparer(field.target_field), not field.target_field.empty_strings_allowed

        def prepare(value, db):
            empty = value == "" and (empty_is_null or db.features.interprets_empty_strings_as_nulls)
            if value is None or empty:
                return None
            return target(value, db)

        return prepare
    kind = type(field)
    # None is None in each of these fields' own preparation (SQL NULL).
    if kind in _TEXT:  # a str subclass (a choices enum's member) is handed through unchanged too
        return lambda value, db: value if value is None or isinstance(value, str) else slow(value, db)
    if kind in _INTEGERS:
        internal = field.get_internal_type()
        return lambda value, db: (
            db.ops.adapt_integerfield_value(value, internal) if type(value) is int
            else None if value is None else slow(value, db)
        )  # fmt: skip
    if kind is models.BooleanField:
        return lambda value, db: value if value is None or type(value) is bool else slow(value, db)
    if kind is models.DateTimeField:
        return lambda value, db: (
            db.ops.adapt_datetimefield_value(value) if type(value) is datetime and value.tzinfo is not None
            else None if value is None else slow(value, db)
        )  # fmt: skip
    if kind is models.JSONField:
        encoder = field.encoder
        return lambda value, db: (
            db.ops.adapt_json_value(value, encoder) if type(value) in (dict, list)
            else None if value is None else slow(value, db)
        )  # fmt: skip
    return slow


def _columns(model, names) -> tuple:
    return tuple(model._meta.get_field(name) for name in names)


def _where(model, where: str) -> str:
    """`where` with `{field}` placeholders replaced by quoted column names."""
    quote = connection.ops.quote_name
    columns = {field.name: quote(field.column) for field in model._meta.concrete_fields}
    columns.update({field.attname: quote(field.column) for field in model._meta.concrete_fields})
    columns["pk"] = quote(model._meta.pk.column)
    return where.format(**columns)


# Several rows in one statement on PostgreSQL: a JSON document of the rows (an array of objects keyed by
# column), which `json_populate_recordset` turns into rows of the table's own type, each value read by its
# column's input function as a literal of the column's type would be (a value too long for a varchar(n) is
# refused, as by an INSERT, where a cast of an array to varchar(n)[] would cut it). The client sends one
# text value, encoded by json.dumps in C, instead of adapting every value (or, for arrays, every element)
# in Python; the statement's text is the same for any number of rows, so a worker prepares it once
# (docs/performance.md "Hand-written statements").
_DOCUMENT_AS_IS = frozenset({
    "CharField", "TextField", "BooleanField", "AutoField", "BigAutoField", "SmallAutoField", "IntegerField",
    "BigIntegerField", "SmallIntegerField", "PositiveIntegerField", "PositiveBigIntegerField",
    "PositiveSmallIntegerField",
})  # fmt: skip


class _NotInDocument(Exception):
    """A value the document cannot carry as the field would store it (JSON null in a JSON column)."""


def _recordset(model) -> str:
    table = connection.ops.quote_name(model._meta.db_table)
    return f"json_populate_recordset(NULL::{table}, %s::json)"


@_per_tuple
def _document_fields(fields: tuple) -> tuple | None:
    """(column, to_json, as_is) of each field: `to_json(value, db)` is the field's prepared value as JSON
    gives it to the column's input function, and a value whose type is in `as_is` is that already (most
    values: the document skips a call per value for them). None when a field's values cannot go in a
    document."""
    found = []
    for field in fields:
        to_json = _to_json(field)
        if to_json is None:
            return None
        found.append((field.column, to_json, _as_is(field)))
    return tuple(found)


def _as_is(field) -> frozenset:
    """The types of value that `_to_json(field)` gives back as they are (or as JSON writes them alike: an
    integer field's prepared value is an int subclass), from the field's preparation (`_make_preparer`)."""
    target = field
    while target.many_to_one or target.one_to_one:
        if not target.target_field.empty_strings_allowed:  # "" would become NULL
            return frozenset()
        target = target.target_field
    kind, internal = type(target), target.get_internal_type()
    if kind in _TEXT and internal in _DOCUMENT_AS_IS:
        return frozenset({str, type(None)})
    if kind in _INTEGERS and internal in _DOCUMENT_AS_IS:
        return frozenset({int, type(None)})
    if kind is models.BooleanField:
        return frozenset({bool, type(None)})
    if kind is models.JSONField and target is field and field.encoder is None:
        return _JSON_PLAIN | {type(None)}
    if kind in (models.DateTimeField, models.DecimalField):  # NULL is null; a value is written by `_to_json`
        return frozenset({type(None)})
    return frozenset()


def _to_json(field):
    target = field
    while target.many_to_one or target.one_to_one:  # a foreign key's values are its target field's
        target = target.target_field
    kind, prepare = target.get_internal_type(), _preparer(field)
    if kind in _DOCUMENT_AS_IS:
        return prepare
    if kind == "DateTimeField":
        return lambda value, db: _iso(prepare(value, db))
    if kind == "DecimalField":
        return lambda value, db: _decimal(prepare(value, db))
    if kind == "JSONField" and field.encoder is None:  # the document is written with json.dumps as Jsonb is
        # A plain value goes as it is (the field would only wrap it in a Jsonb), SQL NULL as null.
        return lambda value, db: (
            value if value is None or type(value) in _JSON_PLAIN else _json(prepare(value, db))
        )
    return None


_JSON_PLAIN = frozenset({dict, list, str, int, float, bool})


def _iso(value):
    return value.isoformat() if isinstance(value, datetime) else value


def _decimal(value):
    return str(value) if isinstance(value, Decimal) else value


def _json(value):
    """A JSON column's prepared value: SQL NULL is a null in the document, a JSON `null` cannot go in one."""
    if value is None:
        return None
    wrapped = getattr(value, "obj", _NotInDocument)  # psycopg's Jsonb, as the backend adapts JSON values
    if wrapped is _NotInDocument or wrapped is None:
        raise _NotInDocument
    return wrapped


def _write_document(db, compiled, fields, rows) -> bool:
    """PostgreSQL: write `rows` (each the values of `fields`, in order) with the statement `compiled(vendor)`
    returns (one of `_recordset`), in chunks of `_DOCUMENT_ROWS`. False, having written nothing, elsewhere
    or when a value cannot go in a document."""
    keyed = _document_fields(fields) if db.vendor == "postgresql" else None
    if keyed is None:
        return False
    sql = compiled(db.vendor)
    try:
        documents = [_document(keyed, rows[start : start + _DOCUMENT_ROWS], db)
                     for start in range(0, len(rows), _DOCUMENT_ROWS)]  # fmt: skip
    except _NotInDocument:
        return False
    with _cursor(db) as cursor:
        for document in documents:
            cursor.execute(sql, [document])
    return True


def _document(keyed, rows, db) -> str:
    """The rows as JSON, as json.dumps writes them (how the backend writes a JSON column's value, Jsonb), by
    orjson: the same document (a float that is not a number aside, which PostgreSQL refuses from json.dumps
    and Baton never stores) ten times faster; json.dumps writes what orjson refuses (an integer beyond 64
    bits, a string that is not valid UTF-8)."""
    document = [
        {
            column: value if type(value) in as_is else to_json(value, db)
            for value, (column, to_json, as_is) in zip(values, keyed, strict=True)
        }
        for values in rows
    ]
    try:
        return orjson.dumps(document, option=_ORJSON_AS_JSON).decode()
    except orjson.JSONEncodeError:
        return json.dumps(document)


# Keys as json.dumps writes them; dates, times and dataclasses left to json.dumps, which refuses them.
_ORJSON_AS_JSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_PASSTHROUGH_DATACLASS


class Select:
    """`SELECT <fields> FROM <model's table> WHERE <where>` returning model instances (fields not
    selected are deferred, as with `.only()`)."""

    def __init__(self, model, fields, where: str, *, order_by: str = "", limit: int | None = None,
                 for_update: bool | str = False):  # fmt: skip
        self.model = model
        # The primary key always (as with `.only()`), all in the model's order, as `Model.from_db` expects.
        wanted = {model._meta.get_field(name).attname for name in fields} if fields else None
        if wanted is not None:
            wanted.add(model._meta.pk.attname)
        self.names = tuple(
            f.attname for f in model._meta.concrete_fields if wanted is None or f.attname in wanted
        )
        self.where = where
        self.order_by = order_by
        self.limit = limit
        self.for_update = for_update

    @cache  # noqa: B019  (one per statement and vendor; the statements are module constants)
    def _compiled(self, vendor: str):
        quote = connection.ops.quote_name
        fields = _columns(self.model, self.names)
        table = quote(self.model._meta.db_table)
        sql = "SELECT {} FROM {} WHERE {}".format(
            ", ".join(quote(field.column) for field in fields), table, _where(self.model, self.where)
        )
        if self.order_by:
            sql += " ORDER BY " + _where(self.model, self.order_by)
        if self.limit is not None:
            sql += f" LIMIT {int(self.limit)}"
        if self.for_update and connection.features.has_select_for_update:
            # A string names the lock where the backend has it ("FOR NO KEY UPDATE" on PostgreSQL).
            strength = self.for_update if isinstance(self.for_update, str) else "FOR UPDATE"
            sql += f" {strength if connection.vendor == 'postgresql' else 'FOR UPDATE'}"
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(self.model._meta.db_table)
            found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
            if found:
                converters.append((index, found, column))
        return sql, converters

    def rows(self, *params) -> list[tuple | list]:
        """The converted values of each row, in the order of `self.names` (the model's field order)."""
        return self.send(*params).rows()

    def send(self, *params) -> Pending:
        """Run the statement and return its rows to read later: in a `pipeline()`, sent now and read when
        asked, so that several statements cost one round trip."""
        db = connections[DEFAULT_DB_ALIAS]
        sql, converters = self._compiled(db.vendor)
        cursor = _cursor(db)
        try:
            cursor.execute(sql, params)
        except BaseException:
            cursor.close()
            raise
        return Pending(self, db, cursor, converters)

    def values(self, *params) -> list[dict]:
        """The converted values of each row by attribute name (`run_id`, not `run`)."""
        return self.send(*params).values()

    def all(self, *params) -> list:
        from_db, names = self.model.from_db, self.names
        return [from_db(DEFAULT_DB_ALIAS, names, row) for row in self.rows(*params)]

    def first(self, *params):
        found = self.all(*params)
        return found[0] if found else None

    def instance(self, raw):
        """The instance of one row of `Pending.raw()` (its values converted as `rows` converts them)."""
        db = connections[DEFAULT_DB_ALIAS]
        converters = self._compiled(db.vendor)[1]
        return self.model.from_db(DEFAULT_DB_ALIAS, self.names, _convert(raw, converters, db))


def _convert(row, converters, db):
    """A fetched row with the fields' and the backend's converters applied."""
    if not converters:
        return row
    row = list(row)
    for index, found, column in converters:
        value = row[index]
        for converter in found:
            value = converter(value, column, db)
        row[index] = value
    return row


class Pending:
    """The rows of a `Select.send`, read (and converted) on demand."""

    def __init__(self, select: Select, db, cursor, converters):
        self.select, self.db, self.cursor, self.converters = select, db, cursor, converters

    def raw(self) -> list[tuple]:
        """The rows as the driver returns them, unconverted: cheap to compare with an earlier read of the
        same statement (`Select.instance` converts one when it is needed)."""
        with self.cursor as cursor, self.db.wrap_database_errors:
            return cursor.fetchall()

    def rows(self) -> list[tuple | list]:
        fetched = self.raw()
        if not self.converters:
            return fetched
        db, converters = self.db, self.converters
        return [_convert(row, converters, db) for row in fetched]

    def values(self) -> list[dict]:
        names = self.select.names
        return [dict(zip(names, row, strict=True)) for row in self.rows()]

    def all(self) -> list:
        from_db, names = self.select.model.from_db, self.select.names
        return [from_db(DEFAULT_DB_ALIAS, names, row) for row in self.rows()]

    def first(self):
        found = self.all()
        return found[0] if found else None


class Update:
    """`UPDATE <model's table> SET <fields> WHERE <where>`, the new values taken from instances."""

    def __init__(self, model, fields, where: str = "{pk} = %s", *, must_exist: bool = False):
        self.model = model
        self.names = tuple(fields)
        self.where = where
        self.must_exist = must_exist

    @cache  # noqa: B019
    def _compiled(self, vendor: str):
        quote = connection.ops.quote_name
        fields = _columns(self.model, self.names)
        sql = "UPDATE {} SET {} WHERE {}".format(
            quote(self.model._meta.db_table),
            ", ".join(f"{quote(field.column)} = %s" for field in fields),
            _where(self.model, self.where),
        )
        return sql, fields

    @staticmethod
    def _values(fields, instance, db) -> list:
        return [prepare(getattr(instance, name), db) for name, prepare in _preparers(fields)]

    def save(self, instance, *params) -> None:
        """Write the fields of one instance (`params` for the WHERE, its pk by default). With `must_exist`,
        like `save(update_fields=…)`, it is an error when no row was there to update."""
        db = connections[DEFAULT_DB_ALIAS]
        sql, fields = self._compiled(db.vendor)
        with _cursor(db) as cursor:
            cursor.execute(sql, [*self._values(fields, instance, db), *(params or (instance.pk,))])
            if self.must_exist:

                def check(model=self.model.__name__, pk=instance.pk):
                    if cursor.rowcount != 1:
                        raise DatabaseError(f"{model} {pk}: no row was updated")

                # In a pipeline, the row count is known once its results are in; outside one, now (before
                # the cursor closes: psycopg forgets it then).
                after_pipeline(check)

    @cache  # noqa: B019
    def _compiled_document(self, vendor: str) -> str:
        """PostgreSQL: `WITH v AS (… json_populate_recordset(…)) UPDATE … FROM v WHERE pk = v.pk AND pk =
        ANY(ARRAY(SELECT pk FROM v))`, one statement (and one prepared statement on a worker's connection)
        for any number of rows (see `_write_document`)."""
        quote = connection.ops.quote_name
        table, pk = quote(self.model._meta.db_table), quote(self.model._meta.pk.column)
        sets = ", ".join(
            f"{quote(field.column)} = v.{quote(field.column)}" for field in self._compiled(vendor)[1]
        )
        # The rows are looked up by their keys as an array (`= ANY`), not only joined on them: the planner
        # knows only a function's declared row estimate (100), against which hashing a scan of the whole table
        # looked cheaper; the array's estimate does not depend on the values, so a prepared statement keeps
        # one generic plan (docs/performance.md "Hand-written statements").
        return (
            f"WITH v AS MATERIALIZED (SELECT * FROM {_recordset(self.model)}) "
            f"UPDATE {table} SET {sets} FROM v "
            f"WHERE {table}.{pk} = v.{pk} AND {table}.{pk} = ANY(ARRAY(SELECT {pk} FROM v))"
        )

    @cache  # noqa: B019
    def _written(self, vendor: str) -> tuple:
        """The fields of a row of `_compiled_document`'s document: the primary key, then the fields set."""
        return (self.model._meta.pk, *self._compiled(vendor)[1])

    def save_many(self, instances) -> None:
        """Write each instance's fields (WHERE pk): on PostgreSQL one statement of a JSON document (see
        `_write_document`), elsewhere one `executemany` (one `execute` for a single instance: psycopg's
        executemany opens a pipeline of its own)."""
        db = connections[DEFAULT_DB_ALIAS]
        sql, fields = self._compiled(db.vendor)
        if len(instances) > 1 and db.vendor == "postgresql":
            written = self._written(db.vendor)
            rows = [[getattr(row, field.attname) for field in written] for row in instances]
            if _write_document(db, self._compiled_document, written, rows):
                return
        params = [[*self._values(fields, row, db), row.pk] for row in instances]
        with _cursor(db) as cursor:
            if len(params) == 1:
                cursor.execute(sql, params[0])
            else:
                cursor.executemany(sql, params)


class Insert:
    """`INSERT INTO <model's table> (<fields>) VALUES (…)` for instances whose primary key is set (or
    generated by the database and not needed afterwards)."""

    def __init__(self, model, fields=None):
        self.model = model
        self.names = tuple(fields) if fields else tuple(
            f.attname for f in model._meta.concrete_fields if not f.primary_key or not f.db_returning
        )  # fmt: skip

    @cache  # noqa: B019
    def _compiled(self, vendor: str):
        quote = connection.ops.quote_name
        fields = _columns(self.model, self.names)
        sql = "INSERT INTO {} ({}) VALUES ".format(
            quote(self.model._meta.db_table), ", ".join(quote(field.column) for field in fields)
        )
        return sql, "({})".format(", ".join(["%s"] * len(fields))), fields

    @cache  # noqa: B019
    def _compiled_document(self, vendor: str) -> str:
        """PostgreSQL: `INSERT … SELECT … FROM json_populate_recordset(…)`, one statement (and one prepared
        statement on a worker's connection) for any number of rows (see `_write_document`)."""
        quote = connection.ops.quote_name
        columns = ", ".join(quote(field.column) for field in self._compiled(vendor)[2])
        sql = self._compiled(vendor)[0]
        return sql.replace(" VALUES ", f" SELECT {columns} FROM {_recordset(self.model)}")

    def add(self, instances) -> None:
        """One multi-row INSERT: on PostgreSQL one statement of a JSON document (see `_write_document`),
        elsewhere VALUES in batches of the backend's size, as bulk_create."""
        db = connections[DEFAULT_DB_ALIAS]
        _sql, _row, fields = self._compiled(db.vendor)
        self._write(db, [_saved_values(fields, instance) for instance in instances])
        self._added(instances)

    def add_values(self, rows) -> None:
        """As `add`, from each row's values in the order of `self.names`: no model instance made per row,
        and no field's `pre_save` (so only for fields whose value is stored as given, not `auto_now`)."""
        self._write(connections[DEFAULT_DB_ALIAS], rows)

    def _write(self, db, rows) -> None:
        sql, row, fields = self._compiled(db.vendor)
        if len(rows) > 1 and _write_document(db, self._compiled_document, fields, rows):
            return
        preparers = _preparers(fields)
        batch = max(1, db.ops.bulk_batch_size(fields, rows)) if len(rows) > 1 else 1
        with _cursor(db) as cursor:
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                params = [
                    prepare(value, db)
                    for values in chunk
                    for value, (_name, prepare) in zip(values, preparers, strict=True)
                ]
                cursor.execute(sql + ", ".join([row] * len(chunk)), params)

    @staticmethod
    def _added(instances) -> None:
        for instance in instances:
            instance._state.adding = False
            instance._state.db = DEFAULT_DB_ALIAS


_PLAIN_PRE_SAVE = (models.Field.pre_save, models.DateField.pre_save, models.DateTimeField.pre_save)


@_per_tuple
def _readers(fields: tuple) -> tuple:
    """(attname, field, plain) of each field: plain when its `pre_save` only reads the attribute (Field's
    own, or a date field's without auto_now or auto_now_add)."""
    return tuple(
        (
            field.attname,
            field,
            type(field).pre_save in _PLAIN_PRE_SAVE
            and not getattr(field, "auto_now", False)
            and not getattr(field, "auto_now_add", False),
        )
        for field in fields
    )


def _saved_values(fields: tuple, instance) -> list:
    """`[field.pre_save(instance, True) for field in fields]`: most values read from the instance's dict."""
    values = instance.__dict__
    return [
        values[attname] if plain and attname in values else field.pre_save(instance, True)
        for attname, field, plain in _readers(fields)
    ]


def insert_together(*writes: tuple[Insert, list]) -> None:
    """Each `(insert, items)` in order, the items model instances (as `Insert.add` takes them) or rows of
    values (as `Insert.add_values`): on PostgreSQL in one statement (`WITH w0 AS (INSERT …), w1 AS (INSERT
    …) INSERT …`, each of a JSON document, see `_write_document`; Django declares foreign keys deferred, so
    one between them is checked at the COMMIT), elsewhere, or when a value cannot go in a document, one
    statement (or batch) each."""
    db = connections[DEFAULT_DB_ALIAS]
    writes = [(insert, items) for insert, items in writes if items]
    prepared = []
    for insert, items in writes:
        fields = insert._compiled(db.vendor)[2]
        instances = isinstance(items[0], models.Model)
        rows = [_saved_values(fields, item) for item in items] if instances else items
        prepared.append((insert, fields, rows, items if instances else ()))
    documents = _documents(db, prepared) if db.vendor == "postgresql" and len(writes) > 1 else None
    if documents is not None:
        statement = _together(tuple(insert for insert, _fields, _rows, _instances in prepared), db.vendor)
        with _cursor(db) as cursor:
            cursor.execute(statement, documents)
    else:
        for insert, _fields, rows, _instances in prepared:
            insert._write(db, rows)
    for _insert, _fields, _rows, instances in prepared:
        Insert._added(instances)


def _documents(db, prepared) -> list[str] | None:
    """The rows of each write as one JSON document (`_document`), or None when one cannot be."""
    documents = []
    for _insert, fields, rows, _instances in prepared:
        keyed = _document_fields(fields)
        if keyed is None or len(rows) > _DOCUMENT_ROWS:
            return None
        try:
            documents.append(_document(keyed, rows, db))
        except _NotInDocument:
            return None
    return documents


@cache
def _together(inserts: tuple[Insert, ...], vendor: str) -> str:
    """PostgreSQL: the document statements of `inserts` as one (the last is the main statement)."""
    statements = [insert._compiled_document(vendor) for insert in inserts]
    ctes = ", ".join(f"w{index} AS ({statement})" for index, statement in enumerate(statements[:-1]))
    return f"WITH {ctes} {statements[-1]}"


class Prepared:
    """A queryset whose SQL the ORM builds once (per database vendor), then run again with new values:
    `build(*placeholders)` returns the queryset, each placeholder standing where a value goes. The rows
    become instances as with the queryset itself (fields converted by the compiler's converters, annotations
    as attributes), read from the cursor directly rather than through a RawQuerySet, whose per-query column
    mapping cost more than the query (docs/performance.md, issue 20). For lookups that pass a value through
    unchanged (`=`, `<`, …), which compiling checks; no `select_related`."""

    def __init__(self, model, build, arity: int):
        self.model = model
        self.build = build
        self.arity = arity

    @cache  # noqa: B019
    def _compiled(self, vendor: str):
        marks = [f"\x00baton-parameter-{index}\x00" for index in range(self.arity)]
        compiler = self.build(*marks).query.get_compiler(DEFAULT_DB_ALIAS)
        sql, params = compiler.as_sql()
        positions = []
        for mark in marks:
            found = [index for index, param in enumerate(params) if param == mark]
            if len(found) != 1:
                raise ValueError(f"{self.model.__name__}: a placeholder is not exactly one parameter")
            positions.append(found[0])
        if compiler.klass_info is None or compiler.klass_info.get("related_klass_infos"):
            raise ValueError(f"{self.model.__name__}: Prepared reads one model's rows (no select_related)")
        fields = compiler.klass_info["select_fields"]
        names = tuple(compiler.select[index][0].target.attname for index in fields)
        annotations = tuple(compiler.annotation_col_map.items())
        converters = tuple(compiler.get_converters([column for column, _, _ in compiler.select]).items())
        return sql, tuple(params), positions, names, (fields[0], fields[-1] + 1), annotations, converters

    def all(self, *values) -> list:
        sql, params, positions, names, (start, end), annotations, converters = self._compiled(
            connection.vendor
        )
        params = list(params)
        for position, value in zip(positions, values, strict=True):
            params[position] = value
        db = connections[DEFAULT_DB_ALIAS]
        with db.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall()
        from_db = self.model.from_db
        found = []
        for row in rows:
            if converters:
                row = list(row)
                for index, (functions, expression) in converters:
                    value = row[index]
                    for function in functions:
                        value = function(value, expression, db)
                    row[index] = value
            instance = from_db(DEFAULT_DB_ALIAS, names, row[start:end])
            for name, index in annotations:
                setattr(instance, name, row[index])
            found.append(instance)
        return found

    def first(self, *values):
        found = self.all(*values)
        return found[0] if found else None


class Row:
    """A row read by `Rows`: its columns as attributes, named as the model's fields (`workflow_id`, …)."""

    def __init__(self, names, values):
        self.__dict__.update(zip(names, values, strict=True))


class Rows:
    """A `values_list` queryset whose SQL the ORM builds once per database vendor (as `Prepared` does for
    instances), run again with new values; its rows come back as `Row`s, each column
    converted by the compiler's converters, as the ORM would. For the run read: only the columns the API
    shows, and no model instance per row."""

    def __init__(self, build, arity: int):
        self.build = build
        self.arity = arity

    @cache  # noqa: B019
    def _compiled(self, vendor: str):
        marks = [f"\x00baton-parameter-{index}\x00" for index in range(self.arity)]
        query = self.build(*marks).query
        compiler = query.get_compiler(DEFAULT_DB_ALIAS)
        sql_text, params = compiler.as_sql()
        positions = []
        for mark in marks:
            found = [index for index, param in enumerate(params) if param == mark]
            if len(found) != 1:
                raise ValueError("a placeholder is not exactly one parameter")
            positions.append(found[0])
        # The statement's columns: the fields, then the annotations (query.extra is not used here).
        names = (*query.values_select, *query.annotation_select)
        if query.extra_select or len(names) != len(compiler.select):
            raise ValueError("Rows reads a values_list of fields and annotations")
        found = compiler.get_converters([column for column, _, _ in compiler.select])
        converters = tuple((index, functions, column) for index, (functions, column) in found.items())
        return sql_text, tuple(params), positions, names, converters

    def all(self, *values) -> list[Row]:
        db = connections[DEFAULT_DB_ALIAS]
        sql_text, params, positions, names, converters = self._compiled(db.vendor)
        params = list(params)
        for position, value in zip(positions, values, strict=True):
            params[position] = value
        with cursor(db) as opened:
            opened.execute(sql_text, params)
            rows = opened.fetchall()
        return [Row(names, _convert(row, converters, db)) for row in rows]

    def first(self, *values) -> Row | None:
        found = self.all(*values)
        return found[0] if found else None
