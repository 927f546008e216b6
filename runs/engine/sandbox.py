"""Run a `script` step's code in a child process, contained: see docs/security.md ("Script sandbox").

Every run gets a clean environment, a fresh temporary directory (its HOME and working directory, removed
afterwards), resource limits (memory, CPU, processes, file size, no core dumps), its own session so the
whole process group can be killed, capped output and a wall-clock timeout. A root worker runs the script as
an unprivileged user (BATON_SANDBOX_USER, no supplementary groups) in a network namespace of its own. Where
bubblewrap works it also gets a read-only system and its own PID namespace. `ScriptHandle.kill()` stops a
running script from another thread (run termination).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import functools
import math
import os
import pwd
import re
import resource
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

LANGUAGES = ("python", "shell")
DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_READ_CHUNK = 65536
_EXIT_GRACE_SECONDS = 0.2  # after the script exits, how long leftover children may keep its pipes open


class SandboxError(Exception):
    """The script could not be started (bad language, bad env); the script's own failures are results."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class ScriptResult:
    exit_code: int | None  # negative: killed by that signal (-9 SIGKILL, -24 SIGXCPU)
    stdout: str
    stderr: str
    timed_out: bool  # the wall-clock timeout expired
    killed: bool  # we killed it: timeout, output cap or ScriptHandle.kill()
    truncated: bool  # stdout or stderr hit max_output_bytes
    duration_ms: int
    cancelled: bool = False  # ScriptHandle.kill() was called
    isolation: str = "rlimits"  # "bwrap" when it ran inside bubblewrap
    pid: int | None = None  # the leader's pid (outside any PID namespace), for diagnostics


class ScriptHandle:
    """Pass to run_script; `kill()` (any thread, any time) stops the script and its processes.

    `should_stop`, when given, is polled by the waiting loop (about every 50 ms; it must be cheap, e.g. an
    Event's is_set) and kills the script like `kill()` once it returns True (run termination)."""

    def __init__(self, should_stop: Callable[[], bool] | None = None):
        self._cancel = threading.Event()
        self._should_stop = should_stop
        self.pid: int | None = None

    def kill(self) -> None:
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        if not self._cancel.is_set() and self._should_stop is not None and self._should_stop():
            self._cancel.set()
        return self._cancel.is_set()


# --- containment helpers ----------------------------------------------------------------------------


@functools.cache
def _libc():
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class SandboxUser:
    """Who a root worker's scripts run as: an unprivileged uid and its primary gid, no other group."""

    uid: int
    gid: int


def sandbox_user() -> SandboxUser | None:
    """The user scripts run as when this worker is root (settings.BATON_SANDBOX_USER: a name or
    `uid[:gid]`); None when the worker is not root (it cannot switch users, and needs not)."""
    if os.geteuid() != 0:
        return None
    spec = str(getattr(settings, "BATON_SANDBOX_USER", "") or "nobody").strip()
    try:
        if re.fullmatch(r"[0-9]+(:[0-9]+)?", spec):
            uid_text, _, gid_text = spec.partition(":")
            uid = int(uid_text)
            gid = int(gid_text) if gid_text else _primary_gid(uid)
        else:
            entry = pwd.getpwnam(spec)
            uid, gid = entry.pw_uid, entry.pw_gid
    except (KeyError, ValueError):
        raise SandboxError(
            "sandbox_unavailable", f"BATON_SANDBOX_USER {spec!r} is not a user here."
        ) from None
    if uid == 0 or gid == 0:
        raise SandboxError("sandbox_unavailable", "BATON_SANDBOX_USER must not be root or in root's group.")
    return SandboxUser(uid, gid)


