"""API: the web tier's CPU time per request and requests per second, against `serve` as deployed.

Requests: `POST /workflows/{ref}/run` (a 5-step workflow), `GET /runs/{id}` of a finished 5-step and
40-step run, next to a bare DRF view (bench/urls.py: the project's authentication, permission and throttle
classes and middleware, no work) and a bare Django view (no DRF, no authentication) under the same server.

Servers: `serve` as deployed (`manage.py serve --no-worker`: its web server command, `serve.web_command`)
and, with `--api-servers`, the alternatives measured for the choice (docs/performance.md), each on this
benchmark's database; triggered runs are queued to the broker with no cluster running, then the deployed
server again with a real qcluster executing the runs (`--api-with-workers`).

Load generator: wrk (Debian's `wrk`) with `--api-connections` keep-alive connections on one thread when it
is installed; otherwise this process, asyncio with connections written and parsed by hand. Its CPU is
reported. The figure that other load on the machine distorts least is the web processes' CPU time per
request (utime + stime of the server's process tree from /proc, over the measured interval); the rate is
reported next to it. Every answer must have the expected status.
"""

import asyncio
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from bench.cluster import (
    ROOT,
    Cluster,
    bench_organization,
    chain_definition,
    child_env,
    cpu_seconds,
    descendants,
)
from bench.common import Row, percentile

# Issue 20's targets for the web tier alone: CPU ms per request and requests/s with 16 connections.
TARGETS = {"trigger": (3.0, 250), "detail": (1.5, 600), "detail40": (5.0, None)}


def add_arguments(parser):
    group = parser.add_argument_group("api")
    group.add_argument("--api-seconds", type=float, default=5, help="seconds per measurement (default 5)")
    group.add_argument("--api-connections", type=int, default=16, help="keep-alive connections (default 16)")
    group.add_argument(
        "--api-servers",
        default="serve",
        help="comma-separated servers to measure: serve (as deployed), "
        + ", ".join(SERVERS)
        + ", or all (default serve)",
    )
    group.add_argument("--api-web-workers", type=int, default=None, help="web processes (default: serve's)")
    group.add_argument(
        "--api-rounds",
        type=int,
        default=3,
        help="rounds over the requests, each request measured once a round; the median is reported with "
        "the range (default 3: on a virtual machine whose speed moves from minute to minute, one slow "
        "minute does not decide a figure)",
    )
    group.add_argument("--api-generator", choices=["auto", "wrk", "asyncio"], default="auto")
    group.add_argument(
        "--api-with-workers",
        default="serve",
        help="servers to measure again with a qcluster executing the runs (default serve; empty: none)",
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# Servers --------------------------------------------------------------------------------------------------


def _uvicorn(app, *extra):
    return lambda port, workers: [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--workers", str(workers), "--log-level", "warning", "--no-access-log", "--lifespan", "off", *extra,
    ]  # fmt: skip


def _granian(app, interface, *extra):
    return lambda port, workers: [
        sys.executable, "-m", "granian", "--interface", interface, "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers), "--log-level", "warning", "--no-ws", *extra, app,
    ]  # fmt: skip


def _gunicorn(app, *extra):
    return lambda port, workers: [
        sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
        "--log-level", "warning", *extra, app,
    ]  # fmt: skip


# name → (argv builder(port, web workers), what it is). `bench.asgi_django` is Django's own ASGIHandler (a
# thread and, on PostgreSQL, a connection per request); config.asgi is Baton's (config/asgi_handler.py).
SERVERS = {
    "uvicorn-h11-django": (
        _uvicorn("bench.asgi_django:application", "--http", "h11", "--loop", "asyncio"),
        "uvicorn, pure-Python HTTP (h11, asyncio), Django's ASGI handler: serve before issue 20",
    ),
    "uvicorn-django": (
        _uvicorn("bench.asgi_django:application"),
        "uvicorn with httptools and uvloop, Django's ASGI handler",
    ),
    "uvicorn-h11": (
        _uvicorn("config.asgi:application", "--http", "h11", "--loop", "asyncio"),
        "uvicorn, h11 and asyncio, Baton's pooled ASGI handler",
    ),
    "uvicorn": (_uvicorn("config.asgi:application"), "uvicorn with httptools and uvloop, Baton's handler"),
    "gunicorn-uvicorn": (
        _gunicorn("config.asgi:application", "--worker-class", "uvicorn.workers.UvicornWorker"),
        "gunicorn with uvicorn workers (httptools, uvloop), Baton's handler",
    ),
    "granian-asgi": (_granian("config.asgi:application", "asgi"), "granian, ASGI, Baton's handler"),
    "granian-wsgi": (
        _granian("config.wsgi:application", "wsgi", "--blocking-threads", "8"),
        "granian, WSGI, 8 threads (no SSE: for comparison)",
    ),
    "gunicorn-gthread": (
        _gunicorn("config.wsgi:application", "--worker-class", "gthread", "--threads", "8"),
        "gunicorn, WSGI, 8 threads (no SSE: for comparison)",
    ),
}


def _serve_command(port, workers):
    return [sys.executable, "manage.py", "serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port),
            "--web-workers", str(workers)]  # fmt: skip


class Server:
    def __init__(self, name: str, workers: int, **env):
        self.name, self.workers, self.port = name, workers, _free_port()
        build = _serve_command if name == "serve" else SERVERS[name][0]
        self.argv = build(self.port, workers)
        self.env = child_env(BATON_ENGINE_DISPATCH="queue", BATON_DEMO_ORG="false", **env)
        self.process: subprocess.Popen | None = None

    def __enter__(self):
        import httpx

        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, start_new_session=True, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.__exit__()
                raise RuntimeError(f"the {self.name} server did not start")
            time.sleep(0.2)

    def __exit__(self, *exc):
        import signal

        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=20)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def cpu(self) -> float:
        return cpu_seconds({self.process.pid} | descendants(self.process.pid))


