"""I/O-bound steps: many runs, each one `http_request` to a local server that answers after a delay.

Through a real django-q2 cluster (2 workers; SQLite + ORM broker, or PostgreSQL + Redis) with its I/O
slots (runs/engine/slots.py). The runs are created first, held in the queue by the organisation's cap (0),
then released at once (cap lifted, one admission pass): the figure is the engine's, from that admission
to the last run completed, not the bench process creating runs one by one (reported apart). The server
counts the requests it holds at once: the effective concurrency. `--io-big` adds the 1,000 runs × 5 s
variant, reporting the workers' memory and the database connections at their peak.
"""

import os
import threading
import time
from pathlib import Path

from django.db import connection

from bench.cluster import Cluster, bench_organization, cpu_seconds, wait_terminal
from bench.common import Row
from tests.runs.support.slow_server import SlowServer

TARGET_SECONDS = 3.0  # 200 runs × 1 s (issue #20)


def add_arguments(parser):
    group = parser.add_argument_group("io")
    group.add_argument("--io-runs", type=int, default=200, help="runs of one slow http_request (default 200)")
    group.add_argument("--io-delay", type=float, default=1.0, help="seconds the server waits (default 1)")
    group.add_argument("--io-big", action="store_true", help="also 1,000 runs × 5 s: memory, connections")


def _definition(port: int, delay: float) -> dict:
    url = f"http://127.0.0.1:{port}/sleep?s={delay}"
    return {
        "name": "One slow call",
        "steps": [{"id": "call", "type": "http_request", "config": {"url": url, "timeout_seconds": 120}}],
        "output": {"status": "{{ steps.call.output.status_code }}"},
    }


def _rss_mb(pids) -> float:
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def _db_connections(pids, database_path: str) -> int:
    """Connections the cluster holds: PostgreSQL backends of this database; SQLite: open handles of the
    database file in the cluster's processes."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0]
    count = 0
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                try:
                    if os.readlink(fd) == database_path:
                        count += 1
                except OSError:
                    continue
        except OSError:
            continue
    return count


def _round(org, workflow, actor, runs: int, cluster: Cluster, server: SlowServer, timeout: float) -> dict:
    from runs.concurrency import admit
    from runs.models import Run
    from runs.services import run_create

    org.max_concurrent_runs = 0  # held in the queue until released together
    org.save(update_fields=["max_concurrent_runs"])
    started = time.perf_counter()
    ids = [run_create(workflow=workflow, actor=actor, input_data={}).id for _ in range(runs)]
    created = time.perf_counter() - started
    time.sleep(0.5)
    server.reset()
    pids = cluster.pids()
    peak_rss = _rss_mb(pids)
    database = connection.settings_dict["NAME"]
    peak_connections = _db_connections(pids, database)
    org.max_concurrent_runs = None
    org.save(update_fields=["max_concurrent_runs"])
    cpu_before = cpu_seconds(cluster.pids())
    released = time.perf_counter()
    admit(org.id)
    admitted = time.perf_counter() - released
    done = threading.Event()

    def sample():
        nonlocal peak_rss, peak_connections
        try:
            while not done.wait(0.25):
                peak_rss = max(peak_rss, _rss_mb(pids))
                peak_connections = max(peak_connections, _db_connections(pids, database))
        finally:
            connection.close()  # this thread's own (PostgreSQL: the bench database is dropped at the end)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    finished = wait_terminal(ids, timeout=timeout, interval=0.01)
    elapsed = time.perf_counter() - released
    cpu = cpu_seconds(cluster.pids()) - cpu_before
    done.set()
    sampler.join()
    if not finished:
        raise RuntimeError(f"{runs} runs did not finish within {timeout:.0f} s")
    statuses = set(Run.objects.filter(pk__in=ids).values_list("status", flat=True))
    if statuses != {"completed"}:
        raise RuntimeError(f"runs ended {statuses}")
    from runs.models import StepRun

    claims = StepRun.objects.filter(run_id__in=ids).values_list("started_at", flat=True)
    claim_spread = (max(claims) - min(claims)).total_seconds()
    return {"elapsed": elapsed, "created": created, "peak": server.peak, "rss": peak_rss, "cpu": cpu,
            "connections": peak_connections, "admitted": admitted, "claim_spread": claim_spread}  # fmt: skip


def run(options) -> list[Row]:
    from workflows.services import workflow_create

    vendor = connection.vendor
    backend = "SQLite + ORM broker" if vendor == "sqlite" else "PostgreSQL + Redis"
    org, _owner, actor = bench_organization("I/O bench")
    what = "PostgreSQL backends" if vendor == "postgresql" else "open handles of the SQLite file"
    rounds = [(options.io_runs, options.io_delay)] + ([(1000, 5.0)] if options.io_big else [])
    rows = []
    with SlowServer() as server, Cluster(workers=2, BATON_HTTP_ALLOWLIST="127.0.0.1") as cluster:
        warm = workflow_create(organization=org, actor=actor, definition=_definition(server.port, 0.01))
        _round(org, warm, actor, 4, cluster, server, timeout=120)  # the workers are up and warm
        for runs, delay in rounds:
            definition = _definition(server.port, delay)
            workflow = workflow_create(organization=org, actor=actor, definition=definition)
            result = _round(org, workflow, actor, runs, cluster, server, timeout=120 + runs * delay)
            elapsed, targeted = result["elapsed"], (runs, delay) == (200, 1.0)
            rows += [
                Row(
                    "io",
                    f"{runs:,} runs × one {delay:g} s http_request, released → completed ({backend})",
                    f"{elapsed:.2f} s",
                    f"≤ {TARGET_SECONDS:g} s" if targeted else "",
                    f"2 workers; effective concurrency {runs * delay / elapsed:.0f}; the server held "
                    f"{result['peak']} requests at once; admitting the runs {result['admitted']:.2f} s, "
                    f"first to last claim {result['claim_spread']:.2f} s",
                    elapsed <= TARGET_SECONDS if targeted else None,
                ),
                Row(
                    "io",
                    "  cluster CPU per run (sentinel, workers, pusher, monitor)",
                    f"{result['cpu'] * 1000 / runs:.1f} ms",
                    "",
                    f"{result['cpu']:.2f} s CPU in all; the bench process created the runs beforehand "
                    f"({result['created'] * 1000 / runs:.1f} ms per run_create, not timed above)",
                ),
                Row(
                    "io",
                    "  cluster memory (RSS) / database connections at peak",
                    f"{result['rss']:.0f} MB / {result['connections']}",
                    "",
                    f"connections: {what}",
                ),
            ]
    return rows  # fmt: skip