def _primary_gid(uid: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return uid


def _usable_by(path: str, user: SandboxUser, need: int) -> bool:
    """Whether `user` can reach `path` (x on every parent directory) and has `need` (rwx bits) on it."""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    checks = [(os.sep.join(parts[:i]) or os.sep, 0o1) for i in range(1, len(parts))] + [(path, need)]
    for candidate, bits in checks:
        try:
            info = os.stat(candidate)
        except OSError:
            return False
        if info.st_uid == user.uid:
            granted = (info.st_mode >> 6) & 0o7
        elif info.st_gid == user.gid:
            granted = (info.st_mode >> 3) & 0o7
        else:
            granted = info.st_mode & 0o7
        if granted & bits != bits:
            return False
    return True


def _python_for(user: SandboxUser | None) -> str:
    """The interpreter a script runs with: the worker's own, or, when `user` cannot execute that one (a
    Python under /root), the system's python3."""
    own = os.path.realpath(sys.executable)
    if user is None or _usable_by(own, user, 0o5):
        return own
    system = shutil.which("python3", path=DEFAULT_PATH)
    if system and _usable_by(system, user, 0o5):
        return os.path.realpath(system)
    raise SandboxError(
        "sandbox_unavailable", f"No Python interpreter the sandbox user (uid {user.uid}) may execute."
    )


def _unshare_network() -> None:
    if _libc().unshare(_CLONE_NEWNET) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")


@functools.cache
def network_namespace_available() -> bool:
    """True when a child may get a network namespace of its own (root, unless a container forbids it)."""
    if os.geteuid() != 0:
        return False
    try:
        probe = subprocess.run(["/bin/true"], preexec_fn=_unshare_network, capture_output=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


@functools.cache
def bwrap_available() -> bool:
    """True when bubblewrap is installed and can create the namespaces we ask for on this host."""
    return _bwrap_works(None)


@functools.cache
def _bwrap_works(user: SandboxUser | None) -> bool:
    """Whether bubblewrap starts here, run by `user` (None: the worker itself)."""
    path = shutil.which("bwrap")
    if path is None:
        return False
    try:
        probe = subprocess.run(
            [
                path,
                "--ro-bind",
                "/",
                "/",
                "--unshare-net",
                "--unshare-pid",
                "--die-with-parent",
                "--",
                "/bin/true",
            ],
            capture_output=True,
            timeout=10,
            env={"PATH": DEFAULT_PATH},
            preexec_fn=_make_preexec({}, None, drop_caps=True, user=user) if user else None,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _script_user(user: SandboxUser | None, use_bwrap: bool) -> SandboxUser | None:
    """Who a root worker's script runs as: the sandbox user, except under bubblewrap when that user cannot
    start it (no unprivileged user namespaces): bubblewrap then runs as root, every capability dropped."""
    if use_bwrap:
        return user if user is not None and _bwrap_works(user) else None
    return user


def process_caps(use_bwrap: bool | None = None) -> tuple[str, ...]:
    """What holds max_processes for a script run here with `use_bwrap` (None: as run_script decides):
    "RLIMIT_NPROC" (the script does not run as root) and/or "pids cgroup" (a root worker's per-run cgroup)."""
    if os.geteuid() != 0:
        return ("RLIMIT_NPROC",)
    caps = ("pids cgroup",) if _pids_cgroup_root() is not None else ()
    use_bwrap = bwrap_available() if use_bwrap is None else use_bwrap and bwrap_available()
    try:
        user = sandbox_user()
    except SandboxError:
        return caps  # no script runs at all
    # A run's own pids cgroup replaces RLIMIT_NPROC, which the concurrent scripts of one user share.
    return (*caps, "RLIMIT_NPROC") if not caps and _script_user(user, use_bwrap) is not None else caps


def process_cap_enforced(use_bwrap: bool | None = None) -> bool:
    """Whether max_processes really holds for a script run here with `use_bwrap` (see process_caps)."""
    return bool(process_caps(use_bwrap))


def _pids_cgroup_root() -> str | None:
    """A writable cgroup directory with the pids controller (v1 hierarchy or v2), or None."""
    for candidate in ("/sys/fs/cgroup/pids", "/sys/fs/cgroup"):
        if os.path.exists(os.path.join(candidate, "cgroup.procs")) and os.access(candidate, os.W_OK):
            if candidate == "/sys/fs/cgroup":
                try:
                    with open("/sys/fs/cgroup/cgroup.subtree_control") as controllers:
                        if "pids" not in controllers.read().split():
                            continue
                except OSError:
                    continue
            return candidate
    return None


class _PidsCgroup:
    """A per-run pids cgroup: a hard process cap (holds for root, RLIMIT_NPROC does not) and a kill list."""

    def __init__(self, root: str, max_processes: int):
        self.path = os.path.join(root, f"baton-script-{uuid.uuid4().hex[:12]}")
        os.mkdir(self.path)
        with open(os.path.join(self.path, "pids.max"), "w") as limit:
            limit.write(str(max_processes))
        self.procs_path = os.path.join(self.path, "cgroup.procs")

    def pids(self) -> list[int]:
        try:
            with open(self.procs_path) as procs:
                return [int(line) for line in procs if line.strip()]
        except OSError:
            return []

    def kill_all(self) -> None:
        for _ in range(200):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.005)

    def remove(self) -> None:
        self.kill_all()
        for _ in range(100):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.01)


def _processes_of_uid(uid: int) -> int:
    """Processes and threads owned by uid now (RLIMIT_NPROC counts all of them, not just the script's)."""
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(f"/proc/{entry}").st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry}/task"))
    return count


