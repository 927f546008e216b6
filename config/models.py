"""The HTTP plumbing's own tables: rate-limit counters and idempotency records (no domain models)."""

from django.db import models
from django.utils import timezone


class RateLimitCounter(models.Model):
    """Fixed-window request counters when Redis is not configured (shared by all processes)."""

    key = models.CharField(max_length=200)
    window = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)
    expires_at = models.BigIntegerField(db_index=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["key", "window"], name="ratelimit_key_window")]

    def __str__(self):
        return f"{self.key}@{self.window}: {self.count}"


class IdempotencyRecord(models.Model):
    """One Idempotency-Key of an organisation: in flight, or the stored response to replay."""

    # A model reference by name, not an import: config stays below the apps.
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64)
    in_progress = models.BooleanField(default=True)
    response_status = models.PositiveSmallIntegerField(null=True)
    response_body = models.JSONField(null=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["organization", "key"], name="idempotency_org_key"),
        ]

    def __str__(self):
        return self.key
