"""PostgreSQL helpers for tests: another session beside the test's connection, ending a session, and the
messages Django's connection exchanges with the server."""

import tempfile
import time
from contextlib import contextmanager

import psycopg
from django.db import connection


def other_session() -> psycopg.Connection:
    """A new autocommit session on the test database, apart from Django's connection."""
    params = {k: v for k, v in connection.get_connection_params().items() if k != "cursor_factory"}
    return psycopg.connect(autocommit=True, **params)


def terminate(pid: int) -> None:
    """End the session `pid` from another one, as a server restart would, and wait until it is gone."""
    with other_session() as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 10
        while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone():
            assert time.monotonic() < deadline, "the session did not end"
            time.sleep(0.01)


@contextmanager
def protocol_trace():
    """The protocol messages of Django's connection during the block (libpq's trace), as a list of lines
    like `F\t4\tSync` (F: sent by the client, B: by the server), filled in when the block ends."""
    connection.ensure_connection()
    pgconn = connection.connection.pgconn
    lines: list[str] = []
    with tempfile.TemporaryFile("w+") as file:
        pgconn.trace(file.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS | psycopg.pq.Trace.REGRESS_MODE)
        try:
            yield lines
        finally:
            pgconn.untrace()
            file.seek(0)
            lines.extend(file.read().splitlines())


def round_trips(lines: list[str]) -> int:
    """How many times the client waited for the server in a traced block: its Syncs (each one a wait for the
    server's answer in a pipeline) and its simple queries."""
    return sum(1 for line in lines if line.startswith("F\t") and line.split("\t")[2] in ("Sync", "Query"))
