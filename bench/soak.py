"""`make soak`: the crash soak. Runs of a mixed workflow are triggered over HTTP while a chaos thread SIGKILLs
a random process of the worker clusters every 1–3 s (a worker, the pusher or the monitor: django-q2's
sentinel starts another; now and then a whole cluster, which the harness starts again) and SIGKILLs the web
process twice. Then it checks what the database, the side-effect server and the audit chain say.

    python bench/soak.py                       # 200 runs; SQLite, or PostgreSQL + Redis with DATABASE_URL
    python bench/soak.py --runs 16 --json      # the short version the test suite runs

The workflow (`soak_definition`): `fetch` (http_request POST to a server on 127.0.0.1, no retry policy),
`fetch_retry` (the same with `retry.max_attempts` 3), `compute` (a python script), `pause` (wait 1 s),
`each` (a loop of three http_request POSTs), `gate` (an approval nobody answers: it times out after 2 s and
approves), `done` (a transform). Each POST carries a key naming its run and step (and loop index); the
server counts them, so a step executed twice shows as a key counted twice.

Targets: every run terminal, no run lost (each trigger the client sent got exactly one run: a trigger cut off
by the web kill is retried with the same Idempotency-Key), no step without a retry policy executed twice
(side effects at the server and the step rows' attempts), every audit chain intact (`GET /audit/verify
?full=true`), and the event log of every run gapless. Exit status 1 when one is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sys
import threading
import time
from collections import Counter
from contextlib import suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import Stack, Web, free_port, load_average, wait_healthy

NO_RETRY_STEPS = ("fetch", "compute", "pause", "each", "gate", "done")


class EffectServer:
    """POST /effect {"key": …}: counts each key (the side effects of the soak's http_request steps)."""

    def __init__(self):
        self.counts: Counter[str] = Counter()
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with suppress(ValueError, TypeError, AttributeError):
                    key = json.loads(body)["key"]
                    with server.lock:
                        server.counts[key] += 1
                payload = b'{"ok": true}'
                with suppress(OSError):
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def soak_definition(port: int, approval_timeout: int = 2) -> dict:
    url = f"http://127.0.0.1:{port}/effect"

    def post(key: str) -> dict:
        return {"method": "POST", "url": url, "json": {"key": key}, "timeout_seconds": 10}

    script = (
        "import json, sys\ndata = json.load(sys.stdin)\nprint(json.dumps({'n': data['inputs']['n'] * 2}))\n"
    )
    return {
        "name": "Soak mix",
        "steps": [
            {"id": "fetch", "type": "http_request", "config": post("{{ run.id }}:fetch")},
            {"id": "fetch_retry", "type": "http_request", "config": post("{{ run.id }}:fetch_retry"),
             "retry": {"max_attempts": 3, "backoff_seconds": 0}},
            {"id": "compute", "type": "script", "config": {"language": "python", "code": script},
             "depends_on": ["fetch"]},
            {"id": "pause", "type": "wait", "config": {"seconds": 1}, "depends_on": ["fetch"]},
            {"id": "each", "type": "loop", "depends_on": ["compute", "pause"],
             "config": {"items": [0, 1, 2], "max_concurrency": 2,
                        "step": {"type": "http_request", "config": post("{{ run.id }}:each:{{ index }}")}}},
            {"id": "gate", "type": "approval", "depends_on": ["fetch_retry"],
             "config": {"message": "Nobody answers", "timeout_seconds": approval_timeout,
                        "on_timeout": "approve"}},
            {"id": "done", "type": "transform", "config": {"value": "{{ steps.compute.output.n }}"},
             "depends_on": ["each", "gate"]},
        ],
        "output": {"n": "{{ steps.done.output }}"},
    }  # fmt: skip


class Chaos:
    """SIGKILLs a random process of the clusters every 1–3 s (and, one time in `whole_every`, a whole
    cluster, started again at once) until stopped."""

    def __init__(self, clusters, rng: random.Random, whole_every: int = 20):
        self.clusters, self.rng, self.whole_every = clusters, rng, whole_every
        self.stop = threading.Event()
        self.kills = Counter()
        self.lock = threading.Lock()  # the web killer and the chaos thread restart clusters one at a time
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self):
        while not self.stop.wait(self.rng.uniform(1.0, 3.0)):
            with self.lock:
                cluster = self.rng.choice(self.clusters)
                if cluster.process is None or cluster.process.poll() is not None:
                    cluster.kill()
                    cluster.start()
                    self.kills["cluster_restarted_after_exit"] += 1
                    continue
                if self.rng.randrange(self.whole_every) == 0:
                    cluster.kill()
                    cluster.start()
                    self.kills["whole_cluster"] += 1
                    continue
                victims = cluster.children()
                if victims:
                    cluster.kill_process(self.rng.choice(victims))
                    self.kills["cluster_process"] += 1

    def start(self):
        self.thread.start()

    def halt(self):
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()


