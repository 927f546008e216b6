"""Run one of the reliability programs (bench/soak.py, bench/load.py) the way `make soak` / `make load` do,
on a SQLite database of its own, and return its JSON report."""

import json
import os
import subprocess
import sys

from django.conf import settings


def run_program(script: str, *args: str, timeout: float) -> dict:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("DATABASE_URL", "REDIS_URL", "BATON_TEST_DB_NAME", "DJANGO_SETTINGS_MODULE")
    }
    result = subprocess.run(
        [sys.executable, script, *args, "--json"], cwd=settings.BASE_DIR, env=env, capture_output=True,
        text=True, timeout=timeout,
    )  # fmt: skip
    assert result.stdout.strip(), result.stderr[-3000:]
    report = json.loads(result.stdout)
    report["exit_status"] = result.returncode
    return report
