"""`make bench`: Baton's benchmarks, printed as one markdown table with the machine they ran on.

    python bench/run.py                  # every benchmark
    python bench/run.py audit --events 20000
    python bench/run.py checks           # the speed and query-plan checks (no cluster: seconds)
    DATABASE_URL=postgres://… python bench/run.py scale --scale-runs 1000000   # list/detail/prune at scale

Each benchmark is a module with `run(options) -> list[Row]`, listed in BENCHMARKS. The harness sets up
its own database before Django starts: a fresh SQLite file in a temporary directory by default, or,
when DATABASE_URL is set, a fresh `<name>_bench` database on that PostgreSQL server (dropped after).
"""

import argparse
import importlib
import os
import platform
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.common import Row  # noqa: E402

# name → module; a module exposes run(options) -> list[Row] and optionally add_arguments(parser).
BENCHMARKS = {
    "audit": "bench.audit_bench",
    "audit_checkpoints": "bench.audit_checkpoint_bench",
    "engine": "bench.engine_bench",
    "throughput": "bench.throughput_bench",
    "api": "bench.api_bench",
    "idle": "bench.idle_bench",
    "schedules": "bench.schedules_bench",
    "checks": "bench.checks_bench",
    "io": "bench.io_bench",
    "dashboard": "bench.dashboard_bench",
    "scale": "bench.scale_bench",  # PostgreSQL: 1M runs / 5M steps (docs/reliability.md)
}


def _prepare_environment() -> str | None:
    """Point settings at a scratch data dir (and SQLite file); returns the directory to remove."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    os.environ.setdefault("BATON_DEMO_ORG", "false")
    # The qcluster and uvicorn children use a django-q2 queue of this run's own (on a shared Redis).
    os.environ.setdefault("BATON_BENCH_QUEUE", f"baton-bench-{os.getpid()}")
    scratch = tempfile.mkdtemp(prefix="baton-bench-")
    os.environ["BATON_DATA_DIR"] = scratch
    if not os.environ.get("DATABASE_URL"):
        os.environ["BATON_SQLITE_PATH"] = str(Path(scratch) / "bench.sqlite3")
    return scratch


def _setup_database():
    """Migrate the scratch database; returns a cleanup callable."""
    from django.core.management import call_command
    from django.db import connection

    if connection.vendor == "postgresql":
        name = connection.settings_dict["NAME"]
        connection.settings_dict.setdefault("TEST", {})["NAME"] = f"{name}_bench"
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True, serialize=False)
        return lambda: connection.creation.destroy_test_db(old_name, verbosity=0)
    call_command("migrate", verbosity=0)
    return lambda: None


def machine() -> dict:
    from django.db import connection

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if connection.vendor == "sqlite":
        import sqlite3

        database = f"SQLite {sqlite3.sqlite_version} (file, WAL, synchronous=NORMAL)"
    else:
        with connection.cursor() as cursor:
            cursor.execute("SHOW server_version")
            database = f"PostgreSQL {cursor.fetchone()[0]}"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "database": database,
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "platform": platform.platform(),
        "load": " ".join(f"{value:.1f}" for value in os.getloadavg()),
    }


def render(rows: list[Row], info: dict) -> str:
    lines = [
        f"Machine: {info['cpu']}, {info['cores']} cores; Python {info['python']}; {info['database']}; "
        f"{info['platform']}; {info['date']}; load average at start {info['load']} "
        "(other processes share these cores: compare the ratios, which they distort least)",
        "",
        "| benchmark | metric | value | target | ratio / notes |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        mark = "" if row.met is None else (" ✅" if row.met else " ❌")
        lines.append(
            f"| {row.benchmark} | {row.metric} | {row.value} | {row.target or ''}{mark} | {row.notes} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help=f"benchmarks to run: {', '.join(BENCHMARKS)} (default: all)")
    modules = {name: importlib.import_module(path) for name, path in BENCHMARKS.items()}
    for module in modules.values():
        if hasattr(module, "add_arguments"):
            module.add_arguments(parser)
    options = parser.parse_args(argv)
    selected = options.names or list(BENCHMARKS)
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")

    scratch = _prepare_environment()
    import django

    django.setup()
    cleanup = _setup_database()
    rows: list[Row] = []
    try:
        info = machine()
        for name in selected:
            print(f"running {name} …", file=sys.stderr, flush=True)
            try:
                rows.extend(modules[name].run(options))
            except Exception as exc:  # keep the other benchmarks' results
                import traceback

                traceback.print_exc()
                rows.append(Row(name, "failed", type(exc).__name__, "", str(exc)[:300], met=False))
    finally:
        cleanup()
        if scratch:
            import shutil

            shutil.rmtree(scratch, ignore_errors=True)
    print(render(rows, info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
