"""API: requests per second of POST /workflows/{ref}/run and GET /runs/{id}, each next to a bare DRF view
(bench/urls.py: the same authentication, permission and throttle classes, middleware and server, no
work) measured in the same run, so the ratio says what the endpoint itself costs.

Server: uvicorn (`config.asgi:application`, bench settings, one worker process, access log off) on
127.0.0.1, on this benchmark's database; triggered runs are queued to the broker with no cluster running.
Load generator: this process, asyncio with `--api-connections` keep-alive HTTP/1.1 connections written
and parsed by hand (cheaper per request than an HTTP client library, so the generator is not the limit
on a 2-core machine; it still shares the cores with the server). Each endpoint: a warm-up, then
`--api-seconds` of closed-loop requests in four rounds taking turns with its bare view (`measure`); every
answer must have the expected status.
"""

import asyncio
import json
import socket
import subprocess
import sys
import time

from bench.cluster import ROOT, bench_organization, chain_definition, child_env
from bench.common import Row, percentile

TRIGGER_TARGET, DETAIL_TARGET = 0.3, 0.6


def add_arguments(parser):
    group = parser.add_argument_group("api")
    group.add_argument("--api-seconds", type=float, default=8, help="seconds per endpoint (default 8)")
    group.add_argument("--api-connections", type=int, default=8, help="concurrent connections (default 8)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


def run(options) -> list[Row]:
    import httpx
    from django.conf import settings

    from accounts.choices import ALL_SCOPES
    from accounts.services import api_key_create
    from runs.services import run_create
    from workflows.services import workflow_create

    org, _owner, actor = bench_organization("API bench")
    key = api_key_create(organization=org, actor=actor, name="bench", scopes=ALL_SCOPES).key
    workflow = workflow_create(organization=org, actor=actor, definition=chain_definition(5))
    previous = settings.BATON_ENGINE_DISPATCH
    settings.BATON_ENGINE_DISPATCH = "inline"
    try:
        finished = run_create(workflow=workflow, actor=actor, input_data={"n": 1})
    finally:
        settings.BATON_ENGINE_DISPATCH = previous

    from django.db import connection

    # With DATABASE_URL the settings keep connections 60 s (CONN_MAX_AGE), which under ASGI leaves one open
    # connection behind per request thread until PostgreSQL refuses more ("too many clients"): the server
    # here closes them after each request instead (docs/performance.md).
    server_env = {"BATON_BENCH_CONN_MAX_AGE": 0} if connection.vendor == "postgresql" else {}
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1", "--log-level", "warning", "--no-access-log"],
        cwd=ROOT, env=child_env(BATON_ENGINE_DISPATCH="queue", **server_env),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.2)
        probe = httpx.get(f"{base}/api/v1/runs", headers={"Authorization": f"Bearer {key}"})
        if probe.status_code != 200:
            note = f"GET /api/v1/runs answered {probe.status_code}"
            return [Row("api", "runs API", "not available", "", note)]
        body = {"input_data": {"n": 1}}
        posts = measure(port, {
            "bare": (build_request("POST", "/api/v1/_bench/bare", key, body), 202),
            "trigger": (build_request("POST", f"/api/v1/workflows/{workflow.pk}/run", key, body), 202),
        }, options)  # fmt: skip
        gets = measure(port, {
            "bare": (build_request("GET", "/api/v1/_bench/bare", key), 200),
            "detail": (build_request("GET", f"/api/v1/runs/{finished.pk}", key), 200),
        }, options)  # fmt: skip
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    conns = options.api_connections
    trigger, detail = posts["trigger"], gets["detail"]
    trigger_ratio = trigger["rate"] / posts["bare"]["rate"]
    detail_ratio = detail["rate"] / gets["bare"]["rate"]

    def spread(ratios):
        return f"rounds {min(ratios):.2f}–{max(ratios):.2f}×"

    bare_post, bare_get = posts["bare"], gets["bare"]
    trigger_note = (
        f"{trigger_ratio:.2f}× the bare DRF POST ({spread(trigger['round_ratios'])}); "
        f"p50 {trigger['p50']:.1f} ms; {conns} connections, uvicorn 1 worker"
        + ("; CONN_MAX_AGE=0" if server_env else "")
    )
    detail_note = (
        f"{detail_ratio:.2f}× the bare DRF GET ({spread(detail['round_ratios'])}); p50 {detail['p50']:.1f} ms"
    )
    return [
        Row("api", "POST /workflows/{ref}/run (5-step workflow)", f"{trigger['rate']:,.0f} req/s",
            f"≥ {TRIGGER_TARGET}× bare", trigger_note, trigger_ratio >= TRIGGER_TARGET),
        Row("api", "GET /runs/{id} (5 steps)", f"{detail['rate']:,.0f} req/s",
            f"≥ {DETAIL_TARGET}× bare", detail_note, detail_ratio >= DETAIL_TARGET),
        Row("api", "bare DRF view, POST (same auth, middleware, server)",
            f"{bare_post['rate']:,.0f} req/s", "", f"p50 {bare_post['p50']:.1f} ms"),
        Row("api", "bare DRF view, GET", f"{bare_get['rate']:,.0f} req/s", "",
            f"p50 {bare_get['p50']:.1f} ms"),
    ]  # fmt: skip
