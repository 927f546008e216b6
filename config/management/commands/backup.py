"""`manage.py backup FILE`: the database (SQLite), keys, audit checkpoint files and uploads in one archive."""

from pathlib import Path

from config.backup import ArchiveCommand, backup


class Command(ArchiveCommand):
    help = (
        "Write a backup archive (.tar.gz): the SQLite database (online, while Baton runs), the keys in the "
        "data directory, the audit checkpoint files and the uploaded files, with a manifest. With PostgreSQL "
        "everything but the database (take it with pg_dump)."
    )
    file_help = "The archive to write (replaced atomically)."
    force_help = "Replace FILE if it exists."

    def run(self, file: Path, force: bool) -> None:
        summary = backup(file, force=force)
        members = summary.manifest["members"]
        size = sum(member["bytes"] for member in members)
        self.stdout.write(
            f"Backup written to {summary.path}: {len(members)} members, {size:,} bytes before "
            "compression. It holds keys: keep it as secret as they are."
        )
        for warning in summary.warnings:
            self.stderr.write(f"Note: {warning}")