def _python_roots(python: str) -> list[str]:
    # -S means only the base interpreter's standard library is needed, not the project's virtualenv.
    roots = {os.path.dirname(os.path.dirname(python))}
    if python == os.path.realpath(sys.executable):
        roots.add(sys.base_prefix)
    return sorted(r for r in roots if r and os.path.isdir(r))


def _bwrap_argv(argv: list[str], workdir: str, *, network: bool, language: str, as_root: bool) -> list[str]:
    args = ["bwrap", "--die-with-parent", "--new-session", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
    args += ["--unshare-cgroup-try"]
    if not network:
        args.append("--unshare-net")
    for path in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    for path in ("/etc/alternatives", "/etc/ssl", "/etc/ca-certificates", "/etc/passwd", "/etc/group",
                 "/etc/nsswitch.conf", "/etc/hosts", "/etc/localtime", "/etc/ld.so.cache"):  # fmt: skip
        args += ["--ro-bind-try", path, path]
    if network:
        args += ["--ro-bind-try", "/etc/resolv.conf", "/etc/resolv.conf"]
    if language == "python":
        for root in _python_roots(argv[0]):
            args += ["--ro-bind", root, root]
    args += [
        "--proc",
        "/proc",
        "--dev",
        "/dev",
        "--tmpfs",
        "/tmp",  # noqa: S108 - a private, empty tmpfs inside the sandbox
        "--bind",
        workdir,
        workdir,
        "--chdir",
        workdir,
    ]
    if as_root:
        args += ["--cap-drop", "ALL"]
    return [*args, "--", *argv]


def _make_preexec(
    limits: dict[int, tuple[int, int]],
    cgroup_procs: str | None,
    drop_caps: bool,
    user: SandboxUser | None = None,
    new_network: bool = False,
):
    libc = _libc() if drop_caps or user or new_network else None

    def preexec() -> None:
        # Runs in the child between fork and exec: only system calls, no imports, no locks. The order
        # matters: what needs root (the cgroup, the namespace, the bounding set) comes before the uid.
        if cgroup_procs is not None:
            with open(cgroup_procs, "w") as procs:
                procs.write("0")
        for limit, values in limits.items():
            resource.setrlimit(limit, values)
        if new_network and libc.unshare(_CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNET) failed")
        if drop_caps:
            # No capability survives exec: the script cannot raise these limits again.
            for cap in range(64):
                if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
                    break
        if user is not None:
            os.setgroups([])
            os.setresgid(user.gid, user.gid, user.gid)
            os.setresuid(user.uid, user.uid, user.uid)
        if libc is not None:
            libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)

    return preexec


def _clean_env(env: dict[str, str] | None, workdir: str) -> dict[str, str]:
    clean = {"PATH": DEFAULT_PATH, "LANG": "C.UTF-8", "HOME": workdir, "TMPDIR": workdir}
    for name, value in (env or {}).items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise SandboxError("invalid_env", f"Environment variable name {name!r} is not valid.")
        if not isinstance(value, str) or "\x00" in value:
            raise SandboxError("invalid_env", f"Environment variable {name} must be a string without NUL.")
        clean[name] = value
    return clean