class Triggers:
    """Sends `runs` triggers from `threads` clients, each with an Idempotency-Key of its own, retried with the
    same key after a transport error, a 5xx or a 409 `idempotency_request_in_progress` (a kill left it)."""

    def __init__(self, base_url: str, key: str, workflow_id: str, runs: int, rate: float, give_up: float):
        self.base_url, self.key, self.workflow_id = base_url, key, workflow_id
        self.runs, self.rate, self.give_up = runs, rate, give_up
        self.accepted: dict[str, str] = {}  # idempotency key → run id
        self.failed: dict[str, str] = {}  # idempotency key → why it gave up
        self.retries = Counter()
        self.lock = threading.Lock()
        self.next = 0

    def _take(self) -> int | None:
        with self.lock:
            if self.next >= self.runs:
                return None
            self.next += 1
            return self.next - 1

    def _client(self):
        import httpx

        started = time.monotonic()
        with httpx.Client(base_url=self.base_url, timeout=30,
                          headers={"Authorization": f"Bearer {self.key}"}) as client:  # fmt: skip
            while (index := self._take()) is not None:
                pause = started + index / self.rate - time.monotonic()
                if pause > 0:
                    time.sleep(pause)
                self._send(client, index)

    def _send(self, client, index: int):
        import httpx

        idem = f"soak-{index}"
        deadline = time.monotonic() + self.give_up
        while True:
            why = ""
            try:
                response = client.post(
                    f"/api/v1/workflows/{self.workflow_id}/run",
                    json={"input_data": {"n": index}},
                    headers={"Idempotency-Key": idem},
                )
            except httpx.TransportError as exc:
                why = f"transport: {type(exc).__name__}"
                self.retries["transport_error"] += 1
            else:
                if response.status_code == 202:
                    with self.lock:
                        self.accepted[idem] = response.json()["run_id"]
                    if response.headers.get("Idempotent-Replayed"):
                        self.retries["replayed"] += 1
                    return
                error = response.json().get("error", {}) if response.content else {}
                code = error.get("code", "")
                why = f"{response.status_code} {code}"
                if code == "idempotency_request_in_progress":  # which of @idempotent's two 409s
                    why += f" ({error.get('message', '')})"
                if response.status_code < 500 and code != "idempotency_request_in_progress":
                    with self.lock:
                        self.failed[idem] = why
                    return
                self.retries[why] += 1
            if time.monotonic() > deadline:
                with self.lock:
                    self.failed[idem] = f"gave up after {self.give_up:.0f} s: {why}"
                return
            time.sleep(0.3)

    def run(self, threads: int) -> list[threading.Thread]:
        workers = [threading.Thread(target=self._client, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        return workers


def _terminal_count(run_ids) -> int:
    from runs.choices import RUN_TERMINAL
    from runs.models import Run

    return Run.objects.filter(pk__in=list(run_ids), status__in=RUN_TERMINAL).count()


def check(org, run_ids: dict[str, str], effects: Counter, audit: dict) -> dict:
    """What the database, the effect server and the audit verification say (the targets' figures)."""
    from runs.choices import RUN_TERMINAL
    from runs.models import Run, RunEvent, StepRun

    runs = {run.id: run for run in Run.objects.filter(organization=org)}
    accepted = set(run_ids.values())
    statuses = Counter(run.status for run in runs.values())
    errors = Counter((run.error or {}).get("code", "") for run in runs.values() if run.status == "failed")
    not_terminal = sorted(rid for rid in accepted if rid not in runs or runs[rid].status not in RUN_TERMINAL)
    steps = list(StepRun.objects.filter(run__organization=org).values_list(
        "run_id", "step_id", "parent_id", "iteration", "attempt", "attempts", "status"))  # fmt: skip
    twice: list[str] = []
    retry_attempts = Counter()
    for run_id, step_id, parent_id, iteration, attempt, attempts, _status in steps:
        if step_id == "fetch_retry":
            retry_attempts[run_id] = max(attempt or 0, len(attempts or []))
            continue
        if (attempt or 0) > 1 or len(attempts or []) > 1:
            twice.append(
                f"{run_id}:{step_id}{'' if parent_id is None else f'[{iteration}]'} attempts={attempt}"
            )
    stuck_steps: dict[str, list[str]] = {}  # the first few runs left running: where each of their steps is
    for run_id, step_id, parent_id, iteration, _attempt, _attempts, status in steps:
        if run_id in not_terminal[:5]:
            name = step_id if parent_id is None else f"{step_id}[{iteration}]"
            stuck_steps.setdefault(run_id, []).append(f"{name}={status}")
    effect_twice = sorted(key for key, count in effects.items() if count > 1 and ":fetch_retry" not in key)
    retry_over = sorted(
        key for key, count in effects.items()
        if key.endswith(":fetch_retry") and count > retry_attempts.get(key.split(":")[0], 0)
    )  # fmt: skip
    seqs: dict[str, list[int]] = {}
    for run_id, seq in RunEvent.objects.filter(run__organization=org).values_list("run_id", "seq"):
        seqs.setdefault(run_id, []).append(seq)
    gaps = sorted(rid for rid, numbers in seqs.items() if sorted(numbers) != list(range(1, len(numbers) + 1)))
    from config.models import IdempotencyRecord

    stuck = [
        f"{key} reserved {created:%H:%M:%S.%f}"
        for key, created in IdempotencyRecord.objects.filter(organization=org, in_progress=True).values_list(
            "key", "created_at"
        )
    ]
    return {
        "runs_in_database": len(runs),
        "runs_accepted": len(accepted),
        "runs_not_accepted_but_created": sorted(set(runs) - accepted),
        "statuses": dict(statuses),
        "failure_codes": dict(errors),
        "not_terminal": not_terminal,
        "not_terminal_steps": stuck_steps,
        "steps_checked": len(steps),
        "no_retry_steps_with_two_attempts": twice,
        "side_effects": sum(effects.values()),
        "no_retry_side_effects_twice": effect_twice,
        "retry_side_effects_beyond_attempts": retry_over,
        "fetch_retry_second_attempts": sum(1 for count in retry_attempts.values() if count > 1),
        "event_log_gaps": gaps,
        "idempotency_keys_left_in_progress": stuck,
        "audit": audit,
    }


def soak(options) -> dict:
    import httpx

    stack = Stack("soak", BATON_ENGINE_DISPATCH="queue", BATON_WORKERS=options.workers,
                  BATON_RECONCILE_INTERVAL_MS=300, BATON_REDISPATCH_AFTER_SECONDS=2,
                  BATON_STEP_LEASE_SECONDS=options.lease, BATON_HTTP_ALLOWLIST="127.0.0.1",
                  BATON_MAX_CONCURRENT_RUNS=options.max_concurrent)  # fmt: skip
    stack.prepare()
    from tests.runs.support.kill_harness import Cluster  # the crash tests' harness (needs the settings)

    effects = EffectServer()
    web = clusters = chaos = None
    rng = random.Random(options.seed)
    try:
        info = stack.machine()
        org, key = stack.organization()
        web = Web(stack, free_port()).start()
        wait_healthy(web.base_url, web.process)
        auth = {"Authorization": f"Bearer {key}"}
        created = httpx.post(
            f"{web.base_url}/api/v1/workflows",
            headers=auth,
            timeout=30,
            json={"definition": soak_definition(effects.port, options.approval_timeout)},
        )
        if created.status_code != 201:
            raise RuntimeError(f"creating the workflow answered {created.status_code}: {created.text[:500]}")
        workflow_id = created.json()["id"]
        clusters = [
            Cluster(stack.env, f"soak{n}", log=Path(stack.scratch) / f"cluster{n}.log").start()
            for n in range(options.clusters)
        ]
        chaos = Chaos(clusters, rng)
        started = time.monotonic()
        chaos.start()
        triggers = Triggers(web.base_url, key, workflow_id, options.runs, options.rate, options.give_up)
        senders = triggers.run(options.clients)
        web_kills = 0
        for threshold in (options.runs // 3, 2 * options.runs // 3)[: options.web_kills]:
            while len(triggers.accepted) + len(triggers.failed) < threshold and any(
                s.is_alive() for s in senders
            ):
                time.sleep(0.05)
            web.kill()  # SIGKILL, in the middle of the triggers: clients see refused or cut connections
            web_kills += 1
            time.sleep(0.5)
            web.start()
        for sender in senders:
            sender.join()
        triggered_in = time.monotonic() - started
        # The kills go on until every run is terminal or for --chaos-seconds; then the rest may finish.
        chaos_until = started + options.chaos_seconds
        deadline = time.monotonic() + options.timeout
        active_when_kills_stopped = 0
        while (terminal := _terminal_count(triggers.accepted.values())) < len(triggers.accepted):
            if not chaos.stop.is_set() and time.monotonic() > chaos_until:
                chaos.halt()
                active_when_kills_stopped = len(triggers.accepted) - terminal
            if time.monotonic() > deadline:
                break
            time.sleep(0.5)
        chaos.halt()
        finished_in = time.monotonic() - started
        wait_healthy(web.base_url, web.process)
        verify = httpx.get(
            f"{web.base_url}/api/v1/audit/verify", params={"full": "true"}, headers=auth, timeout=120
        )
        audit = (
            verify.json()
            if verify.status_code == 200
            else {"status": verify.status_code, "body": verify.text[:300]}
        )
        audit = {"valid": audit.get("valid"), "checked": audit.get("checked"),
                 "first_invalid": audit.get("first_invalid")}  # fmt: skip
        report = check(org, triggers.accepted, effects.counts, audit)
        report.update({
            "backend": stack.backend, "machine": info, "load_at_end": load_average(),
            "runs_requested": options.runs, "triggers_failed": triggers.failed,
            "trigger_retries": dict(triggers.retries), "kills": {**dict(chaos.kills), "web": web_kills},
            "seconds_triggering": round(triggered_in, 1), "seconds_until_all_terminal": round(finished_in, 1),
            "runs_active_when_kills_stopped": active_when_kills_stopped,
        })  # fmt: skip
        report["targets_met"] = bool(
            report["runs_accepted"] == options.runs and not report["not_terminal"]
            and report["runs_in_database"] == options.runs and not report["no_retry_steps_with_two_attempts"]
            and not report["no_retry_side_effects_twice"] and not report["retry_side_effects_beyond_attempts"]
            and not report["event_log_gaps"] and audit["valid"] is True
        )  # fmt: skip
        if not report["targets_met"]:
            report["web_log"] = stack.log_tail("web.log")
            for n in range(options.clusters):
                report[f"cluster{n}_log"] = stack.log_tail(f"cluster{n}.log", lines=60)
        return report
    finally:
        if chaos is not None:
            chaos.stop.set()
        for cluster in clusters or []:
            cluster.kill()
        if web is not None:
            web.kill()
        effects.close()
        stack.close()


def render(report: dict) -> str:
    machine = report["machine"]
    lines = [
        f"Crash soak on {machine['database']}: {report['runs_requested']} runs, {machine['cpu']} "
        f"({machine['cores']} cores), load average {machine['load_at_start']} at start, "
        f"{report['load_at_end']} at the end, {machine['date']}",
        f"- kills: {report['kills']}; trigger retries: {report['trigger_retries']}",
        f"- runs: {report['runs_accepted']} accepted, {report['runs_in_database']} in the database, "
        f"statuses {report['statuses']}, failure codes {report['failure_codes']}; "
        f"not terminal: {len(report['not_terminal'])}",
        f"- steps checked: {report['steps_checked']}; steps without a retry policy with two attempts: "
        f"{len(report['no_retry_steps_with_two_attempts'])}; side effects: {report['side_effects']}, of "
        f"steps without a retry policy counted twice: {len(report['no_retry_side_effects_twice'])}; "
        f"`fetch_retry` second attempts: {report['fetch_retry_second_attempts']}",
        f"- event logs with gaps: {len(report['event_log_gaps'])}; audit verify (full): {report['audit']}",
        f"- {report['seconds_triggering']} s triggering, {report['seconds_until_all_terminal']} s until "
        f"every run was terminal ({report['runs_active_when_kills_stopped']} runs still active when the "
        f"kills stopped); targets met: {report['targets_met']}",
    ]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--rate", type=float, default=4.0, help="triggers per second (default 4)")
    parser.add_argument("--clients", type=int, default=4, help="triggering threads (default 4)")
    parser.add_argument("--clusters", type=int, default=2, help="qcluster processes (default 2)")
    parser.add_argument("--workers", type=int, default=2, help="workers per cluster (default 2)")
    parser.add_argument("--lease", type=int, default=5, help="BATON_STEP_LEASE_SECONDS (default 5)")
    parser.add_argument("--max-concurrent", type=int, default=50, help="BATON_MAX_CONCURRENT_RUNS")
    parser.add_argument("--approval-timeout", type=int, default=2)
    parser.add_argument("--web-kills", type=int, default=2)
    parser.add_argument(
        "--give-up", type=float, default=120, help="seconds a trigger is retried (default 120)"
    )
    parser.add_argument(
        "--chaos-seconds", type=float, default=300, help="longest the kills go on (default 300)"
    )
    parser.add_argument("--timeout", type=float, default=900, help="seconds to wait for every run to end")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    options = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # run the cleanups (clusters, database)
    report = soak(options)
    print(json.dumps(report, indent=1, default=str) if options.json else render(report), flush=True)
    if not report["targets_met"] and not options.json:
        print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=1, default=str)[:20000])
    return 0 if report["targets_met"] else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
