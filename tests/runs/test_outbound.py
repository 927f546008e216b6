"""The outbound HTTP client: SSRF rules, DNS pinning, redirects, caps. Traffic only ever goes to 127.0.0.1."""

import ipaddress
import json
import os
import socket
import ssl
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from accounts.network import (
    OutboundError,
    OutboundPolicy,
    address_block_reason,
    parse_url,
    validate_allowlist,
)
from runs.engine.outbound import fetch

# local HTTP servers on threads: a read that never ends would hang the test
pytestmark = pytest.mark.timeout(60)

LOCAL = OutboundPolicy(allowlist=["127.0.0.1"])


def no_dns(host, port):
    raise AssertionError(f"no DNS lookup expected, got one for {host}")


def static_resolver(table, calls=None):
    def resolve(host, port):
        if calls is not None:
            calls.append(host)
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return table[host]

    return resolve


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"

    def log_message(self, *args):
        pass

    def _reply(self, status=200, body=b"", headers=(), length=True):
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if length:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body:
            self.wfile.write(body)

    def do_POST(self):
        self.do_GET()

    def do_GET(self):
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.command == "POST":
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path.startswith("/echo"):
            data = {"method": self.command, "headers": {k.lower(): v for k, v in self.headers.items()}}
            self._reply(body=json.dumps(data).encode(), headers=[("Content-Type", "application/json")])
        elif url.path == "/redirect":
            self._reply(int(query.get("status", 302)), headers=[("Location", query["to"])])
        elif url.path == "/loop":
            self._reply(302, headers=[("Location", "/loop")])
        elif url.path == "/big":
            size = int(query["size"])
            self._reply(body=b"x" * size, length=query.get("length") != "no")
        elif url.path == "/slow":
            time.sleep(3)
            self._reply(body=b"late")
        elif url.path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            for _ in range(100):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(0.1)
        elif url.path == "/pause":  # a byte just before the client's deadline, then silence
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.flush()
            time.sleep(float(query["before"]))
            self.wfile.write(b"x")
            self.wfile.flush()
            time.sleep(3)
        elif url.path == "/fat-headers":
            self._reply(headers=[(f"X-Fill-{i}", "v" * 1000) for i in range(80)])
        else:
            self._reply(404, b"nope")


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        pass  # clients that time out on purpose break pipes


class Server:
    def __init__(self, tls_context=None):
        self.httpd = QuietServer(("127.0.0.1", 0), Handler)
        if tls_context is not None:
            self.httpd.socket = tls_context.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path, host="127.0.0.1", scheme="http"):
        return f"{scheme}://{host}:{self.port}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def server():
    s = Server()
    yield s
    s.close()


@pytest.fixture(scope="module")
def other_server():
    s = Server()
    yield s
    s.close()


# --- the SSRF table: every blocked class and encoding, with the default policy ------------------------