def _remove_tree(path: str) -> None:
    # A script may have removed permissions from its own files; give them back so the tree can go.
    for root, dirs, _files in os.walk(path):
        for name in dirs:
            with contextlib.suppress(OSError):
                os.chmod(os.path.join(root, name), 0o700)
    shutil.rmtree(path, ignore_errors=True)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


# --- the runner ---------------------------------------------------------------------------------------


def run_script(
    language: str,
    code: str,
    *,
    stdin: bytes = b"",
    env: dict[str, str] | None = None,
    timeout_seconds: float = 30.0,
    memory_mb: int = 256,
    cpu_seconds: float | None = None,
    max_output_bytes: int = 1_048_576,
    max_processes: int = 64,
    max_file_bytes: int = 64 * 1024 * 1024,
    network: bool = False,
    handle: ScriptHandle | None = None,
    use_bwrap: bool | None = None,
) -> ScriptResult:
    """Run code to completion or until a limit; returns what it printed and how it ended.

    `use_bwrap=None` uses bubblewrap when it works here; True requires it (SandboxError otherwise); False
    never uses it. `network=False` is enforced by bubblewrap or, for a root worker, by a network namespace
    of the script's own; otherwise not (see docs/security.md).
    """
    if language not in LANGUAGES:
        raise SandboxError("invalid_language", f"Unknown script language {language!r}; use python or shell.")
    if not isinstance(code, str):
        raise SandboxError("invalid_code", "Script code must be a string.")
    if isinstance(stdin, str):
        stdin = stdin.encode()
    if not (timeout_seconds > 0 and memory_mb > 0 and max_output_bytes > 0 and max_processes > 0):
        raise SandboxError("invalid_limits", "Timeout, memory, output and process limits must be positive.")
    if use_bwrap is None:
        use_bwrap = bwrap_available()
    elif use_bwrap and not bwrap_available():
        raise SandboxError("sandbox_unavailable", "bubblewrap (bwrap) is not available on this host.")
    handle = handle or ScriptHandle()
    started = time.monotonic()
    deadline = started + timeout_seconds
    user = sandbox_user()
    run_as = _script_user(user, use_bwrap)  # bubblewrap as root: its namespaces are the containment
    new_network = not network and not use_bwrap and user is not None and network_namespace_available()
    python = _python_for(run_as) if language == "python" else None

    base = tempfile.mkdtemp(prefix="baton-script-")
    os.chmod(base, 0o700)
    workdir = os.path.join(base, "work")
    os.mkdir(workdir)
    cgroup: _PidsCgroup | None = None
    try:
        if language == "python":
            script = os.path.join(base, "script.py")
            # -I: ignore PYTHON* variables and the user site; -S: no site-packages (standard library only).
            argv = [python, "-I", "-S", script]
        else:
            script = os.path.join(base, "script.sh")
            shell = shutil.which("bash", path=DEFAULT_PATH)
            argv = [shell, "--noprofile", "--norc", script] if shell else ["/bin/sh", script]
        with open(script, "w", encoding="utf-8") as source:
            source.write(code)
        if run_as is not None:
            for path in (base, workdir, script):
                os.chown(path, run_as.uid, run_as.gid)
        if use_bwrap:
            # The script file lives beside the work directory; make it visible read-only inside.
            argv = _bwrap_argv(
                argv,
                workdir,
                network=network,
                language=language,
                as_root=os.geteuid() == 0 and run_as is None,
            )
            argv[argv.index("--") : argv.index("--")] = ["--ro-bind", script, script]

        cpu = cpu_seconds if cpu_seconds is not None else timeout_seconds + 1
        cpu_limit = max(1, math.ceil(cpu))
        memory = memory_mb * 1024 * 1024
        limits = {
            resource.RLIMIT_AS: (memory, memory),
            resource.RLIMIT_DATA: (memory, memory),
            resource.RLIMIT_CPU: (cpu_limit, cpu_limit + 1),
            resource.RLIMIT_FSIZE: (max_file_bytes, max_file_bytes),
            resource.RLIMIT_CORE: (0, 0),
            resource.RLIMIT_NOFILE: (256, 256),
        }
        root = os.geteuid() == 0
        cgroup_root = _pids_cgroup_root() if root else None
        if cgroup_root is not None:
            with contextlib.suppress(OSError):
                cgroup = _PidsCgroup(cgroup_root, max_processes + (2 if use_bwrap else 0))
        # RLIMIT_NPROC counts every process of the user, so the concurrent scripts of the sandbox user
        # share it (one bomb starves the others): only where the run has no pids cgroup of its own.
        if (not root or run_as is not None) and cgroup is None:
            nproc = _processes_of_uid(run_as.uid if run_as else os.getuid()) + max_processes
            limits[resource.RLIMIT_NPROC] = (nproc, nproc)
        preexec = _make_preexec(
            limits,
            cgroup.procs_path if cgroup else None,
            drop_caps=root and not (use_bwrap and run_as is None),
            user=run_as,
            new_network=new_network,
        )

        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=workdir,
                env=_clean_env(env, workdir),
                start_new_session=True,
                preexec_fn=preexec,
                close_fds=True,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxError("sandbox_failed", f"Could not start the script: {exc}.") from None
        handle.pid = process.pid
        outcome = _communicate(process, stdin, deadline, max_output_bytes, handle)
        # Nothing the script started may outlive it: its group, and with a cgroup even escaped sessions.
        _kill_group(process.pid)
        if cgroup is not None:
            cgroup.kill_all()
        exit_code = process.wait()
        stdout, stderr, timed_out, truncated, killed = outcome
        return ScriptResult(
            exit_code=exit_code,
            stdout=stdout.decode("utf-8", errors="replace"),
            stderr=stderr.decode("utf-8", errors="replace"),
            timed_out=timed_out,
            killed=killed,
            truncated=truncated,
            duration_ms=int((time.monotonic() - started) * 1000),
            cancelled=handle.cancelled,
            isolation="bwrap" if use_bwrap else "rlimits",
            pid=process.pid,
        )
    finally:
        if cgroup is not None:
            cgroup.remove()
        _remove_tree(base)


