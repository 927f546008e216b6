"""Production settings: `check --deploy` is clean with a production-like environment, and Baton refuses
to start without the secrets it needs."""

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def production_env(tmp_path, **overrides) -> dict:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("BATON_") and k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        {
            "BATON_ENV": "production",
            "BATON_DATA_DIR": str(tmp_path),
            "BATON_SECRET_KEY": secrets.token_urlsafe(64),
            "BATON_API_KEY_PEPPERS": "p1:" + secrets.token_hex(32),
            "BATON_AUDIT_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "BATON_ALLOWED_HOSTS": "baton.example.com",
            "BATON_CSRF_TRUSTED_ORIGINS": "https://baton.example.com",
        }
    )
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def manage(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_passes_in_production(tmp_path):
    done = manage(production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "no issues" in done.stdout


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("BATON_SECRET_KEY", None, "BATON_SECRET_KEY is required when BATON_ENV=production."),
        ("BATON_SECRET_KEY", "too-short", "BATON_SECRET_KEY must be at least 50 characters long."),
        ("BATON_API_KEY_PEPPERS", None, "BATON_API_KEY_PEPPERS is required when BATON_ENV=production."),
        ("BATON_AUDIT_SIGNING_KEY", None, "BATON_AUDIT_SIGNING_KEY is required when BATON_ENV=production."),
        ("BATON_ALLOWED_HOSTS", None, "BATON_ALLOWED_HOSTS is required when BATON_ENV=production."),
        ("BATON_DEBUG", "true", "BATON_DEBUG must be off when BATON_ENV=production."),
    ],
)
def test_production_fails_closed(tmp_path, variable, value, message):
    done = manage(production_env(tmp_path, **{variable: value}), "check")
    assert done.returncode != 0
    assert message in done.stderr
    assert not (tmp_path / "secret_key").exists()  # no generated fallback secret in production