# Load generators ------------------------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    key: str | None
    body: dict | None
    expected: int


@dataclass
class Load:
    requests: int
    seconds: float
    generator_cpu: float
    bad: int

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _raw(request: Request) -> bytes:
    payload = json.dumps(request.body).encode() if request.body is not None else b""
    lines = [f"{request.method} {request.path} HTTP/1.1", "Host: 127.0.0.1", "Accept: application/json"]
    if request.key:
        lines.append(f"Authorization: Bearer {request.key}")
    if request.body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def _asyncio_load(port, request: Request, seconds: float, connections: int) -> tuple[int, int]:
    raw = _raw(request)
    streams = [await asyncio.open_connection("127.0.0.1", port) for _ in range(connections)]
    stop_at = time.perf_counter() + seconds
    counts = [0, 0]

    async def worker(reader, writer):
        while time.perf_counter() < stop_at:
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            counts[0] += 1
            counts[1] += int(head[9:12]) != request.expected

    await asyncio.gather(*(worker(*stream) for stream in streams))
    for _, writer in streams:
        writer.close()
    return counts[0], counts[1]


def _wrk_load(port, request: Request, seconds: float, connections: int) -> Load:
    headers = {"Accept": "application/json"}
    if request.key:
        headers["Authorization"] = f"Bearer {request.key}"
    script = [f"wrk.method = {json.dumps(request.method)}"]
    if request.body is not None:
        headers["Content-Type"] = "application/json"
        script.append(f"wrk.body = {json.dumps(json.dumps(request.body))}")
    script += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as file:
        file.write("\n".join(script) + "\n")
    try:
        process = subprocess.Popen(
            ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--timeout", "30s", "-s", file.name,
             f"http://127.0.0.1:{port}{request.path}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        output = process.stdout.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.unlink(file.name)
    match = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if process.returncode or not match:
        raise RuntimeError(f"wrk failed: {output[-500:]}")
    elapsed = float(match[2]) / (1000 if match[3] == "ms" else 1)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    bad = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, errors.groups())) if errors else 0)
    if bad:
        print(output, file=sys.stderr)
    return Load(int(match[1]), elapsed, usage.ru_utime + usage.ru_stime, bad)


