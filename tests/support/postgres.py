"""PostgreSQL helpers for tests: another session beside the test's connection, and ending a session."""

import time

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
