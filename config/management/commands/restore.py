"""`manage.py restore FILE`: a backup archive into this Baton's (fresh) data directory."""

from pathlib import Path

from config.backup import ArchiveCommand, restore


class Command(ArchiveCommand):
    help = (
        "Restore a `manage.py backup` archive into a fresh BATON_DATA_DIR, and with PostgreSQL into the "
        "empty database of DATABASE_URL (pg_restore). Stop Baton first."
    )
    file_help = "The archive written by `manage.py backup`."
    force_help = "Replace a database, checkpoint files or uploads already there."

    def run(self, file: Path, force: bool, **options) -> None:
        manifest, notes = restore(file, force=force)
        self.stdout.write(
            f"Restored the backup of {manifest['created_at']} ({len(manifest['members'])} members). "
            "Run `manage.py migrate` if this Baton is newer than the backup's, then start it."
        )
        for note in notes:
            self.stdout.write(note)
