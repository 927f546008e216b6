"""The engine on a real django-q2 cluster (`manage.py qcluster` subprocesses): the SQLite file with the
ORM broker, or the PostgreSQL test database with Redis when DATABASE_URL/REDIS_URL are set."""

import sqlite3
import time
from collections import Counter
from contextlib import closing

import pytest

from tests.runs.support.cluster_driver import expected_result
from tests.runs.support.kill_harness import Cluster as KillableCluster
from tests.runs.support.kill_harness import wait_for


def _check_finished_once(report: dict, steps: int):
    for run_id, run in report.items():
        assert run["status"] == "completed", (run_id, run)
        assert run["result"] == {"last": expected_result(run["n"], steps)}
        assert run["seqs"] == list(range(1, len(run["seqs"]) + 1))  # gapless event log
        # No step completed twice: one completion event and one completed attempt per step.
        assert Counter(run["completed_events"]) == {f"s{i}": 1 for i in range(steps)}
        for step_id, step in run["steps"].items():
            assert step["status"] == "completed", (run_id, step_id, step)
            assert step["attempts"].count("completed") == 1 and step["attempts"][-1] == "completed"


@pytest.mark.slow
def test_cluster_runs_a_five_step_dag_to_completion(cluster):
    cluster.start()
    started = cluster.driver("start", 3, 5)
    report = cluster.driver("wait", 60, *started["runs"])
    assert set(report) == set(started["runs"])
    _check_finished_once(report, 5)
    for run in report.values():
        assert all(step["attempts"] == ["completed"] for step in run["steps"].values())


def _step_statuses(env) -> Counter:
    """Step run statuses straight from the cluster's database (the test process's ORM on PostgreSQL)."""
    if "BATON_SQLITE_PATH" in env:
        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            return Counter(dict(db.execute("SELECT status, COUNT(*) FROM runs_steprun GROUP BY status")))
    from runs.models import StepRun

    return Counter(StepRun.objects.values_list("status", flat=True))


def _running_step_ids(env) -> set[str]:
    if "BATON_SQLITE_PATH" in env:
        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            return {row[0] for row in db.execute("SELECT id FROM runs_steprun WHERE status = 'running'")}
    from runs.models import StepRun

    return set(StepRun.objects.filter(status="running").values_list("id", flat=True))


@pytest.mark.slow
def test_cluster_killed_mid_step_still_finishes_every_run_once(cluster):
    # Instant steps off: each transform step is claimed with a lease and executed outside any transaction, so
    # a killed worker leaves it `running` for the reconciler (instant steps: the next test).
    cluster.env = {**cluster.env, "BATON_INSTANT_STEPS_MS": "0"}
    runs, steps = 4, 20
    started = cluster.driver("start", runs, steps, 12)
    orphans: set[str] = set()
    for _ in range(5):  # kill until a worker is caught in the middle of a step
        done = _step_statuses(cluster.env)["completed"]
        cluster.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            statuses = _step_statuses(cluster.env)
            if statuses["running"] and statuses["completed"] >= done + 3:
                break
            time.sleep(0.01)
        cluster.kill()
        orphans |= _running_step_ids(cluster.env)
        if orphans or _step_statuses(cluster.env)["completed"] == runs * steps:
            break
    assert orphans, "no worker was killed in the middle of a step"
    cluster.start()  # a fresh cluster: its reconciler reclaims the orphans and re-dispatches lost messages
    report = cluster.driver("wait", 90, *started["runs"], timeout=150)
    _check_finished_once(report, steps)
    # Every step left running by the kill was reclaimed (a failed attempt) and then completed once.
    reclaimed = [
        step["attempts"]
        for run in report.values()
        for step in run["steps"].values()
        if "failed" in step["attempts"]
    ]
    assert len(reclaimed) >= len(orphans)


def _completed_per_run(env, run_ids) -> dict[str, int]:
    """Completed steps per run, for these runs (the module's earlier tests share the database)."""
    if "BATON_SQLITE_PATH" in env:
        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            rows = db.execute("SELECT run_id, status FROM runs_steprun").fetchall()
    else:
        from runs.models import StepRun

        rows = list(StepRun.objects.values_list("run_id", "status"))
    completed = Counter(run_id for run_id, status in rows if status == "completed")
    return {run_id: completed[run_id] for run_id in run_ids}


@pytest.mark.slow
def test_cluster_killed_inside_instant_steps_leaves_nothing_half_written(cluster):
    """Instant steps (transforms) run inside the transaction that found them ready. With a budget long enough
    for a whole run, each run is one transaction: a cluster killed while its workers are busy leaves every
    run either complete or untouched, and the re-dispatched root step then runs the rest once."""
    cluster.env = {**cluster.env, "BATON_INSTANT_STEPS_MS": "60000"}
    runs, steps = 6, 20
    started = cluster.driver("start", runs, steps, 12)
    cluster.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(_completed_per_run(cluster.env, started["runs"]).values()):
        time.sleep(0.01)
    cluster.kill()  # a run finished: the workers are in the middle of the next ones
    per_run = _completed_per_run(cluster.env, started["runs"])
    assert set(per_run.values()) <= {0, steps}, per_run  # all or nothing, per run
    assert 0 in per_run.values(), "every run had finished before the kill"
    assert _step_statuses(cluster.env)["running"] == 0  # no lease was taken: nothing for the reconciler
    cluster.start()  # its reconciler re-dispatches the root steps whose messages died with the workers
    report = cluster.driver("wait", 90, *started["runs"], timeout=150)
    _check_finished_once(report, steps)
    for run in report.values():
        assert all(step["attempts"] == ["completed"] for step in run["steps"].values())


def _messages(env, after: int = 0) -> tuple[int, int]:
    """SQLite (ORM broker): (the highest message id, how many messages above `after` are not acknowledged
    yet); the monitor acknowledges each result. The module's earlier tests may leave messages of their own."""
    with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
        query = "SELECT COALESCE(MAX(id), 0), COUNT(*) FILTER (WHERE id > ?) FROM django_q_ormq WHERE key = ?"
        return db.execute(query, [after, env["BATON_TEST_QUEUE"]]).fetchone()


@pytest.mark.slow
def test_cluster_executes_steps_after_each_of_its_processes_is_sigkilled_while_idle(cluster):
    """An idle worker waits for its next message holding the task queue's read lock, and the monitor the
    result queue's: a SIGKILL must not leave either held (runs/engine/cluster_locks.py). Every process the
    sentinel started is killed in turn, with no message in between, so the lock holders are among them."""
    sqlite = "BATON_SQLITE_PATH" in cluster.env
    before = _messages(cluster.env)[0] if sqlite else 0
    crashed = KillableCluster(cluster.env, "crash").start()
    try:
        report = cluster.driver("wait", 60, *cluster.driver("start", 2, 4)["runs"])
        _check_finished_once(report, 4)
        for _round in range(2):
            time.sleep(1)  # every process idle: a worker and the monitor are waiting inside a read lock
            for victim in crashed.children():
                crashed.kill_process(victim)
                wait_for(lambda v=victim: v not in crashed.children() and len(crashed.children()) == 4)
            report = cluster.driver("wait", 60, *cluster.driver("start", 2, 4)["runs"])
            _check_finished_once(report, 4)
            if sqlite:  # the monitor started in place of the killed one reads the results
                wait_for(lambda: _messages(cluster.env, before)[1] == 0, timeout=30)
    finally:
        crashed.kill()
