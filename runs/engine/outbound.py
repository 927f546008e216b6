"""The one outbound HTTP client: http_request and webhook steps and LLM base URLs all go through `fetch`.

It enforces the organisation's security policy (`block_private_networks`, `http_allowlist`) on every hop:
the host is parsed the way browsers do (every numeric IPv4 form), resolved once, every resolved address
is classified, and the request is sent to that checked address (Host header and TLS SNI/certificate
check stay on the hostname), so a DNS answer cannot change between the check and the connection.
Redirects are followed here, one checked hop at a time. See docs/security.md.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import functools
import ipaddress
import json as jsonlib
import logging
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlencode, urljoin

import httpcore
import httpx

from accounts.network import IPAddress, OutboundError, OutboundPolicy, Target, ip_literal, parse_url
from runs.engine import slots

logger = logging.getLogger(__name__)

Resolver = Callable[[str, int], Iterable[str]]

DEFAULT_MAX_RESPONSE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Headers that carry credentials: dropped when a redirect leaves the original origin.
SENSITIVE_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})


# --- the client ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundResponse:
    status_code: int
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    content: bytes
    url: str  # the final URL (after redirects), without userinfo
    elapsed_ms: int
    redirects: tuple[str, ...] = ()  # the URLs redirected to, in order

    @property
    def text(self) -> str:
        charset = "utf-8"
        match = re.search(r"charset=([\w.:-]+)", self.headers.get("content-type", ""), re.IGNORECASE)
        if match:
            charset = match.group(1).strip("\"'")
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return jsonlib.loads(self.content)


_dns_pools: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _dns_pool() -> concurrent.futures.ThreadPoolExecutor:
    # One pool per process: a pool inherited through fork (django-q2 forks its workers) has no threads.
    pid = os.getpid()
    pool = _dns_pools.get(pid)
    if pool is None:
        _dns_pools.clear()
        pool = _dns_pools.setdefault(
            pid, concurrent.futures.ThreadPoolExecutor(max_workers=32, thread_name_prefix="baton-dns")
        )
    return pool


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for host (A and AAAA)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _resolve(target: Target, resolver: Resolver, deadline: float, call: _Call) -> list[IPAddress]:
    if target.ip is not None:
        return [target.ip]
    future = _dns_pool().submit(resolver, target.host, target.port)
    try:
        while True:  # in short waits, so that a stop signal is seen while the resolver hangs
            left = deadline - time.monotonic()
            try:
                answers = future.result(timeout=max(min(left, GUARD_TICK_SECONDS), 0.001))
                break
            except concurrent.futures.TimeoutError:
                if left <= GUARD_TICK_SECONDS:
                    raise
                call.raise_if_fired()
    except concurrent.futures.TimeoutError:
        raise OutboundError("timeout", f"Resolving {target.host} timed out.") from None
    except (OSError, UnicodeError) as exc:
        raise OutboundError("dns_failed", f"Could not resolve {target.host}: {exc}.") from None
    addresses = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError:
            continue
    if not addresses:
        raise OutboundError("dns_failed", f"Could not resolve {target.host}: no addresses.")
    return addresses


@functools.cache
def _default_ssl_context() -> ssl.SSLContext:
    return httpx.create_ssl_context()  # certifi's CA bundle, hostname checking on; built once (it is slow)


def _ssl_context(verify: bool | ssl.SSLContext) -> bool | ssl.SSLContext:
    return _default_ssl_context() if verify is True else verify


def _is_tls_error(exc: BaseException) -> bool:
    seen = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise OutboundError("timeout", f"The request timed out ({what}).")
    return left


def _flatten_headers(headers: httpx.Headers) -> dict[str, str]:
    flat: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        flat[key] = f"{flat[key]}, {value}" if key in flat else value
    return flat


def fetch(
    method: str,
    url: str,
    *,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
    content: bytes | str | None = None,
    timeout: float = 30.0,
    policy: OutboundPolicy | None = None,
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    max_header_bytes: int = DEFAULT_MAX_HEADER_BYTES,
    follow_redirects: bool = True,
    max_redirects: int = 5,
    verify: bool | ssl.SSLContext = True,
    resolver: Resolver = system_resolver,
    should_stop: Callable[[], bool] | None = None,
) -> OutboundResponse:
    """Send one request under the policy and return the whole (size-capped) response.

    `timeout` bounds everything (DNS, connects, every hop, reading the body). `should_stop` (a step's
    terminate signal) abandons the call within GUARD_TICK_SECONDS once it returns True: its socket is shut
    down and OutboundError `stopped` raised. Raises OutboundError with code invalid_url, ssrf_blocked,
    dns_failed, timeout, connection_failed, tls_error, response_too_large, too_many_redirects or stopped.
    HTTP error statuses are returned, not raised. In an I/O slot the thread's database connection is given
    back while it waits (runs/engine/slots.py).
    """
    policy = policy if policy is not None else OutboundPolicy()
    started = time.monotonic()
    deadline = started + timeout
    method = method.upper()
    if not re.fullmatch(r"[A-Z]{1,16}", method):
        raise OutboundError("invalid_request", f"Invalid HTTP method {method!r}.")

    try:
        request_headers = httpx.Headers(dict(headers or {}))
    except (TypeError, ValueError) as exc:
        raise OutboundError("invalid_request", f"Invalid request headers: {exc}.") from None
    if timeout <= 0 or max_response_bytes < 0 or max_redirects < 0:
        raise OutboundError(
            "invalid_request", "timeout must be positive; size and redirect limits not negative."
        )
    body: bytes | None
    if json is not None and content is not None:
        raise OutboundError("invalid_request", "Give either json or content, not both.")
    if json is not None:
        body = jsonlib.dumps(json, separators=(",", ":"), ensure_ascii=False).encode()
        request_headers.setdefault("content-type", "application/json")
    elif content is not None:
        body = content.encode() if isinstance(content, str) else bytes(content)
    else:
        body = None
    request_headers.setdefault("user-agent", "Baton/1.0")
    request_headers.setdefault("accept", "*/*")
    request_headers.setdefault("accept-encoding", "identity")  # no decompression bombs: bytes are counted raw
    request_headers.pop("host", None)

    target = parse_url(url)
    if params:
        separator = "&" if "?" in target.path else "?"
        target = replace(target, path=target.path + separator + urlencode(params, doseq=True))
    if target.userinfo and "authorization" not in request_headers:
        token = base64.b64encode(target.userinfo.encode()).decode()
        request_headers["authorization"] = f"Basic {token}"
    first_origin = target.origin
    redirects: list[str] = []
    call = _Call(deadline, should_stop)
    with slots.network_wait(), _guard().watching(call):
        while True:
            client, response = _send_hop(
                method, target, request_headers, body, policy, resolver, call, verify, max_header_bytes
            )
            try:
                status, location = response.status_code, response.headers.get("location")
                if not (follow_redirects and status in REDIRECT_STATUSES and location):
                    return OutboundResponse(
                        status_code=status,
                        headers=_flatten_headers(response.headers),
                        content=_read_capped(response, max_response_bytes, call),
                        url=target.url(),
                        elapsed_ms=int((time.monotonic() - started) * 1000),
                        redirects=tuple(redirects),
                    )
            finally:
                response.close()
                client.close()
            if len(redirects) >= max_redirects:
                raise OutboundError(
                    "too_many_redirects", f"Stopped after {max_redirects} redirects at {target.display()}."
                )
            next_target = parse_url(urljoin(target.url(), location))
            next_target = replace(next_target, userinfo="")  # never send credentials a server handed us
            if status == 303 or (status in (301, 302) and method == "POST"):
                method = "GET" if method != "HEAD" else "HEAD"
                body = None
                for name in ("content-type", "content-length", "transfer-encoding"):
                    request_headers.pop(name, None)
            if next_target.origin != first_origin:
                for name in SENSITIVE_HEADERS:
                    request_headers.pop(name, None)
            logger.debug("outbound redirect %s -> %s", target.display(), next_target.display())
            redirects.append(next_target.url())
            target = next_target


def _send_hop(
    method: str,
    target: Target,
    headers: httpx.Headers,
    body: bytes | None,
    policy: OutboundPolicy,
    resolver: Resolver,
    call: _Call,
    verify: bool | ssl.SSLContext,
    max_header_bytes: int,
) -> tuple[httpx.HTTPTransport, httpx.Response]:
    """Check and send one hop to the pinned address; the returned response is open (stream)."""
    deadline = call.deadline
    loopback_name = target.host is not None and (
        target.host == "localhost" or target.host.endswith(".localhost")
    )
    if loopback_name and policy.block_private_networks and not policy.host_allowed(target.host):
        raise OutboundError(
            "ssrf_blocked",
            f"Refused to connect to {target.host}: it is a loopback name.",
            details={"host": target.host, "reason": "loopback"},
        )
    addresses = _resolve(target, resolver, deadline, call)
    policy.check(target, addresses)
    hop_headers = httpx.Headers(headers)
    hop_headers["host"] = target.host_header
    extensions: dict[str, Any] = {}
    if target.scheme == "https" and target.host is not None:
        # Connect to the checked IP but present and verify the certificate for the host name.
        extensions["sni_hostname"] = target.host
    last_error: Exception | None = None
    for ip in addresses:
        call.raise_if_fired()
        left = _remaining(deadline, "connecting")
        # A transport (connection pool) per hop and address: a TLS connection verified for one host is never
        # reused for another. The transport is used directly, without httpx.Client, whose INFO log line
        # would carry the full URL (query strings hold tokens). trust_env: no proxies, no .netrc.
        client = httpx.HTTPTransport(verify=_ssl_context(verify), trust_env=False, retries=0)
        # Its sockets are handed to the call, whose guard shuts them at the deadline or when told to stop.
        client._pool._network_backend = _GuardedBackend(call)
        try:
            request = httpx.Request(
                method,
                f"{target.scheme}://{ip_literal(ip)}:{target.port}{target.path}",
                headers=hop_headers,
                content=body,
                extensions={**extensions, "timeout": httpx.Timeout(left).as_dict()},
            )
        except httpx.InvalidURL as exc:
            client.close()
            raise OutboundError("invalid_url", f"Invalid URL: {exc}.") from None
        logger.debug("outbound %s %s via %s", method, target.display(), ip)
        try:
            response = client.handle_request(request)
            response.request = request
        except httpx.TimeoutException:
            client.close()
            call.raise_if_fired()
            raise OutboundError("timeout", f"The request to {target.display()} timed out.") from None
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            client.close()
            call.raise_if_fired()
            if _is_tls_error(exc):
                raise OutboundError(
                    "tls_error", f"TLS verification with {target.host or ip} failed: {exc}."
                ) from None
            last_error = exc
            if isinstance(exc, httpx.ConnectError):
                continue  # nothing was sent: the next resolved address may answer
            if "header" in str(exc).lower() or "too large" in str(exc).lower():
                raise OutboundError("response_too_large", "The response headers are too large.") from None
            break
        except httpx.LocalProtocolError as exc:
            client.close()
            raise OutboundError("invalid_request", f"The request is not valid HTTP: {exc}.") from None
        except httpx.HTTPError as exc:
            client.close()
            call.raise_if_fired()
            last_error = exc
            break
        header_bytes = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
        if header_bytes > max_header_bytes or len(response.headers.raw) > 512:
            response.close()
            client.close()
            raise OutboundError(
                "response_too_large", f"The response headers are larger than {max_header_bytes} bytes."
            )
        return client, response
    raise OutboundError(
        "connection_failed", f"Could not connect to {target.display()}: {last_error}."
    ) from None


# --- abandoning a call: its deadline, a stop signal ---------------------------------------------------

GUARD_TICK_SECONDS = 0.05


def _shutdown(sock) -> None:
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Call:
    """One fetch in flight: the sockets it opened, its deadline and its stop signal. The guard thread shuts
    its sockets down at the deadline or once `should_stop()` is true, which wakes a read blocked in the
    calling thread (a server that sends a byte just before the deadline cannot double the total time)."""

    def __init__(self, deadline: float, should_stop: Callable[[], bool] | None):
        self.deadline = deadline
        self.should_stop = should_stop
        self.fired = ""  # "timeout" | "stopped"
        self.sockets: list = []
        self.lock = threading.Lock()

    def add_socket(self, sock) -> None:
        with self.lock:
            self.sockets.append(sock)
            fired = self.fired
        if fired:
            _shutdown(sock)

    def check(self, now: float) -> None:
        if self.fired:
            return
        if self.should_stop is not None and self.should_stop():
            self.fire("stopped")
        elif now >= self.deadline:
            self.fire("timeout")

    def fire(self, reason: str) -> None:
        with self.lock:
            if self.fired:
                return
            self.fired = reason
            sockets = list(self.sockets)
        for sock in sockets:
            _shutdown(sock)

    def stopped(self) -> bool:
        if not self.fired and self.should_stop is not None and self.should_stop():
            self.fire("stopped")
        return self.fired == "stopped"

    def raise_if_fired(self) -> None:
        if self.stopped():
            raise OutboundError("stopped", "The request was abandoned: the step was told to stop.")
        if self.fired == "timeout":
            raise OutboundError("timeout", "The request timed out.")


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore's network backend, handing every socket it connects to the call."""

    def __init__(self, call: _Call):
        self.call = call

    def connect_tcp(self, *args, **kwargs):
        stream = super().connect_tcp(*args, **kwargs)
        sock = stream.get_extra_info("socket")
        if sock is not None:
            self.call.add_socket(sock)
        return stream


