"""`manage.py backup` and `manage.py restore`, end to end on SQLite, each command in its own process on its
own data directory: what a restored Baton must still do (API keys authenticate, secrets decrypt, files
download, the audit chain and its signed checkpoints verify), and what restore must refuse."""

import io
import os
import subprocess
import sys
import tarfile
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest

ROOT = Path(__file__).resolve().parents[2]
# The archive is SQLite's: the commands run on SQLite in both passes, so the PostgreSQL pass leaves it out.
pytestmark = pytest.mark.slow
SQLITE_PASS = pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="runs in the SQLite pass")


def run(data_dir: Path, *args, check=True, **env_overrides) -> subprocess.CompletedProcess:
    kept = {"DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE"}
    env = {
        key: value for key, value in os.environ.items() if not key.startswith("BATON_") and key not in kept
    }
    env.update({"BATON_DATA_DIR": str(data_dir), "BATON_ENGINE_DISPATCH": "manual", **env_overrides})
    done = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240
    )
    if check:
        assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """A data directory with an organisation's key, secret, uploaded file and signed checkpoints, and its
    backup."""
    base = tmp_path_factory.mktemp("backup")
    data_dir = base / "source"
    run(data_dir, "manage.py", "migrate", "-v0")
    made = orjson.loads(run(data_dir, "-m", "tests.ops.backup_scenario", "seed").stdout.splitlines()[-1])
    archive = base / "baton.tar.gz"
    done = run(data_dir, "manage.py", "backup", str(archive))
    assert "Backup written" in done.stdout
    return data_dir, made, archive


@SQLITE_PASS
def test_a_restored_baton_still_works(source, tmp_path):
    data_dir, made, archive = source
    assert archive.stat().st_mode & 0o777 == 0o600  # it holds the keys
    assert not list(archive.parent.glob(".baton.tar.gz.*"))  # written atomically: no draft left
    with tarfile.open(archive) as tar:
        names = tar.getnames()
        manifest = orjson.loads(tar.extractfile("manifest.json").read())
    assert {"database/baton.sqlite3", "keys/secret_key", "keys/api_key_pepper", "keys/audit_signing_key",
            f"audit-checkpoints/{made['org_id']}.jsonl",
            f"files/{made['org_id']}/{made['file_id']}", "manifest.json"} == set(names)  # fmt: skip
    assert {m["name"] for m in manifest["members"]} == set(names) - {"manifest.json"}
    assert all(len(m["sha256"]) == 64 for m in manifest["members"])

    fresh = tmp_path / "restored"
    done = run(fresh, "manage.py", "restore", str(archive))
    assert "Restored the backup" in done.stdout
    for name in ("secret_key", "api_key_pepper", "audit_signing_key"):
        assert (fresh / name).read_bytes() == (data_dir / name).read_bytes()
        assert (fresh / name).stat().st_mode & 0o777 == 0o600
    found = orjson.loads(
        run(
            fresh, "-m", "tests.ops.backup_scenario", "check", orjson.dumps(made).decode()
        ).stdout.splitlines()[-1]
    )
    assert found["authenticated"] == 200
    assert found["secret"] is True
    assert found["download"] == [200, True]
    assert found["verify"] == [True, True, made["checkpoint_seq"]]  # full and default, the last checkpoint
    assert found["offline"].startswith("OK:") and "signatures verified" in found["offline"]

    # Now in use: a second restore is refused unless forced.
    again = run(fresh, "manage.py", "restore", str(archive), check=False)
    assert again.returncode == 1 and "not empty" in again.stderr
    assert "Restored" in run(fresh, "manage.py", "restore", str(archive), "--force").stdout


def _rewritten(archive: Path, target: Path, change) -> Path:
    """A copy of the archive whose members went through change(info, data) -> [(info, data), …]."""
    with tarfile.open(archive) as source, tarfile.open(target, "w:gz") as out:
        for info in source:
            data = source.extractfile(info).read() if info.isfile() else b""
            for new_info, new_data in change(info, data):
                new_info.size = len(new_data)
                out.addfile(new_info, io.BytesIO(new_data))
    return target


def _edit_database(info, data):
    if info.name == "database/baton.sqlite3":
        data = data[:-1] + bytes([data[-1] ^ 1])
    return [(info, data)]


def _escape(info, data):
    if info.name == "keys/secret_key":
        info.name = "../secret_key"
    return [(info, data)]


def _symlink(info, data):
    if info.name.startswith("files/"):
        link = tarfile.TarInfo(info.name)
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        return [(link, b"")]
    return [(info, data)]


def _no_manifest(info, data):
    return [] if info.name == "manifest.json" else [(info, data)]


@SQLITE_PASS
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_edit_database, "does not match its manifest"),
        (_escape, "Unsafe member name"),
        (_symlink, "Not a regular file"),
        (_no_manifest, "no manifest.json"),
    ],
)
def test_restore_refuses_a_damaged_or_crafted_archive_and_changes_nothing(source, tmp_path, change, message):
    _, _, archive = source
    crafted = _rewritten(archive, tmp_path / "crafted.tar.gz", change)
    fresh = tmp_path / "fresh"
    done = run(fresh, "manage.py", "restore", str(crafted), check=False)
    assert done.returncode == 1 and message in done.stderr, done.stderr
    assert not (fresh / "baton.sqlite3").exists() and not (fresh / "files").exists()
    assert not (tmp_path / "secret_key").exists()
    assert not [path for path in fresh.iterdir() if path.name.startswith(".restore-")]


