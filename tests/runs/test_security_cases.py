"""Security cases, table-driven, end to end: SSRF through real `http_request` steps of real runs, and escapes
from the script sandbox with and without bubblewrap (docs/reliability.md "Security cases").

SSRF: the victim is a real HTTP server on 127.0.0.2 (not allowlisted); the deployment allowlist admits only
127.0.0.1, where a second server answers with redirects. Names are resolved by a real DNS server on 127.0.0.1
(dnslib) through the system resolver's boundary: `socket.getaddrinfo` sends `.test` names to it (a real UDP
query); nothing of Baton's is patched. Every case must leave the victim without a single request.
"""

import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from dnslib import AAAA, QTYPE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSServer

from runs.engine import sandbox

pytestmark = pytest.mark.timeout(120)

PUBLIC = "100.0.0.1"  # a global address nothing here answers on: the rebinding's harmless first answer


class Recorder(ThreadingHTTPServer):
    """A server that counts requests and answers `/redirect?to=<url>` with a 302."""

    daemon_threads = True

    def __init__(self, host: str):
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.server.hits.append(self.path)
                if self.path.startswith("/redirect?to="):
                    self.send_response(302)
                    self.send_header("Location", self.path.split("=", 1)[1])
                else:
                    self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__((host, 0), Handler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()


class Rebinder(BaseResolver):
    """Answers each name from a list of answers, one per query (the last one repeats), and counts queries."""

    def __init__(self, table: dict[str, list[list[str]]]):
        self.table, self.queries = table, Counter()

    def resolve(self, request, handler):
        reply = request.reply()
        name = str(request.q.qname).rstrip(".")
        qtype = QTYPE[request.q.qtype]
        self.queries[(name, qtype)] += 1
        answers = self.table.get(name, [[]])
        for address in answers[min(self.queries[(name, qtype)], len(answers)) - 1]:
            if ":" in address and qtype == "AAAA":
                reply.add_answer(RR(name, QTYPE.AAAA, rdata=AAAA(address), ttl=0))
            elif ":" not in address and qtype == "A":
                reply.add_answer(RR(name, QTYPE.A, rdata=A(address), ttl=0))
        return reply


@pytest.fixture
def servers(settings):
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1"]
    victim, redirector = Recorder("127.0.0.2"), Recorder("127.0.0.1")
    yield victim, redirector
    for server in (victim, redirector):
        server.shutdown()
        server.server_close()


@pytest.fixture
def dns(monkeypatch):
    """A real DNS server on 127.0.0.1 and the system resolver asking it for `.test` names."""
    resolver = Rebinder({
        "victim.test": [["127.0.0.2"]],
        "rebind.test": [[PUBLIC], ["127.0.0.2"]],  # public when checked, the victim afterwards
        "mixed.test": [[PUBLIC, "127.0.0.2"]],  # one public and one private answer at once
        "mapped.test": [["::ffff:7f00:2"]],  # an AAAA record holding the victim's IPv4-mapped form
    })  # fmt: skip
    server = DNSServer(resolver, address="127.0.0.1", port=0)
    server.start_thread()
    port = server.server.server_address[1]
    real = socket.getaddrinfo

    def getaddrinfo(host, port_, family=0, type=0, proto=0, flags=0):
        if not (isinstance(host, str) and host.endswith(".test")):
            return real(host, port_, family, type, proto, flags)
        infos = []
        for qtype, fam in (("A", socket.AF_INET), ("AAAA", socket.AF_INET6)):
            answer = DNSRecord.parse(DNSRecord.question(host, qtype).send("127.0.0.1", port, timeout=2))
            for record in answer.rr:
                address = (
                    (str(record.rdata), port_) if fam == socket.AF_INET else (str(record.rdata), port_, 0, 0)
                )
                infos.append((fam, socket.SOCK_STREAM, 6, "", address))
        if not infos:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return infos

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield resolver
    server.stop()


# Each URL reaches the victim on 127.0.0.2 if it is followed; `{p}` is the victim's port.
SSRF_CASES = [
    ("dotted", "http://127.0.0.2:{p}/", "ssrf_blocked"),
    ("decimal", "http://2130706434:{p}/", "ssrf_blocked"),
    ("octal", "http://0177.0.0.2:{p}/", "ssrf_blocked"),
    ("octal-padded", "http://00000177.0.0.02:{p}/", "ssrf_blocked"),
    ("hex", "http://0x7f000002:{p}/", "ssrf_blocked"),
    ("hex-dotted", "http://0x7f.0x0.0x0.0x2:{p}/", "ssrf_blocked"),
    ("short-form", "http://127.2:{p}/", "ssrf_blocked"),
    ("trailing-dot", "http://127.0.0.2.:{p}/", "ssrf_blocked"),
    ("percent-encoded", "http://%31%32%37.0.0.2:{p}/", "ssrf_blocked"),
    ("ipv4-mapped-ipv6", "http://[::ffff:127.0.0.2]:{p}/", "ssrf_blocked"),
    ("ipv4-mapped-ipv6-hex", "http://[::ffff:7f00:2]:{p}/", "ssrf_blocked"),
    ("ipv4-mapped-ipv6-long", "http://[0:0:0:0:0:ffff:127.0.0.2]:{p}/", "ssrf_blocked"),
    ("ipv4-compatible-ipv6", "http://[::127.0.0.2]:{p}/", "ssrf_blocked"),
    ("nat64", "http://[64:ff9b::7f00:2]:{p}/", "ssrf_blocked"),
    ("6to4", "http://[2002:7f00:2::]:{p}/", "ssrf_blocked"),
    ("dns-private", "http://victim.test:{p}/", "ssrf_blocked"),
    ("dns-aaaa-mapped", "http://mapped.test:{p}/", "ssrf_blocked"),
    ("dns-public-and-private", "http://mixed.test:{p}/", "ssrf_blocked"),
    # Checked public, then the victim: the connection goes to the checked (public) address, never the victim.
    ("dns-rebinding", "http://rebind.test:{p}/", "pinned"),
]


def _http_run(engine, url: str):
    run = engine.start(
        [{"id": "fetch", "type": "http_request", "config": {"url": url, "timeout_seconds": 2}}]
    )
    return run, engine.steps(run)["fetch"]


@pytest.mark.parametrize(("case", "url", "expected"), SSRF_CASES, ids=[case for case, _, _ in SSRF_CASES])
@pytest.mark.parametrize("via", ["direct", "redirect"])
def test_ssrf_never_reaches_the_private_server(engine, servers, dns, case, url, expected, via):
    victim, redirector = servers
    target = url.format(p=victim.port)
    if via == "redirect":  # the allowlisted server sends the step on to the victim
        target = f"http://127.0.0.1:{redirector.port}/redirect?to={target}"
    run, step = _http_run(engine, target)
    assert victim.hits == [], f"{case} reached the victim"
    assert run.status == "failed" and step.status == "failed"
    if via == "redirect":
        assert redirector.hits, "the first hop should have been allowed"
    if expected == "ssrf_blocked":
        assert step.error["code"] == "policy_violation", step.error
        assert step.error["details"]["outbound_code"] == "ssrf_blocked"
    else:  # pinned: one lookup for the hop, and the second (private) answer was never asked for nor used
        assert step.error["code"] in ("timeout", "connection_failed"), step.error
        assert dns.queries[("rebind.test", "A")] == 1


def test_the_victim_is_reachable_when_allowlisted(engine, servers, dns, settings):
    """The control: the same victim URL succeeds once 127.0.0.2 is allowlisted (the server works)."""
    victim, _ = servers
    settings.BATON_HTTP_ALLOWLIST = ["127.0.0.1", "127.0.0.2"]
    run, _ = _http_run(engine, f"http://victim.test:{victim.port}/")
    assert run.status == "completed" and victim.hits == ["/"]


# --- the script sandbox -----------------------------------------------------------------------------------

MODES = [pytest.param(False, id="rlimits"), pytest.param(True, id="bwrap")]


@pytest.fixture(params=MODES)
def use_bwrap(request):
    if request.param and not sandbox.bwrap_available():
        pytest.skip("bubblewrap (bwrap) is not installed or cannot create namespaces here (make system-deps)")
    return request.param


@contextmanager
def bystander(env: dict | None = None):
    """A process of the worker's user that a script must not see, read or signal."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env,
                               start_new_session=True)  # fmt: skip
    try:
        yield process
    finally:
        with suppress(ProcessLookupError):
            process.kill()
        process.wait()


def script(code: str, use_bwrap: bool, **limits) -> sandbox.ScriptResult:
    return sandbox.run_script("python", code, use_bwrap=use_bwrap, timeout_seconds=limits.pop("timeout", 10),
                              **limits)  # fmt: skip


# What a script tries, and how the attempt is reported on stdout: "refused …" when contained. A root worker
# runs scripts as BATON_SANDBOX_USER in a network namespace of their own, bubblewrap adds its namespaces; a
# worker that is not root and has no bubblewrap has neither, and its scripts reach what its user reaches (the
# documented caveat, docs/security.md "Caveats"). Never `kill -1` or a process group here: if containment
# failed, as root, it would kill every process of the machine.
ESCAPES = {
    "read-a-key-file": (
        "import pathlib\ntry:\n    print(pathlib.Path({secret!r}).read_text())\n"
        "except OSError as e:\n    print('refused', e.errno)"
    ),
    "read-the-data-directory": (
        "import os\ntry:\n    print(os.listdir({data_dir!r}))\n"
        "    print(open({data_dir!r} + '/secret_key').read())\n"
        "except OSError as e:\n    print('refused', e.errno)"
    ),
    "read-another-process-environment": (
        "try:\n    print(open('/proc/{pid}/environ', 'rb').read())\n"
        "except OSError as e:\n    print('refused', e.errno)"
    ),
    "reach-the-network": (
        "import socket\ntry:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2)\n"
        "    print('got through')\n"
        "except OSError as e:\n    print('refused', type(e).__name__)"
    ),
    "signal-another-process": (
        "import os, signal\ntry:\n    os.kill({pid}, signal.SIGKILL)\n    print('got through')\n"
        "except OSError as e:\n    print('refused', e.errno)"
    ),
}


def contained_here(use_bwrap: bool) -> bool:
    return use_bwrap or os.geteuid() == 0


@pytest.fixture
def key_file():
    """A 0600 key file of the worker's user in a directory anyone may enter: only its mode protects it."""
    directory = tempfile.mkdtemp(prefix="baton-keys-")
    os.chmod(directory, 0o755)
    secret = os.path.join(directory, "secret_key")
    with open(secret, "w") as file:
        file.write("s3cr3t-key-material")
    os.chmod(secret, 0o600)
    yield secret
    shutil.rmtree(directory)


@pytest.mark.parametrize("case", list(ESCAPES))
def test_sandbox_escapes(use_bwrap, case, key_file):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    with listener, bystander({**os.environ, "PLANTED_SECRET": "planted-value-123"}) as other:
        code = ESCAPES[case].format(secret=key_file, data_dir=str(settings.DATA_DIR), pid=other.pid,
                                    port=listener.getsockname()[1])  # fmt: skip
        result = script(code, use_bwrap)
        time.sleep(0.2)
        bystander_alive = other.poll() is None
    contained = result.stdout.startswith("refused")
    leaked = (
        "s3cr3t" in result.stdout or "planted-value-123" in result.stdout or "secret_key" in result.stdout
        or not bystander_alive
    )  # fmt: skip
    if contained_here(use_bwrap):
        assert contained and not leaked, result
    else:  # documented: a worker that is not root, without bubblewrap, lends its scripts its own reach
        assert not contained, f"{case} is contained without bubblewrap: update docs/security.md: {result}"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker switches its scripts to another user")
def test_root_worker_runs_scripts_as_the_sandbox_user(use_bwrap):
    user = sandbox.sandbox_user()
    code = "import os, json\nprint(json.dumps([os.getuid(), os.getgid(), os.getgroups(), os.getcwd()]))"
    result = script(code, use_bwrap)
    uid, gid, groups, cwd = json.loads(result.stdout)
    assert (uid, gid, groups) == (user.uid, user.gid, []), result
    assert cwd.startswith(tempfile.gettempdir()) and os.path.basename(cwd) == "work", cwd


def test_the_data_directory_is_the_servers_alone():
    assert stat.S_IMODE(os.stat(settings.DATA_DIR).st_mode) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker switches its scripts to another user")
@pytest.mark.parametrize("spec", ["root", "0", "65534:0", "no-such-user-here"])
def test_the_sandbox_user_is_never_root(settings, spec):
    settings.BATON_SANDBOX_USER = spec
    with pytest.raises(sandbox.SandboxError) as refused:
        sandbox.run_script("python", "print(1)", use_bwrap=False)
    assert refused.value.code == "sandbox_unavailable"


@pytest.mark.skipif(os.geteuid() != 0, reason="only a root worker switches its scripts to another user")
def test_a_numeric_sandbox_user_is_ascii_digits(settings):
    settings.BATON_SANDBOX_USER = "٦٥٥٣٤"  # 65534 in Arabic-Indic digits: int() reads it
    with pytest.raises(sandbox.SandboxError) as refused:
        sandbox.sandbox_user()
    assert refused.value.code == "sandbox_unavailable"


def test_sandbox_contains_a_fork_bomb(use_bwrap):
    if not sandbox.process_cap_enforced(use_bwrap):
        pytest.skip(
            "no process cap here (root without a writable pids cgroup): a fork bomb could not be bounded"
        )
    bomb = "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n"
    started = time.monotonic()
    result = script(bomb, use_bwrap, timeout=3, max_processes=32)
    assert result.killed and result.timed_out, result
    assert time.monotonic() - started < 15


def test_sandbox_contains_a_memory_bomb(use_bwrap):
    code = "blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 1024 * 1024))\n"
    result = script(code, use_bwrap, memory_mb=128)
    assert result.exit_code != 0 and "MemoryError" in result.stderr, result


def test_sandbox_leaves_no_process_behind(use_bwrap):
    marker = f"{time.time_ns() % 10**9}.5"  # a sleep nobody else on the machine runs
    code = (f"import subprocess\nsubprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
            "print('escaped')")  # fmt: skip
    result = script(code, use_bwrap)
    assert result.stdout.strip() == "escaped"
    time.sleep(0.3)
    found = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True).stdout
    assert found.strip() == "", f"a process the script started outlived it: {found}"
