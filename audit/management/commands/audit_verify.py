"""Verify an exported audit chain (JSON Lines from GET /api/v1/audit/export) without the database."""

import json
import sys
from pathlib import Path

import orjson
from django.core.management.base import BaseCommand, CommandError

from audit.chain import verify_chain


class Command(BaseCommand):
    help = "Verify an exported audit chain file (JSON Lines). Exits 0 when intact, 1 otherwise."
    requires_system_checks = []
    requires_migrations_checks = False

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="The .jsonl file written by GET /api/v1/audit/export ('-' for stdin)."
        )
        parser.add_argument("--head-seq", type=int, help="Also require the chain to end at this seq.")
        parser.add_argument("--head-hash", help="Also require the last event to have this hash.")
        parser.add_argument("--json", dest="as_json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args, file, head_seq, head_hash, as_json: bool, **options):
        expected = None
        if head_seq is not None or head_hash is not None:
            if head_seq is None:
                raise CommandError("--head-hash needs --head-seq.")
            expected = {"seq": head_seq, "hash": head_hash}
        if file == "-":
            result = verify_chain(_events(sys.stdin.buffer), expected_head=expected)
        else:
            try:
                with Path(file).open("rb") as handle:
                    result = verify_chain(_events(handle), expected_head=expected)
            except OSError as exc:
                raise CommandError(f"Cannot read {file}: {exc.strerror}.", returncode=1) from None
        if as_json:
            self.stdout.write(orjson.dumps(result.as_dict()).decode())
        if not result.valid:
            bad = result.first_invalid
            raise CommandError(
                f"INVALID: {result.checked} events verified before the first bad one: "
                f"seq {bad['seq']} (id {bad['id']}): {bad['reason']}.",
                returncode=1,
            )
        if not as_json:
            head = result.head
            self.stdout.write(
                f"OK: checked {result.checked} events; head seq {head['seq']} hash {head['hash']}"
            )


def _events(handle):
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            try:
                event = json.loads(line)
            except ValueError:
                raise CommandError(f"INVALID: line {number} is not JSON.", returncode=1) from None
        if not isinstance(event, dict):
            raise CommandError(f"INVALID: line {number} is not an event object.", returncode=1)
        yield event