BLOCKED_URLS = [
    # IPv4 classes
    ("http://10.0.0.1/", "private"),
    ("http://172.16.0.1/", "private"),
    ("http://172.31.255.254/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://127.0.0.1/", "loopback"),
    ("http://127.255.255.254/", "loopback"),
    ("http://169.254.1.1/", "link_local"),
    ("http://100.64.0.1/", "cgnat"),
    ("http://100.127.255.254/", "cgnat"),
    ("http://224.0.0.1/", "multicast"),
    ("http://239.255.255.250/", "multicast"),
    ("http://0.0.0.0/", "unspecified"),
    ("http://0.1.2.3/", "unspecified"),
    ("http://255.255.255.255/", "broadcast"),
    ("http://240.0.0.1/", "reserved"),
    ("http://198.18.0.1/", "reserved"),
    ("http://192.0.2.1/", "reserved"),
    # cloud metadata
    ("http://169.254.169.254/latest/meta-data/", "metadata"),
    ("http://169.254.170.2/", "metadata"),
    ("http://100.100.100.200/", "metadata"),
    ("http://[fd00:ec2::254]/", "metadata"),
    ("http://[::ffff:169.254.169.254]/", "metadata"),
    # numeric encodings of 127.0.0.1
    ("http://2130706433/", "loopback"),
    ("http://0177.0.0.1/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://0x7F.0.0.1/", "loopback"),
    ("http://0x7f000001/", "loopback"),
    ("http://017700000001/", "loopback"),
    ("http://127.1/", "loopback"),
    ("http://127.0.1/", "loopback"),
    ("http://127.0.0.1./", "loopback"),
    ("http://%31%32%37.0.0.1/", "loopback"),
    ("http://\uff11\uff12\uff17.\uff10.\uff10.\uff11/", "loopback"),  # full-width digits
    ("http://user:pw@127.0.0.1:8080/", "loopback"),
    ("https://0xa9fea9fe/", "metadata"),  # 169.254.169.254 in hex
    ("http://0251.0376.0251.0376/", "metadata"),  # ... in octal
    # IPv6 classes and forms
    ("http://[::1]/", "loopback"),
    ("http://[0:0:0:0:0:0:0:1]:8000/", "loopback"),
    ("http://[::]/", "unspecified"),
    ("http://[fe80::1]/", "link_local"),
    ("http://[fe80::1%25eth0]/", "link_local"),  # zone id
    ("http://[fc00::1]/", "unique_local"),
    ("http://[fd12:3456:789a::1]/", "unique_local"),
    ("http://[fec0::1]/", "site_local"),
    ("http://[ff02::1]/", "multicast"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),  # IPv4-mapped
    ("http://[::ffff:7f00:1]/", "loopback"),
    ("http://[::ffff:10.0.0.1]/", "private"),
    ("http://[::127.0.0.1]/", "loopback"),  # IPv4-compatible
    ("http://[64:ff9b::7f00:1]/", "loopback"),  # NAT64 of 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", "metadata"),  # NAT64 of 169.254.169.254
    ("http://[64:ff9b::c0a8:101]/", "private"),  # NAT64 of 192.168.1.1
    ("http://[2002:7f00:1::1]/", "loopback"),  # 6to4 of 127.0.0.1
    ("http://[2002:a00:1::]/", "private"),  # 6to4 of 10.0.0.1
    ("http://[2001:0:808:808::f5ff:fffe]/", "private"),  # Teredo, client 10.0.0.1
    # loopback names (refused before any DNS lookup)
    ("http://localhost/", "loopback"),
    ("http://LOCALHOST.:8000/", "loopback"),
    ("http://api.localhost/", "loopback"),
]


@pytest.mark.parametrize(("url", "reason"), BLOCKED_URLS, ids=[u for u, _ in BLOCKED_URLS])
def test_ssrf_table_blocks_without_any_connection(url, reason):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", url, policy=OutboundPolicy(), resolver=no_dns, timeout=2)
    assert caught.value.code == "ssrf_blocked"
    assert caught.value.details["reason"] == reason


DNS_TABLE = {
    "rebind.test": ["127.0.0.1"],
    "internal.test": ["10.1.2.3"],
    "metadata.test": ["169.254.169.254"],
    "v6.test": ["::1"],
    "mixed.test": ["8.8.8.8", "192.168.0.10"],  # one bad answer is enough to refuse
    "mapped.test": ["::ffff:10.0.0.7"],
}


@pytest.mark.parametrize("host", sorted(DNS_TABLE))
def test_names_resolving_to_blocked_addresses_are_refused(host):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", f"http://{host}/", policy=OutboundPolicy(), resolver=static_resolver(DNS_TABLE))
    assert caught.value.code == "ssrf_blocked"


@pytest.mark.parametrize(
    "address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e", "::ffff:8.8.8.8"]
)
def test_public_addresses_are_allowed_by_the_check(address):
    ip = ipaddress.ip_address(address)
    assert address_block_reason(ip) is None
    OutboundPolicy().check(parse_url(f"https://{'[' + address + ']' if ':' in address else address}/"), [ip])