class _Guard:
    """One thread per process watching every call in flight (asleep while there is none)."""

    def __init__(self):
        self.pid = os.getpid()
        self.calls: set[_Call] = set()
        self.lock = threading.Lock()
        self.wakeup = threading.Event()
        self.thread: threading.Thread | None = None

    @contextlib.contextmanager
    def watching(self, call: _Call):
        with self.lock:
            self.calls.add(call)
            if self.thread is None or not self.thread.is_alive():
                self.thread = threading.Thread(target=self._loop, name="baton-outbound-guard", daemon=True)
                self.thread.start()
        self.wakeup.set()
        try:
            yield call
        finally:
            with self.lock:
                self.calls.discard(call)

    def _loop(self) -> None:
        while True:
            with self.lock:
                calls = list(self.calls)
                if not calls:
                    self.wakeup.clear()
            if not calls:
                self.wakeup.wait()
                continue
            now = time.monotonic()
            for call in calls:
                try:
                    call.check(now)
                except Exception:  # a broken stop signal must not stop the guard
                    logger.warning("outbound guard: checking a call failed", exc_info=True)
            time.sleep(GUARD_TICK_SECONDS)


_guards: dict[int, _Guard] = {}


def _guard() -> _Guard:
    pid = os.getpid()  # a forked process makes its own (the thread does not survive a fork)
    guard = _guards.get(pid)
    if guard is None:
        _guards.clear()
        guard = _guards.setdefault(pid, _Guard())
    return guard


def _read_capped(response: httpx.Response, max_bytes: int, call: _Call) -> bytes:
    declared = response.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > max_bytes:
        raise OutboundError(
            "response_too_large", f"The response is {declared} bytes, over the {max_bytes}-byte limit."
        )
    chunks: list[bytes] = []
    total = 0
    # Each read may wait up to the time that was left when the hop started; the guard cuts the socket at the
    # deadline itself.
    try:
        for chunk in response.iter_raw():
            total += len(chunk)
            if total > max_bytes:
                raise OutboundError("response_too_large", f"The response is over the {max_bytes}-byte limit.")
            chunks.append(chunk)
            call.raise_if_fired()
            _remaining(call.deadline, "reading the response")
    except httpx.TimeoutException:
        call.raise_if_fired()
        raise OutboundError("timeout", "The request timed out (reading the response).") from None
    except (httpx.ReadError, httpx.RemoteProtocolError) as exc:
        call.raise_if_fired()
        raise OutboundError("connection_failed", f"The connection broke while reading: {exc}.") from None
    return b"".join(chunks)
