"""Verify an exported audit chain (JSON Lines from GET /api/v1/audit/export) without the database."""

import mmap
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError

from audit.offline import ExportUnreadable, load_public_keys, verify_export


@contextmanager
def _contents(file: str):
    """The file's bytes: mapped, not read, so the processes that verify it page in their own slices."""
    if file == "-":
        yield sys.stdin.buffer.read()
        return
    with Path(file).open("rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            yield b""
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            yield mapped


class Command(BaseCommand):
    help = (
        "Verify an exported audit chain file (JSON Lines) and its signed checkpoints. Exits 0 when intact, "
        "1 otherwise."
    )
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="The .jsonl file written by GET /api/v1/audit/export ('-' for stdin)."
        )
        parser.add_argument(
            "--public-key", action="append", default=[], dest="public_keys", metavar="KEY",
            help="A checkpoint-signing public key (base64, as GET /api/v1/audit/public-keys or "
            "`manage.py audit_public_key` gives it), or a file holding keys or that endpoint's JSON; "
            "repeatable. "
            "Without one the checkpoints' signatures are left unchecked.",
        )  # fmt: skip
        parser.add_argument("--head-seq", type=int, help="Also require the chain to end at this seq.")
        parser.add_argument("--head-hash", help="Also require the last event to have this hash.")
        parser.add_argument(
            "--processes", type=int, help="Worker processes (default: one per CPU for large files)."
        )
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, file, public_keys, head_seq, head_hash, processes, as_json: bool, **options):
        expected = None
        if head_seq is not None or head_hash is not None:
            if head_seq is None:
                raise CommandError("--head-hash needs --head-seq.")
            expected = {"seq": head_seq, "hash": head_hash}
        try:
            keys = load_public_keys(public_keys) if public_keys else None
            with _contents(file) as data:
                report = verify_export(data, keys=keys, expected_head=expected, processes=processes)
        except OSError as exc:
            raise CommandError(f"Cannot read {file}: {exc.strerror}.", returncode=1) from None
        except ExportUnreadable as exc:
            raise CommandError(f"INVALID: {exc}.", returncode=1) from None
        result = report.result
        if as_json:
            self.stdout.write(orjson.dumps({**result.as_dict(), "signatures": report.signatures}).decode())
        if not result.valid:
            bad = result.first_invalid
            line = f" on line {bad['line']}" if bad.get("line") else ""
            raise CommandError(
                f"INVALID: {result.checked} events verified before the first bad one: "
                f"seq {bad['seq']} (id {bad['id']}){line}: {bad['reason']}.",
                returncode=1,
            )
        if not as_json:
            head = result.head
            self.stdout.write(
                f"OK: checked {result.checked} events; head seq {head['seq']} hash {head['hash']}"
            )
            self.stdout.write(self._checkpoints_summary(report))

    @staticmethod
    def _checkpoints_summary(report) -> str:
        count = len(report.checkpoints)
        if not count:
            return "No signed checkpoints in the file."
        latest = report.result.checkpoint
        about = f"latest at seq {latest['seq']} signed at {latest['signed_at']} by key {latest['key_id']}"
        if report.signatures == "verified":
            return f"{count} checkpoints: signatures verified, the chain agrees with each; {about}."
        return (
            f"{count} checkpoints: the chain agrees with each, signatures UNCHECKED (give --public-key); "
            f"{about}."
        )
