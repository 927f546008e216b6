"""`manage.py serve` as a newcomer runs it (`make run`): a fresh data dir, the demo credentials it
prints, a real browser signing in, then a clean stop on SIGTERM or Ctrl-C with no process left over."""

import os
import queue
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

import pytest

from tests.dashboard.support.browser import launch_chromium
from tests.support.processes import alive, descendants, free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


class Served:
    """A `serve` child process whose output is collected line by line."""

    def __init__(self, data_dir: Path, port: int, **env_overrides):
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("BATON_") and k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
        }
        env.update({"BATON_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **env_overrides})
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--port", str(port), "--workers", "1"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            process_group=0,  # like a shell job: Ctrl-C reaches this group, not pytest
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_healthy(self, timeout=90.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"serve exited early:\n{self.output}"
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        pytest.fail(f"serve did not become healthy:\n{self.output}")

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def stop(self, how):
        how(self.proc.pid)
        try:
            return self.proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            pytest.fail(f"serve did not stop:\n{self.output}")

    def kill_everything(self, pids):
        for pid in {self.proc.pid, *pids}:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def wait_for_children(served: Served, minimum: int, timeout=30.0) -> set[int]:
    # uvicorn plus the cluster's sentinel, pool worker, monitor and pusher processes.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pids = descendants(served.proc.pid)
        if len(pids) >= minimum and "running." in served.output:
            return pids
        time.sleep(0.2)
    pytest.fail(f"serve did not start its children:\n{served.output}")


def sign_in_in_browser(served: Served, email: str, password: str) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            page = browser.new_page()
            page.goto(f"{served.url}/login/")
            page.get_by_label("Email").fill(email)
            page.get_by_label("Password").fill(password)
            page.get_by_role("button", name="Sign in").click()
            expect(page.get_by_test_id("org-name")).to_have_text("Demo organisation")
            expect(page.get_by_test_id("org-role")).to_have_text("Owner")
            css = page.request.get(f"{served.url}/static/baton/baton.css")  # collected, served by WhiteNoise
            assert css.status == 200
        finally:
            browser.close()


def printed_credentials(served: Served) -> tuple[str, str]:
    match = re.search(r"email:\s+(\S+)\n\s+password:\s+(\S+)", served.output)
    assert match, served.output
    assert f"Sign in at {served.url}/login/" in served.output
    return match.group(1), match.group(2)


def test_make_run_path_sign_in_with_printed_credentials_then_sigterm(tmp_path):
    served = Served(tmp_path, free_port())
    pids: set[int] = set()
    try:
        served.wait_healthy()
        email, password = printed_credentials(served)
        status, body = served.get("/readyz")
        assert status == 200 and '"broker": "ok"' in body, body
        pids = wait_for_children(served, minimum=3)
        sign_in_in_browser(served, email, password)

        code = served.stop(lambda pid: os.kill(pid, signal.SIGTERM))
        assert code == 0, served.output
        assert "Baton stopped." in served.output
        time.sleep(0.5)
        assert [pid for pid in pids if alive(pid)] == [], served.output
    finally:
        served.kill_everything(pids)


def test_ctrl_c_stops_web_and_workers_and_demo_org_can_be_disabled(tmp_path):
    served = Served(tmp_path, free_port(), BATON_DEMO_ORG="false")
    pids: set[int] = set()
    try:
        served.wait_healthy()
        pids = wait_for_children(served, minimum=3)
        assert "password:" not in served.output
        code = served.stop(lambda pid: os.killpg(pid, signal.SIGINT))  # what the terminal does on Ctrl-C
        assert code == 0, served.output
        assert "Received SIGINT" in served.output
        time.sleep(0.5)
        assert [pid for pid in pids if alive(pid)] == [], served.output
    finally:
        served.kill_everything(pids)


@pytest.fixture
def scratch_postgres_and_redis():
    """A new, empty PostgreSQL database on the test server, and Redis database 13 (not the suite's 15,
    so this cluster cannot take tasks queued by other test runs)."""
    import psycopg

    base = urlparse(os.environ["DATABASE_URL"])
    name = f"baton_serve_{secrets.token_hex(4)}"
    with psycopg.connect(
        os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1), autocommit=True
    ) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    redis_url = urlparse(os.environ["REDIS_URL"])._replace(path="/13").geturl()
    yield base._replace(path=f"/{name}").geturl(), redis_url
    with psycopg.connect(
        os.environ["DATABASE_URL"].replace("postgres://", "postgresql://", 1), autocommit=True
    ) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL")),
    reason="the scaled setup is exercised in make test's PostgreSQL + Redis pass",
)
def test_serve_on_postgres_and_redis(tmp_path, scratch_postgres_and_redis):
    database_url, redis_url = scratch_postgres_and_redis
    served = Served(tmp_path, free_port(), DATABASE_URL=database_url, REDIS_URL=redis_url)
    pids: set[int] = set()
    try:
        served.wait_healthy()
        email, password = printed_credentials(served)
        status, body = served.get("/readyz")
        assert status == 200 and '"broker": "ok"' in body, body
        pids = wait_for_children(served, minimum=3)
        sign_in_in_browser(served, email, password)
        assert served.stop(lambda pid: os.kill(pid, signal.SIGTERM)) == 0, served.output
        time.sleep(0.5)
        assert [pid for pid in pids if alive(pid)] == [], served.output
    finally:
        served.kill_everything(pids)


def test_serve_refuses_a_port_in_use_before_touching_the_database(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
        done = subprocess.run(
            [sys.executable, "manage.py", "serve", "--port", str(port)],
            cwd=ROOT,
            env={**env, "BATON_DATA_DIR": str(tmp_path)},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 1
    assert f"Cannot listen on 127.0.0.1:{port}" in done.stderr
    assert not (tmp_path / "baton.sqlite3").exists()
