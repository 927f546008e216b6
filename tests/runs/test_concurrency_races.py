"""Concurrency limits under races: many triggering threads (PostgreSQL) or processes (SQLite file or
PostgreSQL) at once, each executing the runs it starts or admits (`inline` dispatch), no reconciler. A
sampler watches the committed state the whole time: the organisation's cap and the per-key limit are never
exceeded, and when the triggers are done every run has completed (no queued run is stranded)."""

import json
import sqlite3
import subprocess
import threading
import time
from collections import Counter
from contextlib import closing

import pytest
from django.db import connections

from accounts.principal import Principal
from runs.concurrency import ADMITTED
from runs.models import Run
from runs.services import run_create
from tests.factories import WorkflowFactory
from tests.runs.conftest import flaky_step, pg_only
from tests.runs.support.cluster import cluster_env, driver_process
from tests.support.concurrency import at_once, race_drivers

CAP = 3


class Sampler(threading.Thread):
    """Polls (count admitted per org, max admitted per limited key) until stopped."""

    def __init__(self, sample):
        super().__init__(daemon=True)
        self.sample = sample
        self.done = threading.Event()
        self.max_org = self.max_key = self.samples = 0
        self.error = None

    def run(self):
        try:
            while not self.done.is_set():
                org, key = self.sample()
                self.max_org, self.max_key = max(self.max_org, org), max(self.max_key, key)
                self.samples += 1
                time.sleep(0.02)
        except Exception as exc:
            self.error = exc
        finally:
            connections.close_all()


def _orm_sample(limited_id):
    def sample():
        admitted = list(Run.objects.filter(status__in=ADMITTED).values_list("workflow_id", "concurrency_key"))
        keys = Counter(key for workflow_id, key in admitted if workflow_id == limited_id)
        return len(admitted), max(keys.values(), default=0)

    return sample


def _check_intervals(rows, limited_id):
    """From the stored timestamps: at each start, at most CAP runs (and one per limited key) had started and
    not yet completed."""
    for workflow_id, key, started, _completed in rows:
        live = [row for row in rows if row[2] <= started < row[3]]
        assert len(live) <= CAP
        if workflow_id == limited_id:
            assert sum(1 for row in live if row[0] == limited_id and row[1] == key) <= 1


@pg_only
@pytest.mark.django_db(transaction=True)
def test_threads_triggering_at_once_never_exceed_the_limits(settings, org, owner, flaky):
    settings.BATON_ENGINE_DISPATCH = "inline"
    org.max_concurrent_runs = CAP
    org.save(update_fields=["max_concurrent_runs"])
    actor = Principal(organization=org, user=owner, role="owner")
    steps = [flaky_step("a"), flaky_step("b", depends_on=["a"])]
    limited = WorkflowFactory(
        organization=org, actor=actor, name="Limited", steps=steps,
        concurrency={"limit": 1, "key": "{{ inputs.k }}", "on_limit": "queue"},
    )  # fmt: skip
    free = WorkflowFactory(organization=org, actor=actor, name="Free", steps=steps)
    flaky.hooks["a"] = flaky.hooks["b"] = lambda context: time.sleep(0.01)

    sampler = Sampler(_orm_sample(limited.id))
    sampler.start()
    created, held = [], []

    def trigger(index):
        for n in range(5):
            workflow = free if n == 2 else limited
            run = run_create(workflow=workflow, actor=actor, input_data={"k": "ab"[(index + n) % 2]})
            created.append(run.id)
            if run.status == "queued":  # not admitted when triggered: a limit held it back
                held.append(run.id)

    errors = at_once(6, trigger)
    sampler.done.set()
    sampler.join()
    assert errors == [] and sampler.error is None
    assert len(created) == 30
    statuses = Counter(Run.objects.filter(pk__in=created).values_list("status", flat=True))
    assert statuses == {"completed": 30}, statuses  # nothing stranded, without any reconciler
    assert sampler.max_org <= CAP and sampler.max_key <= 1, vars(sampler)
    assert held  # the limits did hold runs back (six threads, two keys, limit 1 per key)
    rows = list(
        Run.objects.filter(pk__in=created).values_list(
            "workflow_id", "concurrency_key", "started_at", "completed_at"
        )
    )
    _check_intervals(rows, limited.id)


@pytest.fixture(scope="module")
def _race_env(django_db_setup, django_db_blocker, tmp_path_factory):
    with django_db_blocker.unblock():
        env = cluster_env(tmp_path_factory.mktemp("race"))
    # Instant steps off: the runs' transform steps then take their time outside any transaction, as most step
    # types do, so that runs are running while other processes trigger (with instant steps a run of
    # transforms finishes inside one transaction, and few triggers would ever find a slot taken).
    return {**env, "BATON_ENGINE_DISPATCH": "inline", "BATON_INSTANT_STEPS_MS": "0"}


def _driver(env, *args) -> subprocess.Popen:
    return driver_process(env, "tests.runs.support.concurrency_driver", *args)


def _sql_sample(env, limited_id):
    if "BATON_SQLITE_PATH" not in env:
        return _orm_sample(limited_id)
    admitted = ",".join(f"'{status}'" for status in ADMITTED)

    def sample():
        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            rows = db.execute(
                f"SELECT workflow_id, concurrency_key FROM runs_run WHERE status IN ({admitted})"
            ).fetchall()
        keys = Counter(key for workflow_id, key in rows if workflow_id == limited_id)
        return len(rows), max(keys.values(), default=0)

    return sample


def _finished_rows(env, ids):
    if "BATON_SQLITE_PATH" in env:
        marks = ",".join("?" * len(ids))
        with closing(sqlite3.connect(env["BATON_SQLITE_PATH"], timeout=30)) as db:
            return db.execute(
                f"SELECT status, workflow_id, concurrency_key, started_at, completed_at FROM runs_run "
                f"WHERE id IN ({marks})",
                ids,
            ).fetchall()
    return [
        (status, *rest)
        for status, *rest in Run.objects.filter(pk__in=ids).values_list(
            "status", "workflow_id", "concurrency_key", "started_at", "completed_at"
        )
    ]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_processes_triggering_at_once_never_exceed_the_limits(_race_env, tmp_path):
    env = _race_env
    setup = _driver(env, "setup", CAP)
    out, err = setup.communicate(timeout=60)
    assert setup.returncode == 0, err
    ids = json.loads(out)
    sampler = Sampler(_sql_sample(env, ids["limited"]))
    sampler.start()
    start = tmp_path / "go"
    workers = [
        _driver(env, "trigger", ids["org"], ids["limited"], ids["free"], 6, seed, start) for seed in range(3)
    ]
    try:
        reports = race_drivers(workers, start)
    finally:
        sampler.done.set()
        sampler.join()
    created = [run_id for report in reports for run_id in report["runs"]]
    held = [run_id for report in reports for run_id in report["held"]]
    assert sampler.error is None
    rows = _finished_rows(env, created)
    assert Counter(row[0] for row in rows) == {"completed": 18}  # nothing stranded, without any reconciler
    assert sampler.max_org <= CAP and sampler.max_key <= 1, vars(sampler)
    # The three processes start together and their first runs are limited runs on two keys, so at least one
    # trigger finds its key's slot taken: the limits did hold runs back (and those runs completed too).
    assert held and set(held) <= set(created)
    _check_intervals([row[1:] for row in rows], ids["limited"])
