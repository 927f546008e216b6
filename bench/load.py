"""`make load`: concurrent clients against a served Baton, mixing triggers, run reads, run lists and SSE
streams (and the bare DRF view of the API benchmark, bench/urls.py, as the floor to compare with).

    python bench/load.py                   # starts `manage.py serve` on a scratch database: 50 clients, 60 s
    python bench/load.py --clients 10 --seconds 10 --json
    python bench/load.py --base-url http://127.0.0.1:8000 --api-key bt_… --workflow wf_…  # a running server

Each client is an asyncio task with its own HTTP/1.1 keep-alive connection (httpx), in a closed loop:
it picks a request kind by weight, sends it and waits for the answer. A stream is timed to its first event
(the snapshot) and then read to its end (the run's terminal event) or for at most `--stream-seconds`. An
error is any answer that is not the expected status (every 5xx), any transport error, and any body, or line
of the server's log, saying "database is locked". Exit status 1 when there was an error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import percentile
from bench.stack import Serve, Stack, free_port, load_average, wait_healthy

WEIGHTS = {"trigger": 25, "read": 30, "list": 20, "stream": 10, "bare": 15}
LOCKED = "database is locked"


def load_definition() -> dict:
    """Three transform steps (the cluster executes them while the clients read)."""
    return {
        "name": "Load chain",
        "steps": [
            {"id": "a", "type": "transform", "config": {"value": "{{ inputs.n }}"}},
            {
                "id": "b",
                "type": "transform",
                "config": {"value": "{{ steps.a.output + 1 }}"},
                "depends_on": ["a"],
            },
            {
                "id": "c",
                "type": "transform",
                "config": {"value": "{{ steps.b.output * 2 }}"},
                "depends_on": ["b"],
            },
        ],
        "output": {"c": "{{ steps.c.output }}"},
    }


class Load:
    def __init__(self, base_url: str, key: str, workflow_id: str, options):
        self.base_url, self.key, self.workflow_id, self.options = base_url, key, workflow_id, options
        self.latencies: dict[str, list[float]] = {kind: [] for kind in WEIGHTS}
        self.errors: Counter[str] = Counter()
        self.examples: list[str] = []
        self.run_ids: list[str] = []
        self.stream_events = 0
        self.rng = random.Random(options.seed)

    def _error(self, kind: str, what: str) -> None:
        self.errors[f"{kind}: {what[:80]}"] += 1
        if len(self.examples) < 10:
            self.examples.append(f"{kind}: {what[:400]}")

    def _check(self, kind: str, response, expected: int) -> None:
        body = response.text if response.headers.get("content-type", "").startswith("application/") else ""
        if response.status_code != expected or LOCKED in body:
            self._error(kind, f"{response.status_code} {body[:300]}")

    async def _one(self, client, kind: str) -> None:
        import httpx

        started = time.perf_counter()
        try:
            if kind == "trigger":
                response = await client.post(
                    f"/api/v1/workflows/{self.workflow_id}/run",
                    json={"input_data": {"n": self.rng.randrange(1000)}},
                )
                self._check(kind, response, 202)
                if response.status_code == 202:
                    self.run_ids.append(response.json()["run_id"])
                    del self.run_ids[:-500]
            elif kind == "read":
                response = await client.get(f"/api/v1/runs/{self.rng.choice(self.run_ids)}")
                self._check(kind, response, 200)
            elif kind == "list":
                query = self.rng.choice([{"limit": 20}, {"limit": 50, "status": "completed"},
                                         {"limit": 20, "workflow": self.workflow_id}])  # fmt: skip
                response = await client.get("/api/v1/runs", params=query)
                self._check(kind, response, 200)
            elif kind == "bare":
                response = await client.get("/api/v1/_bench/bare")
                self._check(kind, response, 200)
            else:
                await self._stream(client, started)
                return
        except httpx.HTTPError as exc:
            self._error(kind, f"{type(exc).__name__}: {exc}")
            return
        self.latencies[kind].append(time.perf_counter() - started)

    async def _stream(self, client, started: float) -> None:
        run_id = self.rng.choice(self.run_ids[-20:])
        async with client.stream("GET", f"/api/v1/runs/{run_id}/stream") as response:
            if response.status_code != 200 or not response.headers.get("content-type", "").startswith(
                "text/event-stream"
            ):
                body = (await response.aread()).decode(errors="replace")
                self._error("stream", f"{response.status_code} {body[:300]}")
                return
            first = True
            until = time.perf_counter() + self.options.stream_seconds
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    self.stream_events += 1
                    if first:
                        self.latencies["stream"].append(time.perf_counter() - started)
                        first = False
                    if LOCKED in line:
                        self._error("stream", line[:300])
                if time.perf_counter() > until:
                    break

    async def client(self, stop_at: float) -> None:
        import httpx

        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        headers = {"Authorization": f"Bearer {self.key}", "Accept": "application/json"}
        timeout = httpx.Timeout(60, read=60)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=timeout) as client:
            while time.perf_counter() < stop_at:
                await self._one(client, self.rng.choices(kinds, weights)[0])

    async def run(self) -> float:
        import httpx

        async with httpx.AsyncClient(base_url=self.base_url, timeout=60,
                                     headers={"Authorization": f"Bearer {self.key}"}) as client:  # fmt: skip
            for n in range(5):  # something to read and stream from the first request on
                response = await client.post(
                    f"/api/v1/workflows/{self.workflow_id}/run", json={"input_data": {"n": n}}
                )
                response.raise_for_status()
                self.run_ids.append(response.json()["run_id"])
        started = time.perf_counter()
        stop_at = started + self.options.seconds
        await asyncio.gather(*(self.client(stop_at) for _ in range(self.options.clients)))
        return time.perf_counter() - started

    def report(self, elapsed: float) -> dict:
        kinds = {}
        for kind, samples in self.latencies.items():
            kinds[kind] = {
                "requests": len(samples),
                "per_second": round(len(samples) / elapsed, 1),
                "p50_ms": round(percentile(samples, 50) * 1000, 1) if samples else None,
                "p99_ms": round(percentile(samples, 99) * 1000, 1) if samples else None,
            }
        return {"kinds": kinds, "errors": dict(self.errors), "error_examples": self.examples,
                "stream_events": self.stream_events, "seconds": round(elapsed, 1)}  # fmt: skip


class LockWaits:
    """PostgreSQL: every 100 ms, the server's backends waiting for a lock, by what their statement locks
    (the organisation row, the audit chain's head, a run, a workflow, …), as the mean number waiting per
    sample: which locks the requests queue on (docs/performance.md "Triggers under load")."""

    KINDS = (
        ("audit_auditchainhead", "audit chain head"),
        ("accounts_organization", "organisation row"),
        ("workflows_workflow", "workflow row"),
        ("runs_steprun", "step run rows"),
        ("runs_run", "run rows"),
        ("django_q", "queue"),
    )

    def __init__(self):
        import threading

        self.samples = 0
        self.waiting: Counter[str] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        from django.db import connection

        try:
            while not self.stop.wait(0.1):
                with connection.cursor() as cursor:
                    cursor.execute(
                        "SELECT query FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()"
                    )
                    rows = cursor.fetchall()
                self.samples += 1
                for (query,) in rows:
                    kind = next((name for table, name in self.KINDS if table in query), query[:60])
                    self.waiting[kind] += 1
        finally:
            connection.close()

    def report(self) -> dict:
        return {kind: round(count / max(self.samples, 1), 2) for kind, count in self.waiting.most_common()}


def run_load(options) -> dict:
    import httpx

    if options.base_url:
        load = Load(options.base_url, options.api_key, options.workflow, options)
        elapsed = asyncio.run(load.run())
        return {**load.report(elapsed), "backend": "given server", "load_at_end": load_average()}
    stack = Stack("load", BATON_MAX_CONCURRENT_RUNS=1000).prepare()
    serve = None
    try:
        info = stack.machine()
        _org, key = stack.organization("Load")
        serve = Serve(stack, free_port(), *options.serve_args).start()
        wait_healthy(serve.base_url, serve.process, timeout=180)
        created = httpx.post(f"{serve.base_url}/api/v1/workflows", headers={"Authorization": f"Bearer {key}"},
                             json={"definition": load_definition()}, timeout=30)  # fmt: skip
        created.raise_for_status()
        load = Load(serve.base_url, key, created.json()["id"], options)
        waits = LockWaits() if stack.backend == "postgresql" else None
        if waits is not None:
            waits.thread.start()
        elapsed = asyncio.run(load.run())
        report = load.report(elapsed)
        if waits is not None:
            waits.stop.set()
            waits.thread.join()
            report["lock_waits"] = waits.report()
        serve.stop()
        log = (Path(stack.scratch) / "serve.log").read_text(errors="replace")
        report["server_log_locked"] = log.count(LOCKED)
        report["server_log_tracebacks"] = log.count("Traceback (most recent call last)")
        if report["server_log_locked"] or report["server_log_tracebacks"]:
            report["server_log_tail"] = stack.log_tail("serve.log", 60)
        return {**report, "backend": stack.backend, "machine": info, "load_at_end": load_average()}
    finally:
        if serve is not None:
            serve.stop()
        stack.close()


def render(report: dict, options) -> str:
    machine = report.get("machine", {})
    lines = [
        f"Load on {machine.get('database', report['backend'])}: {options.clients} clients for "
        f"{report['seconds']} s against `manage.py serve`, {machine.get('cpu', '')} "
        f"({machine.get('cores', '?')} cores), load average {machine.get('load_at_start', '?')} at start, "
        f"{report['load_at_end']} at the end, {machine.get('date', '')}",
        "",
        "| request | requests | per second | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for kind, figures in report["kinds"].items():
        name = {"bare": "bare DRF view (floor)", "stream": "SSE stream (to its first event)"}.get(kind, kind)
        lines.append(f"| {name} | {figures['requests']} | {figures['per_second']} | {figures['p50_ms']} | "
                     f"{figures['p99_ms']} |")  # fmt: skip
    lines += [
        "",
        f"Errors: {sum(report['errors'].values())} {report['errors'] or ''}; server log: "
        f"{report.get('server_log_locked', '?')} 'database is locked', "
        f"{report.get('server_log_tracebacks', '?')} tracebacks; {report['stream_events']} stream events",
    ]
    if "lock_waits" in report:
        waits = ", ".join(f"{kind} {mean}" for kind, mean in report["lock_waits"].items()) or "none"
        lines.append(f"Backends waiting for a lock (mean per 100 ms sample): {waits}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument(
        "--stream-seconds", type=float, default=10, help="longest a stream is read (default 10)"
    )
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--serve-args", nargs="*", default=[], help="extra arguments for `manage.py serve`")
    parser.add_argument("--base-url", help="load a server already running instead of starting one")
    parser.add_argument("--api-key", help="with --base-url: an API key with every scope")
    parser.add_argument("--workflow", help="with --base-url: the workflow to trigger")
    parser.add_argument("--json", action="store_true")
    options = parser.parse_args(argv)
    report = run_load(options)
    print(json.dumps(report, indent=1, default=str) if options.json else render(report, options), flush=True)
    failed = sum(report["errors"].values()) + report.get("server_log_locked", 0)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