def generate(kind, port, request: Request, seconds: float, connections: int) -> Load:
    if kind == "wrk":
        return _wrk_load(port, request, seconds, connections)
    cpu, started = time.process_time(), time.perf_counter()
    count, bad = asyncio.run(_asyncio_load(port, request, seconds, connections))
    return Load(count, time.perf_counter() - started, time.process_time() - cpu, bad)


@dataclass
class Measure:
    rate: float
    cpu_ms: float
    generator_ms: float
    reference_ms: float = 0.0
    rounds: tuple[float, ...] = ()  # the CPU ms of each round, when this is their median

    @property
    def spread(self) -> str:
        if len(self.rounds) < 2:
            return ""
        return f"median of {len(self.rounds)} rounds ({min(self.rounds):.2f}–{max(self.rounds):.2f} ms); "


def median_of(measures: list[Measure]) -> Measure:
    """The rounds of one request as one figure: the median CPU and rate (each its own median), the rounds'
    CPU kept for the range."""
    import statistics

    return Measure(
        statistics.median(m.rate for m in measures),
        statistics.median(m.cpu_ms for m in measures),
        statistics.median(m.generator_ms for m in measures),
        statistics.median(m.reference_ms for m in measures),
        tuple(m.cpu_ms for m in measures),
    )


def reference_loop_ms() -> float:
    """CPU ms of a fixed pure-Python loop (a million multiply-adds), taken just before a measurement: how fast
    the machine's cores ran at that moment. On a virtual machine it moved by up to twice between minutes
    (docs/performance.md "The web tier, third session"), and CPU per request moves with it."""
    started, total = time.process_time(), 0
    for number in range(1_000_000):
        total += number * number
    return (time.process_time() - started) * 1000


def measure_server(server: Server, request: Request, options, kind: str) -> Measure:
    """A 1 s warm-up, then `--api-seconds` of closed-loop requests: rate and the server's CPU per request."""
    generate(kind, server.port, request, 1, options.api_connections)
    reference = reference_loop_ms()
    before = server.cpu()
    load = generate(kind, server.port, request, options.api_seconds, options.api_connections)
    cpu = server.cpu() - before
    if not load.requests:
        raise RuntimeError(
            f"{server.name} {request.method} {request.path}: no answer in {options.api_seconds} s"
        )
    if load.bad:
        raise RuntimeError(f"{server.name} {request.method} {request.path}: {load.bad} unexpected answers")
    return Measure(
        load.rate, cpu / load.requests * 1000, load.generator_cpu / load.requests * 1000, reference
    )


# Endpoints taking turns (bench/schedules_bench.py compares two endpoints this way) ----------------------


class Connection:
    def __init__(self, reader, writer):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port):
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"content-length":
                length = int(value)
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self):
        self.writer.close()


def build_request(method: str, path: str, key: str, body: dict | None = None) -> bytes:
    payload = json.dumps(body).encode() if body is not None else b""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Authorization: Bearer {key}",
             "Accept: application/json"]  # fmt: skip
    if body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(payload)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + payload


async def load(port, raw: bytes, expected: int, seconds: float, connections: int):
    conns = [await Connection.open(port) for _ in range(connections)]
    latencies: list[float] = []
    bad: list[tuple[int, bytes]] = []
    stop_at = time.perf_counter() + seconds

    async def worker(conn):
        while time.perf_counter() < stop_at:
            begin = time.perf_counter()
            status, body = await conn.request(raw)
            latencies.append(time.perf_counter() - begin)
            if status != expected:
                bad.append((status, body[:300]))

    started = time.perf_counter()
    await asyncio.gather(*(worker(conn) for conn in conns))
    elapsed = time.perf_counter() - started
    for conn in conns:
        conn.close()
    return len(latencies) / elapsed, latencies, bad


