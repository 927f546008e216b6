"""Backup and restore of a Baton: one .tar.gz with the database (SQLite's online backup API, or PostgreSQL's
pg_dump), the keys kept in the data directory, the audit checkpoint files and the uploaded files, and a
manifest naming each member with its SHA-256.

Archive layout: database/baton.sqlite3 or database/baton.pgdump (pg_dump's custom format), keys/<file in the
data dir>, audit-checkpoints/<org>.jsonl, files/<org>/<file id>, manifest.json (last). docs/operations.md,
"Backups", is the operator's side.
"""

import base64
import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import orjson
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

FORMAT, VERSION = "baton-backup", 1
DATABASE_MEMBER = "database/baton.sqlite3"
PG_DUMP_MEMBER = "database/baton.pgdump"
# The data dir's key files, and the variable that replaces each (development generates the files; production
# sets the variables). Encryption keys are only ever a variable (or derived from the secret key).
KEY_FILES = {
    "secret_key": "BATON_SECRET_KEY",
    "api_key_pepper": "BATON_API_KEY_PEPPERS",
    "audit_signing_key": "BATON_AUDIT_SIGNING_KEY",
}
_CHUNK = 1 << 20


class BackupError(Exception):
    pass


class ArchiveCommand(BaseCommand):
    """`backup` and `restore`: FILE and --force; their errors (a damaged archive's too) as one line."""

    file_help = force_help = ""

    def add_arguments(self, parser):
        parser.add_argument("file", help=self.file_help)
        parser.add_argument("--force", action="store_true", help=self.force_help)

    def handle(self, *args, file: str, force: bool, **options):
        try:
            self.run(Path(file), force, **options)
        except (BackupError, OSError, tarfile.TarError, EOFError) as exc:
            raise CommandError(str(exc) or type(exc).__name__) from None

    def run(self, file: Path, force: bool, **options) -> None:
        raise NotImplementedError


def is_sqlite() -> bool:
    return "sqlite" in settings.DATABASES["default"]["ENGINE"]


def _pg_environment() -> dict[str, str]:
    """The environment pg_dump / pg_restore reach this Baton's database with (libpq's PG* variables)."""
    database = settings.DATABASES["default"]
    env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
    for variable, key in (("PGHOST", "HOST"), ("PGPORT", "PORT"), ("PGUSER", "USER"),
                          ("PGPASSWORD", "PASSWORD"), ("PGDATABASE", "NAME")):  # fmt: skip
        if database.get(key):
            env[variable] = str(database[key])
    if sslmode := database.get("OPTIONS", {}).get("sslmode"):
        env["PGSSLMODE"] = sslmode
    return env


def _pg_run(tool: str, *args: str) -> None:
    """Run pg_dump / pg_restore (postgresql-client) on this Baton's database; BackupError if it fails."""
    path = shutil.which(tool)
    if path is None:
        raise BackupError(
            f"{tool} is not installed (Debian: apt-get install postgresql-client); or pass --no-database "
            "and take the database yourself (docs/operations.md, 'Backups')."
        )
    done = subprocess.run([path, *args], env=_pg_environment(), capture_output=True, text=True)
    if done.returncode != 0:
        raise BackupError(f"{tool} failed (exit {done.returncode}): {done.stderr.strip()[-2000:]}")


