"""An organisation's security policy, named secrets and webhook signing secret (docs/security.md).

Ciphertexts come from accounts.crypto and are listed in its ENCRYPTED_FIELDS, so
`manage.py rotate_encryption` covers them."""

import re

from django.db import models
from django.utils import timezone

from config.ids import id_field

SECRET_NAME_PATTERN = r"^[A-Z][A-Z0-9_]{0,63}$"
SECRET_NAME_RE = re.compile(SECRET_NAME_PATTERN)
SECRET_VALUE_MAX_BYTES = 64 * 1024

MAX_RUN_DURATION_LIMIT = 2_592_000  # 30 days
MAX_STEPS_LIMIT = 1_000_000
MAX_TOKENS_LIMIT = 10**12


def default_approval_envs() -> list[str]:
    return ["production"]


class SecurityPolicy(models.Model):
    """The guardrails of one organisation; created with these defaults the first time it is read."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="security_policy"
    )
    allow_script_steps = models.BooleanField(default=True)
    block_private_networks = models.BooleanField(default=True)
    http_allowlist = models.JSONField(default=list, blank=True)
    max_run_duration_seconds = models.PositiveIntegerField(default=3600)
    max_steps_per_run = models.PositiveIntegerField(default=1000)
    max_tokens_per_run = models.PositiveBigIntegerField(null=True, blank=True)
    require_approval_for_envs = models.JSONField(default=default_approval_envs, blank=True)
    redact_patterns = models.JSONField(default=list, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=40, blank=True, default="")  # actor id (usr_/key_)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(max_run_duration_seconds__gte=1)
                & models.Q(max_run_duration_seconds__lte=MAX_RUN_DURATION_LIMIT),
                name="policy_run_duration_range",
            ),
            models.CheckConstraint(
                condition=models.Q(max_steps_per_run__gte=1)
                & models.Q(max_steps_per_run__lte=MAX_STEPS_LIMIT),
                name="policy_max_steps_range",
            ),
        ]

    def __str__(self):
        return f"Security policy of {self.organization_id}"


class Secret(models.Model):
    """A named value usable in templates as `{{ secrets.NAME }}`; stored only encrypted, never returned."""

    id = id_field("sec")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="secrets"
    )
    name = models.CharField(max_length=64)
    description = models.CharField(max_length=500, blank=True, default="")
    value_encrypted = models.TextField()
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    created_by = models.CharField(max_length=40, blank=True, default="")  # actor id (usr_/key_)
    updated_by = models.CharField(max_length=40, blank=True, default="")

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="secret_name_unique"),
        ]

    def __str__(self):
        return self.name


class SigningSecret(models.Model):
    """The organisation's webhook signing secret. After a rotation the previous one still signs (as a second
    `v1=` entry) until `previous_expires_at`, so receivers can switch without dropping deliveries."""

    organization = models.OneToOneField(
        "accounts.Organization", on_delete=models.CASCADE, primary_key=True, related_name="signing_secret"
    )
    secret_encrypted = models.TextField()
    previous_secret_encrypted = models.TextField(blank=True, default="")
    previous_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    rotated_at = models.DateTimeField(null=True, blank=True)

    def __str__(self):
        return f"Signing secret of {self.organization_id}"