ROUNDS = 4


def measure(port, requests: dict[str, tuple[bytes, int]], options) -> dict[str, dict]:
    """Each endpoint's rate and median latency, the endpoints taking turns: `ROUNDS` rounds of
    `--api-seconds / ROUNDS` each, in a rotating order, so that a drift of the machine's speed during the
    benchmark (seen here: a third between runs minutes apart) weighs on every endpoint alike. Also the
    ratio of each round's rates to the first endpoint's (the bare view of the same method)."""
    for raw, expected in requests.values():
        asyncio.run(load(port, raw, expected, 0.5, options.api_connections))  # warm-up
    names = list(requests)
    counts = dict.fromkeys(names, 0)
    elapsed = dict.fromkeys(names, 0.0)
    latencies: dict[str, list[float]] = {name: [] for name in names}
    rounds: list[dict[str, float]] = []
    for index in range(ROUNDS):
        rates = {}
        for name in names[index % len(names) :] + names[: index % len(names)]:
            raw, expected = requests[name]
            rate, measured, bad = asyncio.run(
                load(port, raw, expected, options.api_seconds / ROUNDS, options.api_connections)
            )
            if bad:
                raise RuntimeError(f"{name}: {len(bad)} unexpected answers, e.g. {bad[0]}")
            counts[name] += len(measured)
            elapsed[name] += len(measured) / rate
            latencies[name] += measured
            rates[name] = rate
        rounds.append(rates)
    return {
        name: {
            "rate": counts[name] / elapsed[name],
            "p50": percentile(latencies[name], 50) * 1000,
            "round_ratios": [rates[name] / rates[names[0]] for rates in rounds],
        }
        for name in names
    }


# The benchmark --------------------------------------------------------------------------------------------


def _finished_run(workflow, actor):
    from django.conf import settings

    from runs.services import run_create

    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "inline"
    try:
        return run_create(workflow=workflow, actor=actor, input_data={"n": 1})
    finally:
        settings.BATON_ENGINE_DISPATCH = previous


