"""config/sqlite: write transactions on one SQLite file queue on `<database>.writer-lock` (a kernel lock)
instead of sleeping in SQLite's busy handler. Runs on either test backend: it opens its own file."""

import fcntl
import os
import threading

import pytest

from config.sqlite.base import DatabaseWrapper


def _wrapper(path) -> DatabaseWrapper:
    settings = {
        "ENGINE": "config.sqlite", "NAME": str(path), "USER": "", "PASSWORD": "", "HOST": "", "PORT": "",
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 30}, "ATOMIC_REQUESTS": False,
        "AUTOCOMMIT": True, "CONN_MAX_AGE": 0, "CONN_HEALTH_CHECKS": False, "TIME_ZONE": None, "TEST": {},
    }  # fmt: skip
    return DatabaseWrapper(settings)


def _begin(wrapper):
    wrapper.ensure_connection()
    wrapper._start_transaction_under_autocommit()


def test_a_second_writer_waits_for_the_first_and_starts_when_it_commits(tmp_path):
    path = tmp_path / "db.sqlite3"
    first = _wrapper(path)
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    _begin(first)
    assert (tmp_path / "db.sqlite3.writer-lock").exists()
    with first.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")

    began, seen = threading.Event(), []

    def second_writer():
        second = _wrapper(path)
        _begin(second)
        began.set()
        with second.cursor() as cursor:
            cursor.execute("SELECT COUNT(*) FROM t")
            seen.append(cursor.fetchone()[0])
        second._commit()
        second.close()

    thread = threading.Thread(target=second_writer)
    thread.start()
    assert not began.wait(0.5)  # the first still holds the lock
    first._commit()
    assert began.wait(5)
    thread.join(5)
    assert seen == [1]  # it began after the first's commit and sees its row
    # How soon after the commit it starts (woken by the kernel) is a benchmark check (bench/checks_bench.py).
    first.close()


@pytest.mark.timeout(30)  # a rollback that kept the lock would leave the second writer waiting for ever
def test_a_rollback_releases_the_lock(tmp_path):
    path = tmp_path / "db.sqlite3"
    first, second = _wrapper(path), _wrapper(path)
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE t (n INTEGER)")
    _begin(first)
    with first.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (1)")
    first._rollback()
    _begin(second)
    with second.cursor() as cursor:
        cursor.execute("INSERT INTO t VALUES (2)")
    second._commit()
    with first.cursor() as cursor:
        cursor.execute("SELECT n FROM t")
        assert cursor.fetchall() == [(2,)]  # the rolled-back row is gone, the second writer's is there
    second.close()
    first.close()


def test_a_forked_process_does_not_share_its_parents_lock(tmp_path):
    path = tmp_path / "db.sqlite3"
    parent = _wrapper(path)
    _begin(parent)  # the parent holds the lock while it forks
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child, with a copy of `parent` and its descriptor
        os.close(reader)
        try:
            fd = parent._writer_lock()  # its own open file description, not the inherited one
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                os.write(writer, b"shared")  # would succeed on the parent's own description
            except BlockingIOError:
                os.write(writer, b"excluded")
        finally:
            os._exit(0)
    os.close(writer)
    answer = os.read(reader, 16)
    os.waitpid(pid, 0)
    os.close(reader)
    parent._commit()
    parent.close()
    assert answer == b"excluded"


def test_an_in_memory_database_takes_no_lock(tmp_path):
    memory = _wrapper(":memory:")
    _begin(memory)
    memory._commit()
    assert memory._writer_fd is None
    memory.close()
