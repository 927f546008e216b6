"""config/sqlite's cursors: `%s` placeholders converted once per distinct statement, with the escapes and the
named style Django's cursor supports, and NULL parameters bound as NULL. Runs on either test backend: it
opens its own file."""

import pytest

from config.sqlite import base as sqlite_base
from tests.config.test_sqlite_writer_lock import _wrapper


@pytest.fixture
def wrapper(tmp_path):
    wrapper = _wrapper(tmp_path / "db.sqlite3")
    with wrapper.cursor() as cursor:
        cursor.execute("CREATE TABLE t (name TEXT, note TEXT)")
    yield wrapper
    wrapper.close()


def test_placeholders_and_escaped_percent_signs_are_converted(wrapper):
    with wrapper.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (%s, %s)", ["100%s", None])
        cursor.execute("SELECT name, note, '%%s', '50%%' FROM t WHERE name LIKE %s", ["100%%"])
        assert cursor.fetchall() == [("100%s", None, "%s", "50%")]


def test_a_statement_is_converted_once_and_reused(wrapper):
    sqlite_base._qmark.cache_clear()
    query = "SELECT name FROM t WHERE name = %s AND note IS %s"
    with wrapper.cursor() as cursor:
        for name in ("a", "b", "c"):
            cursor.execute(query, [name, None])
    info = sqlite_base._qmark.cache_info()
    assert (info.misses, info.hits) == (1, 2)


def test_a_long_statement_is_converted_without_being_kept(wrapper):
    sqlite_base._qmark.cache_clear()
    rows = 2000  # longer than _CACHED_QUERY_LENGTH
    query = "INSERT INTO t VALUES " + ", ".join(["(%s, %s)"] * rows)
    assert len(query) > sqlite_base._CACHED_QUERY_LENGTH
    with wrapper.cursor() as cursor:
        cursor.execute(query, [value for n in range(rows) for value in (f"n{n}", "x%")])
        cursor.execute("SELECT COUNT(*), MIN(note), MAX(note) FROM t")
        assert cursor.fetchone() == (rows, "x%", "x%")
    assert sqlite_base._qmark.cache_info().currsize == 0


def test_named_parameters_and_executemany_still_work(wrapper):
    with wrapper.cursor() as cursor:
        cursor.executemany("INSERT INTO t VALUES (%s, %s)", [("a", None), ("b", "2")])
        cursor.execute("SELECT name FROM t WHERE note IS %(note)s", {"note": None})
        assert cursor.fetchall() == [("a",)]
        cursor.execute("SELECT COUNT(*) FROM t WHERE note IS NULL")
        assert cursor.fetchone() == (1,)