def run(options) -> list[Row]:
    from accounts.choices import ALL_SCOPES
    from accounts.services import api_key_create
    from config.management.commands.serve import web_workers_default
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("API bench")
    key = api_key_create(organization=org, actor=actor, name="bench", scopes=ALL_SCOPES).key
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(5))
    long_workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(40))
    run5, run40 = _finished_run(workflow, actor), _finished_run(long_workflow, actor)
    run5.refresh_from_db()
    run40.refresh_from_db()
    assert run5.status == run40.status == "completed", (run5.status, run40.status)

    body = {"input_data": {"n": 1}}
    requests = {
        "django": Request("GET", "/_bench/django", None, None, 200),
        "bare-get": Request("GET", "/api/v1/_bench/bare", key, None, 200),
        "bare-post": Request("POST", "/api/v1/_bench/bare", key, body, 202),
        "trigger": Request("POST", f"/api/v1/workflows/{workflow.pk}/run", key, body, 202),
        "detail": Request("GET", f"/api/v1/runs/{run5.pk}", key, None, 200),
        "detail40": Request("GET", f"/api/v1/runs/{run40.pk}", key, None, 200),
    }
    labels = {
        "django": "bare Django view (GET, no DRF, no auth)",
        "bare-get": "bare DRF view, GET (auth, permission, throttle, middleware)",
        "bare-post": "bare DRF view, POST",
        "trigger": "POST /workflows/{ref}/run (5-step workflow)",
        "detail": "GET /runs/{id} (5 steps)",
        "detail40": "GET /runs/{id} (40 steps)",
    }
    kind = options.api_generator
    if kind == "auto":
        kind = "wrk" if shutil.which("wrk") else "asyncio"
    workers = options.api_web_workers or web_workers_default()
    servers = list(SERVERS) if options.api_servers == "all" else options.api_servers.split(",")
    if "serve" not in servers:
        servers.insert(0, "serve")
    conns = options.api_connections
    rows: list[Row] = []
    results: dict[str, dict[str, Measure]] = {}
    for name in servers:
        module = None if name == "serve" else SERVERS[name][0](0, 1)[2]
        if module in ("granian", "gunicorn") and importlib.util.find_spec(module) is None:
            rows.append(Row("api", name, "not installed", "", f"pip install {module} to measure it"))
            continue
        names = list(requests) if name == "serve" else [n for n in requests if n != "bare-post"]
        with Server(name, workers) as server:
            measured = _rounds(server, {n: requests[n] for n in names}, options, kind)
        results[name] = {n: m for n, m in measured.items() if isinstance(m, Measure)}
        for n, failure in measured.items():
            if not isinstance(failure, Measure):  # keep the other measurements
                rows.append(Row("api", f"{labels[n]} — {name}", "failed", "", failure[:200], False))
        what = "`serve` as deployed" if name == "serve" else f"{name}: {SERVERS[name][1]}"
        for n, m in results[name].items():
            cpu_target, rate_target = TARGETS.get(n, (None, None)) if name == "serve" else (None, None)
            goals = (cpu_target and f"≤ {cpu_target} ms CPU", rate_target and f"≥ {rate_target}/s")
            target = " and ".join(goal for goal in goals if goal)
            met = None
            if cpu_target:
                met = m.cpu_ms <= cpu_target and (rate_target is None or m.rate >= rate_target)
            bare = results[name].get("django")
            relative = (
                f"{m.cpu_ms / bare.cpu_ms:.1f}× the bare Django view's CPU; "
                if bare and n != "django"
                else ""
            )
            rows.append(Row(
                "api", f"{labels[n]} — {what}", f"{m.cpu_ms:.2f} ms CPU, {m.rate:,.0f} req/s", target,
                f"{m.spread}{relative}{workers} web process(es), {conns} connections; generator ({kind}) "
                f"{m.generator_ms:.2f} ms CPU/request; reference loop {m.reference_ms:.0f} ms", met,
            ))  # fmt: skip
    if len([n for n in results if n != "serve" and "django" in results[n]]):
        measured = [n for n in results if n != "serve" and "django" in results[n]]
        best = min(measured, key=lambda n: results[n]["django"].cpu_ms)
        floor = results[best]["django"]
        rows.append(Row("api", "cheapest server for the bare Django view", best, "",
                        f"{floor.cpu_ms:.2f} ms CPU, {floor.rate:,.0f} req/s"))  # fmt: skip
    for name in options.api_with_workers.split(",") if options.api_with_workers else ():
        with Cluster(workers=2), Server(name, workers) as server:
            measured = _rounds(server, {n: requests[n] for n in ("trigger", "detail")}, options, kind)
        for n, m in measured.items():
            if not isinstance(m, Measure):
                rows.append(Row("api", f"{labels[n]} — {name} with workers", "failed", "", m[:200]))
                continue
            rows.append(Row(
                "api", f"{labels[n]} — {name}, a qcluster (2 workers) executing the runs",
                f"{m.cpu_ms:.2f} ms CPU, {m.rate:,.0f} req/s", "",
                f"{m.spread}web processes' CPU only; the workers share the cores; "
                f"reference loop {m.reference_ms:.0f} ms",
            ))  # fmt: skip
    return rows


def _rounds(server: Server, requests: dict[str, Request], options, kind: str) -> dict[str, Measure | str]:
    """Each request measured once a round, `--api-rounds` rounds, so that a request's measurements are spread
    over the whole run; the median of each (or why it failed)."""
    measures: dict[str, list[Measure]] = {n: [] for n in requests}
    failed: dict[str, str] = {}
    for _ in range(max(1, options.api_rounds)):
        for n, request in requests.items():
            if n in failed:
                continue
            try:
                measures[n].append(measure_server(server, request, options, kind))
            except RuntimeError as exc:
                failed[n] = str(exc)
    return {n: failed[n] if n in failed else median_of(measures[n]) for n in requests}
