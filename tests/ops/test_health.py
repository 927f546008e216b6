"""/healthz and /readyz: no authentication, JSON, 503 naming the check that failed."""

import os
import socket
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_healthz_is_always_ok_without_auth(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_checks_database_and_broker(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {"status": "ok", "checks": {"database": "ok", "broker": "ok"}}


def test_readyz_is_503_when_the_redis_broker_is_unreachable(client, db, settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "redis": f"redis://127.0.0.1:{closed_port()}/0"}
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable" and body["failed"] == ["broker"]
    assert body["checks"]["database"] == "ok" and body["checks"]["broker"].startswith("failed:")


def test_readyz_is_503_when_the_database_is_unreachable(tmp_path):
    # A separate process: a real settings module pointed at a PostgreSQL port where nothing listens.
    code = (
        "import django, json; django.setup(); from django.test import Client; "
        "r = Client().get('/readyz'); print(r.status_code, json.dumps(r.json()))"
    )
    env = {
        **{k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "BATON_TEST_DB_NAME"}},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "BATON_ENV": "test",
        "BATON_DATA_DIR": str(tmp_path),
        "DATABASE_URL": f"postgres://postgres@127.0.0.1:{closed_port()}/nothing",
    }
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    status, _, body = done.stdout.strip().splitlines()[-1].partition(" ")
    assert status == "503"
    assert '"failed": ["database"]' in body or '"failed": ["broker", "database"]' in body


def test_readyz_uses_the_configured_broker():
    assert ("redis" in settings.Q_CLUSTER) == bool(settings.REDIS_URL)