def test_public_embeddings_are_judged_by_their_ipv4():
    assert address_block_reason("64:ff9b::808:808") is None  # NAT64 of 8.8.8.8
    assert address_block_reason("2002:808:808::1") is None  # 6to4 of 8.8.8.8
    assert address_block_reason("64:ff9b:1::1") == "private"  # local-use NAT64


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_FLUSHALL",
        "javascript:alert(1)",
        "http://",
        "http://exa mple.com/",
        "http://example.com\r\nX: y/",
        "http://1.2.3.4.5/",
        "http://256.1.1.1/",
        "http://0x7g.1/",
        "http://[::1/",
        "http://example.com:0/",
        "http://example.com:70000/",
    ],
)
def test_invalid_urls_are_refused(url):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", url, resolver=no_dns)
    assert caught.value.code == "invalid_url"


# --- the allowlist ------------------------------------------------------------------------------------


def test_allowlist_syntax_is_validated():
    assert (
        validate_allowlist(["api.example.com", "*.corp.example", "10.0.0.5", "10.0.0.0/8", "[fd00::1]"]) == []
    )
    errors = validate_allowlist(["", "http://x.com", "*", "0177.0.0.1", "a..b", "ex ample.com"])
    assert len(errors) == 6
    with pytest.raises(ValueError):
        OutboundPolicy(allowlist=["not a host"])


def test_wildcards_match_subdomains_only():
    policy = OutboundPolicy(allowlist=["*.corp.example", "exact.example"])
    assert policy.host_allowed("a.corp.example")
    assert policy.host_allowed("a.b.corp.example")
    assert not policy.host_allowed("corp.example")
    assert not policy.host_allowed("evilcorp.example")
    assert policy.host_allowed("exact.example")
    assert not policy.host_allowed("sub.exact.example")


def test_allowlisted_hostname_may_reach_private_but_never_metadata():
    policy = OutboundPolicy(allowlist=["*.corp.example"])
    policy.check(parse_url("https://db.corp.example/"), [ipaddress.ip_address("10.0.0.5")])
    with pytest.raises(OutboundError) as caught:
        policy.check(parse_url("https://db.corp.example/"), [ipaddress.ip_address("169.254.169.254")])
    assert caught.value.details["reason"] == "metadata"
    with pytest.raises(OutboundError):
        policy.check(parse_url("https://other.example/"), [ipaddress.ip_address("10.0.0.5")])


def test_cidr_allowlist_and_turning_the_block_off():
    cidr = OutboundPolicy(allowlist=["10.0.0.0/8"])
    cidr.check(parse_url("http://10.9.9.9/"), [ipaddress.ip_address("10.9.9.9")])
    with pytest.raises(OutboundError):
        cidr.check(parse_url("http://192.168.0.1/"), [ipaddress.ip_address("192.168.0.1")])
    open_policy = OutboundPolicy.from_security_policy({"block_private_networks": False, "http_allowlist": []})
    open_policy.check(parse_url("http://192.168.0.1/"), [ipaddress.ip_address("192.168.0.1")])
    for always in ("169.254.169.254", "0.0.0.0", "224.0.0.1"):
        with pytest.raises(OutboundError):
            open_policy.check(parse_url(f"http://{always}/"), [ipaddress.ip_address(always)])
    explicit = OutboundPolicy(allowlist=["169.254.169.254"])
    explicit.check(parse_url("http://169.254.169.254/"), [ipaddress.ip_address("169.254.169.254")])


# --- real requests to local servers -------------------------------------------------------------------


def test_allowlisted_local_server_is_reachable(server):
    response = fetch("GET", server.url("/echo"), policy=LOCAL, params={"q": "1"}, resolver=no_dns)
    assert response.status_code == 200
    assert response.json()["method"] == "GET"
    assert response.headers["content-type"] == "application/json"
    assert response.url == server.url("/echo?q=1")
    assert response.elapsed_ms >= 0


def test_default_policy_refuses_the_same_server(server):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/echo"), policy=OutboundPolicy(), resolver=no_dns)
    assert caught.value.code == "ssrf_blocked"