def _fingerprint(value: str) -> str:
    """A key's fingerprint: enough to tell two keys apart, nothing about the key (SHA-256 of a random key)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def key_fingerprints() -> dict[str, str]:
    """The fingerprints of the keys this process runs with."""
    return {
        "secret_key": _fingerprint(settings.SECRET_KEY),
        "api_key_pepper": _fingerprint(",".join(f"{i}:{p}" for i, p in settings.API_KEY_PEPPERS.items())),
        "audit_signing_key": _fingerprint(
            ",".join(base64.b64encode(seed).decode() for seed in settings.BATON_AUDIT_SIGNING_KEYS)
        ),
        "encryption_keys": _fingerprint(",".join(settings.BATON_ENCRYPTION_KEYS) or "secret_key"),
    }


def _key_sources() -> dict[str, str]:
    """Where each key comes from: "environment" or "data_dir"."""
    sources = {name: "environment" if os.environ.get(var) else "data_dir" for name, var in KEY_FILES.items()}
    sources["encryption_keys"] = "environment" if os.environ.get("BATON_ENCRYPTION_KEYS") else "secret_key"
    return sources


def _files_under(root: Path) -> list[Path]:
    """Regular files under `root` (symlinks and the like left out), sorted."""
    if not root.is_dir():
        return []
    return sorted(path for path in root.rglob("*") if path.is_file() and not path.is_symlink())


class _Hashing(io.RawIOBase):
    """A file read through: its SHA-256 and size, computed as tarfile reads it."""

    def __init__(self, file):
        self.file, self.sha256, self.size = file, hashlib.sha256(), 0

    def readable(self) -> bool:
        return True

    def read(self, size=-1) -> bytes:
        data = self.file.read(size)
        self.sha256.update(data)
        self.size += len(data)
        return data


@dataclass
class BackupSummary:
    path: Path
    manifest: dict
    warnings: list[str] = field(default_factory=list)


def _snapshot_sqlite(database: Path, target: Path, checkpoint_dir: Path) -> dict[str, bytes]:
    """Copy the database into `target` with SQLite's online backup API, and read the checkpoint files at the
    same instant: under the write lock (no append or checkpoint in flight; readers go on), a read transaction
    is opened, then the lock is released and the copy is taken from that transaction's snapshot. So every
    checkpoint line in the files is in the copy (a checkpoint's line is written inside its transaction)."""
    if not database.is_file():
        raise BackupError(f"No SQLite database at {database}.")
    writer = sqlite3.connect(database, timeout=60, isolation_level=None)
    reader = sqlite3.connect(database, timeout=60, isolation_level=None)
    copy = sqlite3.connect(target, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        try:
            checkpoints = {path: path.read_bytes() for path in _files_under(checkpoint_dir)}
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sqlite_master").fetchall()
        finally:
            writer.execute("ROLLBACK")
        reader.backup(copy)
        reader.execute("ROLLBACK")
        copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
        if copy.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise BackupError("The copy of the database failed SQLite's quick_check.")
    finally:
        for connection in (copy, reader, writer):
            connection.close()
    return checkpoints


def backup(destination: Path, *, force: bool = False, database: bool = True) -> BackupSummary:
    """Write the archive to `destination`, atomically (a temporary file in its directory, renamed).
    `database=False` (PostgreSQL only) leaves the database out: the operator takes it with pg_dump."""
    destination = destination.resolve()
    if destination.exists() and not force:
        raise BackupError(f"{destination} exists (use --force to replace it).")
    data_dir = Path(settings.DATA_DIR)
    checkpoint_dir = Path(settings.BATON_AUDIT_CHECKPOINT_DIR)
    media_root = Path(settings.MEDIA_ROOT)
    sources = _key_sources()
    members: list[dict] = []
    warnings: list[str] = []
    fd, draft = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.")  # mode 0600
    os.close(fd)
    database_copy = Path(draft + ".db")
    postgresql = not is_sqlite()
    try:
        with tarfile.open(draft, "w:gz", compresslevel=6) as archive:

            def add(name: str, path: Path | None = None, data: bytes | None = None) -> None:
                info = tarfile.TarInfo(name)
                info.mode, info.mtime = 0o600, int(datetime.now(UTC).timestamp())
                if data is not None:
                    info.size = len(data)
                    archive.addfile(info, io.BytesIO(data))
                    members.append(
                        {"name": name, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
                    )
                    return
                with path.open("rb") as file:
                    info.size = os.fstat(file.fileno()).st_size
                    reader = _Hashing(file)
                    archive.addfile(info, reader)
                members.append({"name": name, "bytes": reader.size, "sha256": reader.sha256.hexdigest()})

            if not postgresql:
                sqlite_path = Path(settings.DATABASES["default"]["NAME"])
                checkpoints = _snapshot_sqlite(sqlite_path, database_copy, checkpoint_dir)
                add(DATABASE_MEMBER, database_copy)
            else:
                # The checkpoint files before the dump: a checkpoint is in the database before its line can
                # be in a file, so every line read now has its row in the later dump.
                checkpoints = {path: path.read_bytes() for path in _files_under(checkpoint_dir)}
                if database:
                    _pg_run("pg_dump", "--format=custom", "--no-owner", f"--file={database_copy}")
                    add(PG_DUMP_MEMBER, database_copy)
                else:
                    warnings.append(
                        "The database is PostgreSQL and --no-database was given: it is not in the archive. "
                        "Take it now with pg_dump (docs/operations.md, 'Backups') and keep the dump with it."
                    )
            for name in KEY_FILES:
                if sources[name] == "data_dir" and (data_dir / name).is_file():
                    add(f"keys/{name}", data_dir / name)
                else:
                    warnings.append(
                        f"{KEY_FILES[name]} comes from the environment: it is not in the archive; "
                        "keep it with the backup."
                    )
            if sources["encryption_keys"] == "environment":
                warnings.append(
                    "BATON_ENCRYPTION_KEYS comes from the environment: it is not in the archive; "
                    "keep it with the backup."
                )
            for path, content in checkpoints.items():
                add(f"audit-checkpoints/{path.relative_to(checkpoint_dir).as_posix()}", data=content)
            for path in _files_under(media_root):  # after the database: a file without its row is harmless
                add(f"files/{path.relative_to(media_root).as_posix()}", path)
            manifest = {
                "format": FORMAT,
                "version": VERSION,
                "created_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                "database": "sqlite"
                if not postgresql
                else "postgresql (pg_dump, custom format)"
                if database
                else "postgresql (not included: pg_dump)",
                "keys": {
                    name: {"source": source, "fingerprint": key_fingerprints()[name]}
                    for name, source in sources.items()
                },
                "members": members,
            }
            add("manifest.json", data=orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
        with open(draft, "rb+") as file:
            os.fsync(file.fileno())
        os.replace(draft, destination)
        _fsync_dir(destination.parent)
    finally:
        for leftover in (Path(draft), database_copy):
            leftover.unlink(missing_ok=True)
    return BackupSummary(destination, manifest, warnings)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _member_target(name: str) -> tuple[str, PurePosixPath]:
    """(kind, path within its kind) of an archive member; BackupError for anything unexpected, so a crafted
    archive cannot write outside the places restore fills."""
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or name != path.as_posix():
        raise BackupError(f"Unsafe member name in the archive: {name!r}.")
    if name in ("manifest.json", DATABASE_MEMBER, PG_DUMP_MEMBER):
        return name, path
    kind, rest = path.parts[0], PurePosixPath(*path.parts[1:]) if len(path.parts) > 1 else None
    if kind == "keys" and rest is not None and str(rest) in KEY_FILES:
        return kind, rest
    if kind in ("audit-checkpoints", "files") and rest is not None:
        return kind, rest
    raise BackupError(f"Unexpected member in the archive: {name!r}.")


def _in_use(checkpoint_dir: Path, media_root: Path, *, pg_database: bool) -> list[str]:
    """What makes the target a live installation that a restore would overwrite (`pg_database`: the archive
    holds a PostgreSQL dump, so the database must be empty too)."""
    found = []
    if is_sqlite():
        database = Path(settings.DATABASES["default"]["NAME"])
        if database.is_file() and database.stat().st_size > 0:
            found.append(f"the database {database}")
    elif pg_database and connection.introspection.table_names():
        found.append(f"tables in the database {settings.DATABASES['default']['NAME']}")
    if _files_under(checkpoint_dir):
        found.append(f"audit checkpoint files in {checkpoint_dir}")
    if _files_under(media_root):
        found.append(f"uploaded files in {media_root}")
    return found


def restore(source: Path, *, force: bool = False) -> tuple[dict, list[str]]:
    """Restore the archive into this process's data directory (BATON_DATA_DIR). Everything is extracted and
    checked against the manifest in a staging directory first; nothing in place changes until then."""
    data_dir = Path(settings.DATA_DIR)
    checkpoint_dir = Path(settings.BATON_AUDIT_CHECKPOINT_DIR)
    media_root = Path(settings.MEDIA_ROOT)
    staging = Path(tempfile.mkdtemp(dir=data_dir, prefix=".restore-"))
    try:
        found: dict[str, tuple[int, str]] = {}
        with tarfile.open(source, "r:gz") as archive:
            for info in archive:
                if info.isdir():
                    continue
                _member_target(info.name)
                if not info.isfile():
                    raise BackupError(f"Not a regular file in the archive: {info.name!r}.")
                target = staging / info.name
                target.parent.mkdir(parents=True, exist_ok=True)
                digest, size = hashlib.sha256(), 0
                with archive.extractfile(info) as file, target.open("wb") as out:
                    while chunk := file.read(_CHUNK):
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                found[info.name] = (size, digest.hexdigest())
        manifest = _checked_manifest(staging, found)
        notes = _check_keys(manifest)
        has_database = DATABASE_MEMBER in found
        has_dump = PG_DUMP_MEMBER in found
        if has_database and not is_sqlite():
            raise BackupError(
                "The archive holds a SQLite database but this Baton is configured for PostgreSQL "
                "(DATABASE_URL): restore into an embedded Baton, or move the data with dumpdata."
            )
        if not has_database and is_sqlite():
            raise BackupError(
                "The archive holds no SQLite database (it was taken from a PostgreSQL Baton): set "
                "DATABASE_URL to an empty PostgreSQL database and restore again."
            )
        in_use = _in_use(checkpoint_dir, media_root, pg_database=has_dump)
        if in_use and not force:
            raise BackupError(
                f"The data directory is not empty ({'; '.join(in_use)}): restore into a fresh "
                "one, or pass --force to replace what is there."
            )
        if has_dump:
            # One transaction: a dump that fails half-way leaves the database as it was.
            clean = ["--clean", "--if-exists"] if in_use else []
            name = settings.DATABASES["default"]["NAME"]
            _pg_run("pg_restore", "--no-owner", "--exit-on-error", "--single-transaction", *clean,
                    f"--dbname={name}", str(staging / PG_DUMP_MEMBER))  # fmt: skip
        _put_in_place(staging, manifest, data_dir, checkpoint_dir, media_root)
        if not has_database and not has_dump:
            notes.append(
                "Now restore the database: pg_restore the dump taken with this archive "
                "(docs/operations.md, 'Backups')."
            )
        return manifest, notes
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _checked_manifest(staging: Path, found: dict[str, tuple[int, str]]) -> dict:
    if "manifest.json" not in found:
        raise BackupError("The archive has no manifest.json: not a Baton backup.")
    try:
        manifest = orjson.loads((staging / "manifest.json").read_bytes())
    except orjson.JSONDecodeError:
        raise BackupError("The archive's manifest.json is not JSON.") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise BackupError(f"Not a {FORMAT} version {VERSION} archive.")
    listed = {member["name"]: (member["bytes"], member["sha256"]) for member in manifest.get("members", [])}
    missing = sorted(set(listed) - set(found))
    unlisted = sorted(set(found) - set(listed) - {"manifest.json"})
    damaged = sorted(name for name in listed if name in found and found[name] != listed[name])
    if missing or unlisted or damaged:
        raise BackupError(
            f"The archive does not match its manifest: missing {missing}, unlisted {unlisted}, "
            f"damaged {damaged}."
        )
    return manifest


def _check_keys(manifest: dict) -> list[str]:
    """Keys the backup's data needs that this process would not have after the restore: an error. The
    environment's keys win over the data dir's files, so a key set in both places must be the same."""
    ours, problems, notes = key_fingerprints(), [], []
    recorded = manifest.get("keys", {})
    for name, variable in KEY_FILES.items():
        if name not in recorded:
            continue
        from_environment = bool(os.environ.get(variable))
        if recorded[name]["source"] == "environment" and not from_environment:
            problems.append(f"{variable} was set when the backup was taken: set it to the same value")
        elif from_environment and ours[name] != recorded[name]["fingerprint"]:
            problems.append(f"{variable} differs from the key the backup was taken with")
    if (
        "encryption_keys" in recorded
        and ours["encryption_keys"] != recorded["encryption_keys"]["fingerprint"]
    ):
        problems.append(
            "BATON_ENCRYPTION_KEYS differs from the keys the backup was taken with (unset when "
            "the secrets were encrypted with the key derived from the secret key)"
        )
    if problems:
        raise BackupError("Keys: " + "; ".join(problems) + ". Nothing was restored.")
    return notes


def _put_in_place(
    staging: Path, manifest: dict, data_dir: Path, checkpoint_dir: Path, media_root: Path
) -> None:
    if (staging / DATABASE_MEMBER).is_file():
        database = Path(settings.DATABASES["default"]["NAME"])
        database.parent.mkdir(parents=True, exist_ok=True)
        for suffix in ("-wal", "-shm"):  # another database's log must not be replayed into this one
            Path(f"{database}{suffix}").unlink(missing_ok=True)
        (staging / DATABASE_MEMBER).chmod(0o600)
        os.replace(staging / DATABASE_MEMBER, database)
    for name in KEY_FILES:
        staged = staging / "keys" / name
        if staged.is_file():
            staged.chmod(0o600)
            os.replace(staged, data_dir / name)
    for kind, root in (("audit-checkpoints", checkpoint_dir), ("files", media_root)):
        if root.exists():
            shutil.rmtree(root)
        if (staging / kind).is_dir():
            root.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(staging / kind, root)
    _fsync_dir(data_dir)
