"""`manage.py backup FILE`: the database (SQLite or pg_dump), keys, audit checkpoint files and uploads in one
archive."""

from pathlib import Path

from config.backup import ArchiveCommand, backup


class Command(ArchiveCommand):
    help = (
        "Write a backup archive (.tar.gz): the database (SQLite's online backup, or PostgreSQL's pg_dump; "
        "while Baton runs), the keys in the data directory, the audit checkpoint files and the uploaded "
        "files, with a manifest."
    )
    file_help = "The archive to write (replaced atomically)."
    force_help = "Replace FILE if it exists."

    def add_arguments(self, parser):
        super().add_arguments(parser)
        parser.add_argument(
            "--no-database",
            action="store_true",
            help="PostgreSQL: leave the database out (take it with pg_dump yourself, after this archive).",
        )

    def run(self, file: Path, force: bool, no_database: bool = False, **options) -> None:
        summary = backup(file, force=force, database=not no_database)
        members = summary.manifest["members"]
        size = sum(member["bytes"] for member in members)
        self.stdout.write(
            f"Backup written to {summary.path}: {len(members)} members, {size:,} bytes before "
            "compression. It holds keys: keep it as secret as they are."
        )
        for warning in summary.warnings:
            self.stderr.write(f"Note: {warning}")
