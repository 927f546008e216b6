"""Sign a checkpoint of every organisation's audit chain whose head moved since its last checkpoint."""

from django.core.management.base import BaseCommand

from audit.checkpoints import audit_checkpoint_create
from audit.models import AuditChainHead, AuditCheckpoint


class Command(BaseCommand):
    help = (
        "Sign a checkpoint of each organisation's audit chain that grew since its last one (for cron or "
        "before a backup: appends sign on their own cadence, but only when there are appends)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--organization", help="Only this organisation (its id).")

    def handle(self, *args, organization=None, **options):
        heads = AuditChainHead.objects.filter(seq__gt=0).order_by("organization_id")
        if organization:
            heads = heads.filter(organization_id=organization)
        before = AuditCheckpoint.objects.count()
        checked = 0
        for org_id in heads.values_list("organization_id", flat=True).iterator():
            audit_checkpoint_create(organization=org_id)
            checked += 1
        signed = AuditCheckpoint.objects.count() - before
        self.stdout.write(f"{signed} new checkpoints signed ({checked} chains looked at).")
