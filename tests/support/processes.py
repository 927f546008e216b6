"""Child processes of a test: a free port for a server, the test database's URL for a child on PostgreSQL,
and the process tree read from /proc."""

import os
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import quote

from django.conf import settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_database_url(**query) -> str:
    """DATABASE_URL of the PostgreSQL test database this process uses (its xdist worker's own)."""
    from django.db import connection

    db = connection.settings_dict
    auth = quote(db["USER"]) + (":" + quote(db["PASSWORD"]) if db["PASSWORD"] else "")
    host = f"{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}"
    url = f"postgres://{auth}@{host}/{db['NAME']}"
    return url + ("?" + "&".join(f"{key}={value}" for key, value in query.items()) if query else "")


def _state_and_parent(pid: int) -> tuple[str, int] | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return fields[0], int(fields[1])


def descendants(pid: int, *, live: bool = False) -> set[int]:
    """The process ids below `pid` in the tree; with `live`, zombies (exited, not yet reaped) left out."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (found := _state_and_parent(int(entry.name))):
            state, parent = found
            if not (live and state == "Z"):
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    """Running (a zombie is not)."""
    found = _state_and_parent(pid)
    return found is not None and found[0] != "Z"


def sqlite_child_env(tmp_path) -> dict:
    """The environment of child processes sharing one SQLite file in `tmp_path` (the embedded setup: no
    PostgreSQL, no Redis, whatever this test run uses)."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "BATON_TEST_DB_NAME")
    }
    env.update(BATON_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    env["PYTHONPATH"] = str(settings.BASE_DIR)
    return env


def django_code(code: str, *args) -> list[str]:
    """The command that runs `code` in a Python with Django set up, `args` in sys.argv[1:]."""
    return [sys.executable, "-c", "import django; django.setup()\n" + code, *map(str, args)]


def run_django_code(env, code: str, *args) -> str:
    """Run `code` (see django_code) to its end; returns the last line it printed."""
    done = subprocess.run(
        django_code(code, *args), cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]
