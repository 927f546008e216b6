from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.utils import timezone

from accounts.choices import LIMIT_FIELDS, Plan, Role
from config.ids import ID_MAX_LENGTH, id_field


class UserManager(BaseUserManager):
    use_in_migrations = True

    def create_user(self, email, password=None, **extra):
        if not email:
            raise ValueError("Users need an email address.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person. Signs in with an email address; belongs to organisations through memberships."""

    id = id_field("usr")
    email = models.EmailField(unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        ordering = ["email"]

    def __str__(self):
        return self.email


class Organization(models.Model):
    """A tenant. Every resource belongs to exactly one organisation."""

    id = id_field("org")
    name = models.CharField(max_length=200)
    plan = models.CharField(max_length=20, choices=Plan.choices, default=Plan.STARTER)
    # Limits are copied from the plan when it is set and may then be edited by an owner; null = unlimited.
    rate_per_minute = models.PositiveIntegerField(null=True, blank=True)
    rate_per_day = models.PositiveIntegerField(null=True, blank=True)
    monthly_run_limit = models.PositiveIntegerField(null=True, blank=True)
    monthly_token_quota = models.PositiveBigIntegerField(null=True, blank=True)
    max_concurrent_runs = models.PositiveIntegerField(null=True, blank=True)
    retention_days = models.PositiveIntegerField(default=90)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(condition=models.Q(retention_days__gte=1), name="org_retention_positive"),
        ]

    def __str__(self):
        return self.name

    @property
    def limits(self) -> dict:
        return {field: getattr(self, field) for field in LIMIT_FIELDS}


class Membership(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="membership_unique"),
        ]

    def __str__(self):
        return f"{self.user} in {self.organization} ({self.role})"


class ApiKey(models.Model):
    """An organisation's API key. Only a keyed hash of the key is stored; see accounts.keys."""

    id = id_field("key")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16)
    last4 = models.CharField(max_length=4)
    key_hash = models.CharField(max_length=64, unique=True)
    pepper_id = models.CharField(max_length=16)
    scopes = models.JSONField(default=list)
    created_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.prefix}…{self.last4})"

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class Project(models.Model):
    """Groups workflows inside an organisation."""

    id = id_field("proj")
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="projects")
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="project_name_unique"),
        ]

    def __str__(self):
        return self.name


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

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
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


__all__ = ["ID_MAX_LENGTH", "ApiKey", "IdempotencyRecord", "Membership", "Organization", "Project", "User"]

# LLM providers and agents live in their own module (docs/llm.md); importing it registers them. It comes
# last, after the models it refers to by name.
from accounts.models_llm import Agent, AgentKind, LlmProvider, LlmProviderKind  # noqa: E402

__all__ += ["Agent", "AgentKind", "LlmProvider", "LlmProviderKind"]

# The security policy, secrets and webhook signing secret (docs/security.md); importing registers them.
from accounts.models_security import (  # noqa: E402
    MAX_RUN_DURATION_LIMIT,
    MAX_STEPS_LIMIT,
    MAX_TOKENS_LIMIT,
    SECRET_NAME_PATTERN,
    SECRET_VALUE_MAX_BYTES,
    Secret,
    SecurityPolicy,
    SigningSecret,
)

__all__ += [
    "MAX_RUN_DURATION_LIMIT",
    "MAX_STEPS_LIMIT",
    "MAX_TOKENS_LIMIT",
    "SECRET_NAME_PATTERN",
    "SECRET_VALUE_MAX_BYTES",
    "Secret",
    "SecurityPolicy",
    "SigningSecret",
]
