"""The PostgreSQL backend's health check (config/postgresql/base.py): no round trip for an idle connection
whose socket has nothing to read; a connection the server ended is found unusable and replaced."""

import contextlib

import pytest
from django.db import close_old_connections, connection, transaction

from tests.support.postgres import other_session, terminate

pytestmark = [
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's backend"),
    pytest.mark.django_db(transaction=True),
]


def _last_statement(pid: int) -> str:
    with other_session() as other:
        return other.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone()[0]


@pytest.mark.parametrize(
    "in_transaction, last_statement",
    [(False, "SELECT 'the last statement'"), (True, "SELECT 1")],
    ids=["idle: no statement", "in a transaction: SELECT 1"],
)
def test_only_a_connection_that_is_not_idle_is_checked_with_a_statement(in_transaction, last_statement):
    with transaction.atomic() if in_transaction else contextlib.nullcontext():
        with connection.cursor() as cursor:
            cursor.execute("SELECT 'the last statement'")
        pid = connection.connection.info.backend_pid
        assert connection.is_usable()
        assert _last_statement(pid) == last_statement


def test_a_connection_the_server_ended_is_unusable_and_replaced():
    connection.ensure_connection()
    pid = connection.connection.info.backend_pid
    terminate(pid)

    assert not connection.is_usable()
    close_old_connections()  # a new request
    connection.close_if_health_check_failed()  # its first use of the connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


def test_a_request_after_the_server_ended_its_kept_connection_is_answered(client, monkeypatch):
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)  # kept, as a web thread keeps it
    assert client.get("/readyz").status_code == 200
    pid = connection.connection.info.backend_pid
    terminate(pid)
    close_old_connections()  # request_started does this in a server (the test client leaves it out)

    assert client.get("/readyz").status_code == 200
    assert connection.connection.info.backend_pid != pid