def _communicate(
    process: subprocess.Popen, stdin: bytes, deadline: float, cap: int, handle: ScriptHandle
) -> tuple[bytes, bytes, bool, bool, bool]:
    """Feed stdin and read both outputs (each capped) until EOF, a limit, or kill(); kills on a limit."""
    buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
    pending = memoryview(stdin or b"")
    timed_out = truncated = killed = False
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            os.set_blocking(stream.fileno(), False)
            selector.register(stream, selectors.EVENT_READ)
        if pending:
            os.set_blocking(process.stdin.fileno(), False)
            selector.register(process.stdin, selectors.EVENT_WRITE)
        else:
            process.stdin.close()
        while selector.get_map():
            now = time.monotonic()
            if handle.cancelled:
                killed = True
                break
            if now >= deadline:
                timed_out = killed = True
                break
            if exited_at is None and process.poll() is not None:
                exited_at = now
                _kill_group(process.pid)  # background children must not hold the pipes open
            if exited_at is not None and now - exited_at > _EXIT_GRACE_SECONDS:
                break
            for key, _events in selector.select(timeout=min(0.05, deadline - now)):
                if key.fileobj is process.stdin:
                    try:
                        written = os.write(key.fd, pending[:_READ_CHUNK])
                        pending = pending[written:]
                    except (BrokenPipeError, OSError):
                        pending = pending[:0]
                    if not pending:
                        selector.unregister(process.stdin)
                        process.stdin.close()
                    continue
                try:
                    data = os.read(key.fd, _READ_CHUNK)
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(key.fileobj)
                    continue
                buffer = buffers[key.fd]
                room = cap - len(buffer)
                buffer += data[:room]
                if len(data) > room:
                    truncated = killed = True
            if truncated:
                break
    if killed:
        _kill_group(process.pid)
    for stream in (process.stdin, process.stdout, process.stderr):
        with contextlib.suppress(OSError):
            stream.close()
    stdout_fd, stderr_fd = list(buffers)
    return bytes(buffers[stdout_fd]), bytes(buffers[stderr_fd]), timed_out, truncated, killed