def test_dns_is_resolved_once_and_the_checked_address_is_used(server):
    calls = []
    # A rebinding resolver: the second answer would be a blocked address.
    answers = iter([["127.0.0.1"], ["10.0.0.1"], ["10.0.0.1"]])

    def rebinding(host, port):
        calls.append(host)
        return next(answers)

    response = fetch("GET", server.url("/echo", host="pinned.test"), policy=LOCAL, resolver=rebinding)
    assert response.status_code == 200
    assert calls == ["pinned.test"]
    assert response.json()["headers"]["host"] == f"pinned.test:{server.port}"


@pytest.mark.parametrize(
    "target",
    ["http://[::1]:{port}/echo", "http://10.0.0.1/", "http://169.254.169.254/", "http://localhost:{port}/"],
)
def test_redirect_to_a_blocked_address_is_refused(server, target):
    location = target.format(port=server.port)
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url(f"/redirect?to={location}"), policy=LOCAL, resolver=no_dns)
    assert caught.value.code == "ssrf_blocked"


def test_redirect_within_the_allowlist_is_followed(server, other_server):
    response = fetch(
        "GET", server.url(f"/redirect?to={other_server.url('/echo')}"), policy=LOCAL, resolver=no_dns
    )
    assert response.status_code == 200
    assert response.url == other_server.url("/echo")
    assert response.redirects == (other_server.url("/echo"),)


def test_credentials_are_stripped_on_cross_origin_redirect(server, other_server):
    secrets = {"Authorization": "Bearer s3cret", "Cookie": "session=abc", "X-Api-Key": "k", "X-Trace": "t1"}
    cross = fetch(
        "GET", server.url(f"/redirect?to={other_server.url('/echo')}"), headers=secrets, policy=LOCAL
    )
    seen = cross.json()["headers"]
    assert "authorization" not in seen
    assert "cookie" not in seen
    assert "x-api-key" not in seen
    assert seen["x-trace"] == "t1"
    same = fetch("GET", server.url("/redirect?to=/echo"), headers=secrets, policy=LOCAL)
    assert same.json()["headers"]["authorization"] == "Bearer s3cret"


def test_303_turns_a_post_into_a_get(server):
    response = fetch("POST", server.url("/redirect?status=303&to=/echo"), json={"a": 1}, policy=LOCAL)
    assert response.json()["method"] == "GET"
    kept = fetch("POST", server.url("/redirect?status=307&to=/echo"), json={"a": 1}, policy=LOCAL)
    assert kept.json()["method"] == "POST"


def test_too_many_redirects(server):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/loop"), policy=LOCAL, max_redirects=3)
    assert caught.value.code == "too_many_redirects"
    response = fetch("GET", server.url("/loop"), policy=LOCAL, follow_redirects=False)
    assert response.status_code == 302


def test_response_size_is_capped(server):
    ok = fetch("GET", server.url("/big?size=1000"), policy=LOCAL, max_response_bytes=1000)
    assert len(ok.content) == 1000
    for length in ("yes", "no"):  # declared Content-Length, and a streamed body without one
        with pytest.raises(OutboundError) as caught:
            fetch(
                "GET",
                server.url(f"/big?size=3000000&length={length}"),
                policy=LOCAL,
                max_response_bytes=100_000,
            )
        assert caught.value.code == "response_too_large"


def test_oversized_response_headers_are_refused(server):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/fat-headers"), policy=LOCAL)
    assert caught.value.code == "response_too_large"


def test_timeout_bounds_a_slow_server(server):
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/slow"), policy=LOCAL, timeout=0.5)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 2


def test_timeout_is_total_not_per_read(server):
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/drip"), policy=LOCAL, timeout=0.8)  # a byte every 0.1 s for 10 s
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 2


def test_timeout_holds_when_a_byte_arrives_just_before_it(server):
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/pause?before=0.6"), policy=LOCAL, timeout=0.8)
    assert caught.value.code == "timeout"
    assert time.monotonic() - started < 1.2  # not 0.6 + a fresh 0.8 s read timeout


