from django.db import models

from audit.chain import GENESIS_HASH
from config.ids import id_field


class AppendOnlyError(RuntimeError):
    pass


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditEvent(models.Model):
    """One link of an organisation's hash chain. Written only by audit.services.audit_record."""

    id = id_field("evt")
    # No index of its own: audit_org_seq_unique begins with it.
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    seq = models.PositiveBigIntegerField()
    event = models.CharField(max_length=64)
    actor = models.CharField(max_length=64)
    actor_type = models.CharField(max_length=10)
    target_type = models.CharField(max_length=32, blank=True)
    target_id = models.CharField(max_length=64, blank=True)
    # null and "" are different values in the hashed body, so these text fields keep null=True.
    run_id = models.CharField(max_length=40, null=True, blank=True)  # noqa: DJ001
    note = models.TextField(null=True, blank=True)  # noqa: DJ001
    data = models.JSONField(default=dict)
    ip = models.CharField(max_length=45, null=True, blank=True)  # noqa: DJ001
    request_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    timestamp = models.DateTimeField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "seq"], name="audit_org_seq_unique"),
        ]
        indexes = [
            models.Index(fields=["organization", "event", "seq"], name="audit_org_event"),
            models.Index(fields=["organization", "actor", "seq"], name="audit_org_actor"),
            models.Index(fields=["organization", "target_id", "seq"], name="audit_org_target"),
            models.Index(fields=["organization", "timestamp"], name="audit_org_time"),
        ]

    def __str__(self):
        return f"#{self.seq} {self.event}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be deleted.")


class AuditCheckpointQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit checkpoints cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit checkpoints cannot be deleted.")


class AuditCheckpoint(models.Model):
    """A signed statement of an organisation's chain head (audit.checkpoints); also kept in a file outside
    the database. `previous` is the digest of the organisation's checkpoint before it (null for the first)."""

    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.PROTECT, related_name="+", db_index=False
    )
    seq = models.PositiveBigIntegerField()
    hash = models.CharField(max_length=64)
    signed_at = models.DateTimeField()
    previous = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001 (null: the first)
    key_id = models.CharField(max_length=16)
    signature = models.CharField(max_length=88)

    objects = AuditCheckpointQuerySet.as_manager()

    class Meta:
        ordering = ["organization", "id"]
        indexes = [models.Index(fields=["organization", "id"], name="audit_checkpoint_org")]

    def __str__(self):
        return f"{self.organization_id} checkpoint @ {self.seq}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit checkpoints cannot be updated.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit checkpoints cannot be deleted.")


class AuditChainHead(models.Model):
    """The last link of an organisation's chain; its row lock serializes appends."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="+"
    )
    seq = models.PositiveBigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)

    def __str__(self):
        return f"{self.organization_id} @ {self.seq}"
