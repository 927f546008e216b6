"""`make fuzz`: contract fuzzing of a served Baton with schemathesis (docs/reliability.md).

    python bench/fuzz.py                         # the long run: every phase, 100 examples per operation
    python bench/fuzz.py --max-examples 5 --seed 1 --derandomize   # the bounded run of `make test`
    python bench/fuzz.py --keep-report var/fuzz  # keep schemathesis' JUnit/ndjson reports there

It serves Baton (`manage.py serve --no-worker`, uvicorn) on a fresh SQLite data directory, seeds an
Enterprise organisation (no rate limit) with an API key holding every scope, then runs
`schemathesis run` against `/api/v1/schema` with every check and every phase (examples, coverage,
fuzzing, stateful: the create → read → change → delete chains follow the links schemathesis infers
from the schema). Exit code: 0 when schemathesis found no failure. bench/fuzz_hooks.py and
bench/schemathesis.toml say what the fuzzer is told about the API beyond its schema.
"""

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = """
import json
from accounts.choices import ALL_SCOPES, Role
from accounts.models import User
from accounts.principal import Principal
from accounts.services import api_key_create, organization_create

owner = User.objects.create_user(email="fuzz@baton.test", password="fuzz-fuzz-fuzz-1", name="Fuzz")
org = organization_create(name="Fuzz", owner=owner, plan="enterprise")
actor = Principal(organization=org, user=owner, role=Role.OWNER)
created = api_key_create(organization=org, actor=actor, name="fuzz", scopes=list(ALL_SCOPES))
print(json.dumps({"key": created.key, "key_id": created.api_key.pk, "owner_id": owner.pk}))
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _environment(data_dir: Path) -> dict:
    dropped = {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_") and k not in dropped}
    env.update(
        BATON_DATA_DIR=str(data_dir),
        BATON_DEMO_ORG="false",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
        SCHEMATHESIS_HOOKS="bench.fuzz_hooks",
        PYTHONPATH=str(ROOT),
        # Every operation is tried with bodies up to the limit: the fuzzer is not the rate limiter's test.
        BATON_LOGIN_LIMIT_PER_IP="100000",
        BATON_LOGIN_LIMIT_PER_ACCOUNT="100000",
    )
    return env


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"serve exited early:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"serve did not become healthy:\n{log.read_text()}")


def schemathesis_command(url: str, key: str, options, report_dir: Path) -> list[str]:
    command = [
        str(Path(sys.executable).parent / "schemathesis"),
        "--config-file",
        str(ROOT / "bench" / "schemathesis.toml"),
        "run",
        f"{url}/api/v1/schema",
        "--header",
        f"Authorization: Bearer {key}",
        "--checks",
        "all",
        "--phases",
        options.phases,
        "--max-examples",
        str(options.max_examples),
        "--workers",
        str(options.workers),
        "--report",
        "junit,ndjson",
        "--report-dir",
        str(report_dir),
        "--no-color",
        "--suppress-health-check",
        "all",
        "--request-timeout",
        "30",
        # The API key is sent with every request (-H): generated credentials would only test the 401.
        "--generation-with-security-parameters",
        "false",
    ]
    if options.seed is not None:
        command += ["--seed", str(options.seed)]
    if options.derandomize:
        command.append("--generation-deterministic")  # implies no example database
    else:
        command += ["--generation-database", "none"]  # no state carried from one run to the next
    if options.max_time:
        command += ["--max-time", str(options.max_time)]
    if options.baseline:
        command += ["--baseline", str(Path(options.baseline).resolve())]
        if options.baseline_update:
            command.append("--baseline-update")
    for pattern in options.exclude_path_regex or []:
        command += ["--exclude-path-regex", pattern]
    for pattern in options.include_path_regex or []:
        command += ["--include-path-regex", pattern]
    return command


def fuzz(options) -> int:
    scratch = Path(tempfile.mkdtemp(prefix="baton-fuzz-"))
    env = _environment(scratch)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = scratch / "serve.log"
    try:
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True
        )
        seeded = subprocess.run(
            [sys.executable, "manage.py", "shell", "-c", SEED],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        seed = json.loads(seeded.stdout.strip().splitlines()[-1])
        key = seed["key"]
        # The hooks keep the fuzzer from revoking its own key or demoting its organisation's owner.
        env.update(FUZZ_KEY_ID=str(seed["key_id"]), FUZZ_OWNER_ID=str(seed["owner_id"]))
        with log.open("w") as out:
            server = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--no-worker", "--port", str(port)],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                process_group=0,
            )
        try:
            _wait_healthy(url, server, log)
            report_dir = Path(options.keep_report).resolve() if options.keep_report else scratch / "report"
            command = schemathesis_command(url, key, options, report_dir)
            started = time.monotonic()
            done = subprocess.run(command, cwd=scratch, env=env)
            print(f"schemathesis finished in {time.monotonic() - started:.0f} s (exit {done.returncode})")
            return done.returncode
        finally:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
            if options.server_log:
                shutil.copy(log, options.server_log)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-examples", type=int, default=100, help="test cases per operation and phase")
    parser.add_argument("--phases", default="examples,coverage,fuzzing,stateful")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--derandomize", action="store_true", help="schemathesis' deterministic generation")
    parser.add_argument("--max-time", type=int, default=0, help="time budget in seconds (0: none)")
    parser.add_argument("--workers", default="1")
    parser.add_argument("--keep-report", default="", help="directory for schemathesis' JUnit/ndjson reports")
    parser.add_argument("--server-log", default="", help="copy the server's output to this file")
    parser.add_argument("--exclude-path-regex", action="append")
    parser.add_argument("--include-path-regex", action="append")
    parser.add_argument(
        "--baseline", default="", help="schemathesis baseline: failures accepted (known, open)"
    )
    parser.add_argument("--baseline-update", action="store_true", help="record this run's failures in it")
    return parser


if __name__ == "__main__":
    sys.exit(fuzz(parser().parse_args()))