@pytest.mark.parametrize("path", ["/slow", "/drip"])  # no header yet; a body trickling in
def test_a_stop_signal_abandons_the_call_in_flight(server, path):
    stop_at = time.monotonic() + 0.3
    started = time.monotonic()
    with pytest.raises(OutboundError) as caught:
        fetch(
            "GET", server.url(path), policy=LOCAL, timeout=20, should_stop=lambda: time.monotonic() > stop_at
        )
    assert caught.value.code == "stopped"
    assert time.monotonic() - started < 1.5  # the guard's tick after the signal, not the server's seconds


def test_a_call_told_to_stop_before_it_connects_is_not_sent(server):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/json"), policy=LOCAL, should_stop=lambda: True)
    assert caught.value.code == "stopped"


def test_connection_refused_and_dns_failure():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(OutboundError) as caught:
        fetch("GET", f"http://127.0.0.1:{port}/services/T0/hook-s3cret?k=s3cret", policy=LOCAL, timeout=2)
    assert caught.value.code == "connection_failed"
    assert "s3cret" not in caught.value.message
    with pytest.raises(OutboundError) as caught:
        fetch("GET", "https://nowhere.test/", resolver=static_resolver({}))
    assert caught.value.code == "dns_failed"


# --- HTTPS: the pinned connection still verifies the certificate against the host name ---------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=good.test",
         "-addext", "subjectAltName=DNS:good.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(cert, key)
    s = Server(tls_context=server_context)
    client_context = ssl.create_default_context(cafile=str(cert))
    yield s, client_context
    s.close()


def test_https_verifies_the_hostname_not_the_pinned_ip(tls_server):
    server, trust = tls_server
    resolver = static_resolver({"good.test": ["127.0.0.1"], "evil.test": ["127.0.0.1"]})
    ok = fetch("GET", server.url("/echo", host="good.test", scheme="https"), policy=LOCAL, verify=trust,
               resolver=resolver)  # fmt: skip
    assert ok.status_code == 200
    assert ok.json()["headers"]["host"] == f"good.test:{server.port}"
    for host in ("evil.test", "127.0.0.1"):  # the certificate names good.test only
        with pytest.raises(OutboundError) as caught:
            fetch("GET", server.url("/echo", host=host, scheme="https"), policy=LOCAL, verify=trust,
                  resolver=resolver)  # fmt: skip
        assert caught.value.code == "tls_error"


def test_header_injection_is_refused(server):
    with pytest.raises(OutboundError) as caught:
        fetch("GET", server.url("/echo"), headers={"X-Evil": "a\r\nInjected: 1"}, policy=LOCAL)
    assert caught.value.code == "invalid_request"


def test_userinfo_becomes_basic_auth_and_nothing_secret_is_logged(server, other_server, caplog):
    caplog.set_level("DEBUG", logger="runs.engine.outbound")
    to = other_server.url("/echo/path-s3cret")
    url = f"http://alice:pw-s3cret@127.0.0.1:{server.port}/redirect?token=tok-s3cret&to={to}"
    response = fetch("GET", url, headers={"Authorization": "Bearer hdr-s3cret"}, policy=LOCAL)
    assert "authorization" not in response.json()["headers"]  # cross-origin hop
    assert "alice" not in response.url
    direct = fetch("GET", f"http://alice:pw@127.0.0.1:{server.port}/echo", policy=LOCAL)
    assert direct.json()["headers"]["authorization"] == "Basic YWxpY2U6cHc="
    assert "outbound" in caplog.text
    assert "s3cret" not in caplog.text


def test_name_resolution_still_works_in_a_forked_worker(server):
    # django-q2 forks its workers; a DNS thread pool inherited from the parent would have no threads.
    resolver = static_resolver({"forked.test": ["127.0.0.1"]})
    assert (
        fetch("GET", server.url("/echo", host="forked.test"), policy=LOCAL, resolver=resolver).status_code
        == 200
    )
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report and leave without running pytest's teardown
        try:
            status = fetch(
                "GET", server.url("/echo", host="forked.test"), policy=LOCAL, resolver=resolver, timeout=3
            )
            os.write(write_end, str(status.status_code).encode())
        except BaseException as exc:
            os.write(write_end, repr(exc).encode()[:200])
        finally:
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as reader:
        assert reader.read() == b"200"
