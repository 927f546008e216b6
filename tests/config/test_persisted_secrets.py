"""Secrets generated into the data dir on first use (config/settings.py, outside production): processes
that start together must agree on them, or an API key made by one is refused by another."""

import os
import subprocess
import sys

from django.conf import settings

PRINT_SECRETS = (
    "from django.conf import settings as s; "
    "print(s.SECRET_KEY, s.API_KEY_PEPPERS['p1'], s.BATON_AUDIT_SIGNING_KEYS[0].hex())"
)


def test_processes_starting_together_on_an_empty_data_dir_agree_on_its_secrets(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in {"BATON_SECRET_KEY", "BATON_API_KEY_PEPPERS",
                          "BATON_AUDIT_SIGNING_KEY"}}  # fmt: skip
    env.update(DJANGO_SETTINGS_MODULE="config.settings", BATON_DATA_DIR=str(tmp_path), BATON_ENV="test")
    command = [sys.executable, "-c", PRINT_SECRETS]
    processes = [
        subprocess.Popen(command, env=env, cwd=settings.BASE_DIR, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    printed = {process.communicate(timeout=60)[0].strip() for process in processes}
    assert all(process.returncode == 0 for process in processes)
    assert len(printed) == 1
    secret_key, pepper, audit_key = printed.pop().split()
    assert len(secret_key) >= 50 and len(pepper) == 64 and len(audit_key) == 64
    assert (tmp_path / "secret_key").read_text().strip() == secret_key
    names = {"secret_key", "api_key_pepper", "audit_signing_key"}
    assert {path.name for path in tmp_path.iterdir() if path.is_file()} == names
    for name in names:
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
