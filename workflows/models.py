"""Workflows, their immutable versions, and templates (built-in and per organisation)."""

from django.db import models
from django.utils import timezone

from accounts.models import Project  # noqa: F401 (the workflows' concern: its model moves here)
from config.ids import id_field
from workflows.choices import SLUG_MAX_LENGTH, STATUS_TRANSITIONS, TriggerType, WorkflowStatus


class Workflow(models.Model):
    """A named, versioned workflow of one organisation. The definition lives in its versions."""

    id = id_field("wf")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="workflows"
    )
    project = models.ForeignKey(
        "accounts.Project", null=True, blank=True, on_delete=models.SET_NULL, related_name="workflows"
    )
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=SLUG_MAX_LENGTH)
    description = models.TextField(blank=True, default="")
    status = models.CharField(max_length=10, choices=WorkflowStatus.choices, default=WorkflowStatus.DRAFT)
    trigger_type = models.CharField(max_length=10, choices=TriggerType.choices, default=TriggerType.API)
    tags = models.JSONField(default=list, blank=True)
    # {"limit": int, "key": str | null, "on_limit": "reject" | "queue" | "cancel_running"}; null = no limit.
    concurrency = models.JSONField(null=True, blank=True)
    retention_days = models.PositiveIntegerField(null=True, blank=True)
    webhook_enabled = models.BooleanField(default=False)
    webhook_secret = models.CharField(max_length=64)
    current_version = models.PositiveIntegerField(default=0)
    published_version = models.PositiveIntegerField(null=True, blank=True)
    created_by = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    archived_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "slug"], name="workflow_org_slug_unique"),
            models.CheckConstraint(
                condition=models.Q(status__in=WorkflowStatus.values), name="workflow_status_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(retention_days__isnull=True) | models.Q(retention_days__gte=1),
                name="workflow_retention_positive",
            ),
        ]
        indexes = [
            models.Index(fields=["organization", "status", "-created_at"], name="workflow_org_status"),
        ]

    def __str__(self):
        return f"{self.name} ({self.id})"

    @property
    def is_archived(self) -> bool:
        return self.status == WorkflowStatus.ARCHIVED

    def can_transition_to(self, status: str) -> bool:
        return status in STATUS_TRANSITIONS[WorkflowStatus(self.status)]


class WorkflowTag(models.Model):
    """One tag of a workflow, kept in step with `Workflow.tags` so the `tag` filter is an indexed join."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="tag_rows")
    name = models.CharField(max_length=50)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["workflow", "name"], name="workflow_tag_unique")]
        indexes = [models.Index(fields=["name"], name="workflow_tag_name")]

    def __str__(self):
        return self.name


class ImmutableError(RuntimeError):
    pass


class WorkflowVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise ImmutableError("Workflow versions cannot be changed.")

    def delete(self):
        raise ImmutableError("Workflow versions are deleted only with their workflow.")


class WorkflowVersion(models.Model):
    """One saved definition of a workflow. Never changed after it is written."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    definition = models.JSONField()
    change_summary = models.CharField(max_length=500, blank=True, default="")
    created_by = models.CharField(max_length=40, blank=True, default="")
    # SHA-256 of the RFC 8785 canonical JSON of `definition`.
    content_hash = models.CharField(max_length=64)
    created_at = models.DateTimeField(default=timezone.now)

    objects = WorkflowVersionQuerySet.as_manager()

    class Meta:
        ordering = ["workflow", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_unique"),
            models.CheckConstraint(condition=models.Q(number__gte=1), name="workflow_version_positive"),
        ]

    def __str__(self):
        return f"{self.workflow_id} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise ImmutableError("Workflow versions cannot be changed.")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ImmutableError("Workflow versions are deleted only with their workflow.")


class WorkflowTemplate(models.Model):
    """A starting point for a workflow: built-in (no organisation) or saved by an organisation."""

    id = id_field("tpl")
    organization = models.ForeignKey(
        "accounts.Organization",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="workflow_templates",
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    category = models.CharField(max_length=50, blank=True, default="")
    definition = models.JSONField()
    is_builtin = models.BooleanField(default=False)
    source_workflow_id = models.CharField(max_length=40, blank=True, default="")
    created_by = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-is_builtin", "category", "name", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_builtin=True, organization__isnull=True)
                | models.Q(is_builtin=False, organization__isnull=False),
                name="template_builtin_xor_org",
            ),
        ]
        indexes = [models.Index(fields=["organization", "category"], name="template_org_category")]

    def __str__(self):
        return self.name