@SQLITE_PASS
def test_restore_refuses_keys_that_would_not_open_the_backups_data(source, tmp_path):
    _, _, archive = source
    other = "x" * 60
    done = run(tmp_path / "fresh", "manage.py", "restore", str(archive), check=False, BATON_SECRET_KEY=other)
    assert done.returncode == 1 and "BATON_SECRET_KEY differs" in done.stderr
    assert not (tmp_path / "fresh" / "baton.sqlite3").exists()


# --- PostgreSQL: the database travels as pg_dump's custom format ------------------------------------------


def postgres_pass(test):
    """The PostgreSQL pass only (pg_dump / pg_restore need its server); its tests share one worker, so the
    module's seeded source database is built once."""
    test = pytest.mark.xdist_group("pg-backup")(test)
    return pytest.mark.skipif(
        not os.environ.get("DATABASE_URL"), reason="the PostgreSQL pass: pg_dump / pg_restore need its server"
    )(test)


@contextmanager
def scratch_databases(*suffixes: str):
    """Fresh, empty databases `<test database>_restore_<suffix>_<xdist worker>` on the pass's server, dropped
    afterwards; yields their URLs. The worker's name keeps two processes from dropping each other's."""
    import psycopg

    url = urlsplit(os.environ["DATABASE_URL"])
    base = os.environ.get("BATON_TEST_DB_NAME") or f"test_{url.path.lstrip('/')}"
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    names = [f"{base}_restore_{suffix}_{worker}" for suffix in suffixes]
    with psycopg.connect(url._replace(path="/postgres").geturl(), autocommit=True) as admin:
        for name in names:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield [url._replace(path=f"/{name}").geturl() for name in names]
        finally:
            for name in names:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg_tool(*args: str, url: str) -> None:
    done = subprocess.run(args, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, f"{args[0]} on {urlsplit(url).path}: {done.stderr}"


@pytest.fixture(scope="module")
def pg_source(tmp_path_factory):
    """A PostgreSQL Baton seeded like `source`, backed up twice: by `manage.py backup` (pg_dump inside), and
    the documented way by hand (`backup --no-database`, then pg_dump)."""
    base = tmp_path_factory.mktemp("pg-backup")
    data_dir = base / "source"
    with scratch_databases("src") as (url,):
        run(data_dir, "manage.py", "migrate", "-v0", DATABASE_URL=url)
        seeded = run(data_dir, "-m", "tests.ops.backup_scenario", "seed", DATABASE_URL=url)
        made = orjson.loads(seeded.stdout.splitlines()[-1])
        archive = base / "baton.tar.gz"
        assert "Backup written" in run(data_dir, "manage.py", "backup", str(archive), DATABASE_URL=url).stdout
        files = base / "baton-files.tar.gz"
        done = run(data_dir, "manage.py", "backup", str(files), "--no-database", DATABASE_URL=url)
        assert "pg_dump" in done.stderr
        dump = base / "baton.dump"
        _pg_tool("pg_dump", "--format=custom", f"--file={dump}", url, url=url)
        yield data_dir, made, archive, files, dump


def _check_restored(fresh: Path, made: dict, url: str) -> None:
    assert run(fresh, "manage.py", "migrate", "-v0", DATABASE_URL=url).returncode == 0
    made_json = orjson.dumps(made).decode()
    checked = run(fresh, "-m", "tests.ops.backup_scenario", "check", made_json, DATABASE_URL=url)
    found = orjson.loads(checked.stdout.splitlines()[-1])
    assert found["authenticated"] == 200
    assert found["secret"] is True
    assert found["download"] == [200, True]
    assert found["verify"] == [True, True, made["checkpoint_seq"]]
    assert found["offline"].startswith("OK:") and "signatures verified" in found["offline"]


@postgres_pass
def test_postgresql_backup_restores_into_a_fresh_database(pg_source, tmp_path):
    data_dir, made, archive, _, _ = pg_source
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        manifest = orjson.loads(tar.extractfile("manifest.json").read())
    assert {"database/baton.pgdump", "keys/secret_key", "keys/api_key_pepper", "keys/audit_signing_key",
            f"files/{made['org_id']}/{made['file_id']}"} <= names  # fmt: skip
    assert manifest["database"] == "postgresql (pg_dump, custom format)"

    fresh = tmp_path / "restored"
    with scratch_databases("dst") as (url,):
        done = run(fresh, "manage.py", "restore", str(archive), DATABASE_URL=url)
        assert "Restored the backup" in done.stdout
        for name in ("secret_key", "api_key_pepper", "audit_signing_key"):
            assert (fresh / name).read_bytes() == (data_dir / name).read_bytes()
        _check_restored(fresh, made, url)
        # Now in use: the database has tables, a second restore is refused unless forced.
        again = run(fresh, "manage.py", "restore", str(archive), check=False, DATABASE_URL=url)
        assert again.returncode == 1 and "tables in the database" in again.stderr, again.stderr
        forced = run(fresh, "manage.py", "restore", str(archive), "--force", DATABASE_URL=url)
        assert "Restored" in forced.stdout
        _check_restored(fresh, made, url)


@postgres_pass
def test_postgresql_restore_by_the_documented_commands(pg_source, tmp_path):
    """docs/operations.md "Backups": pg_restore the dump into an empty database, then `restore` the rest."""
    _, made, _, files, dump = pg_source
    with tarfile.open(files) as tar:
        assert not [name for name in tar.getnames() if name.startswith("database/")]
    fresh = tmp_path / "restored"
    with scratch_databases("manual") as (url,):
        _pg_tool("pg_restore", "--no-owner", f"--dbname={url}", str(dump), url=url)
        done = run(fresh, "manage.py", "restore", str(files), DATABASE_URL=url)
        assert "Now restore the database" in done.stdout
        _check_restored(fresh, made, url)
