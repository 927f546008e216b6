"""`manage.py prune_runs [--dry-run] [--batch N]`: apply retention now (runs/retention.py)."""

from django.core.management.base import BaseCommand

from runs.retention import count_expired_runs, prune_expired_runs


class Command(BaseCommand):
    help = (
        "Delete finished, unpinned runs older than their retention (the workflow's retention_days, else the "
        "organisation's) with their steps, events and files. The audit log is never pruned."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="only count what would be deleted")
        parser.add_argument("--batch", type=int, default=500, help="runs per transaction (default 500)")

    def handle(self, *args, dry_run=False, batch=500, **options):
        if dry_run:
            counts = count_expired_runs()
            for organization_id, count in sorted(counts.items()):
                self.stdout.write(f"{organization_id}: {count} run(s) would be deleted")
            self.stdout.write(f"{sum(counts.values())} run(s) would be deleted (dry run, nothing changed)")
            return
        if batch < 1:
            batch = 500
        deleted = prune_expired_runs(batch=batch)
        self.stdout.write(f"{deleted} run(s) deleted")
