"""Workflows, their immutable versions, and templates (built-in and per organisation)."""

from django.db import models
from django.utils import timezone

from config.ids import id_field
from workflows.choices import (
    SLUG_MAX_LENGTH,
    STATUS_TRANSITIONS,
    FireOutcome,
    ScheduleCatchup,
    ScheduleOverlap,
    TriggerType,
    WorkflowStatus,
)


class Project(models.Model):
    """Groups workflows inside an organisation."""

    id = id_field("proj")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="projects"
    )
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


class Workflow(models.Model):
    """A named, versioned workflow of one organisation. The definition lives in its versions."""

    id = id_field("wf")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="workflows"
    )
    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.SET_NULL, related_name="workflows"
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


# The Schedule model has a `timezone` field, which shadows the module inside its class body.
_now = timezone.now


class Schedule(models.Model):
    """A cron schedule that starts runs of one workflow (docs/schedules.md). `next_run_at` is the next fire
    time (UTC) while enabled, else null: the scheduler's only index."""

    id = id_field("sched")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="schedules"
    )
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="schedules")
    cron_expression = models.CharField(max_length=120)
    timezone = models.CharField(max_length=64, default="UTC")
    input_data = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    catchup = models.CharField(max_length=8, choices=ScheduleCatchup.choices, default=ScheduleCatchup.NONE)
    catchup_window_seconds = models.PositiveIntegerField(default=3600)
    overlap = models.CharField(max_length=8, choices=ScheduleOverlap.choices, default=ScheduleOverlap.SKIP)
    next_run_at = models.DateTimeField(null=True, blank=True)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_run_id = models.CharField(max_length=40, blank=True, default="")
    # The last fire time that could not start its run ({"code", "message", "details"?, "fire_time"}, as
    # ScheduleFire.error); cleared by the next run started.
    last_error = models.JSONField(null=True, blank=True)
    created_by = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=_now)
    updated_at = models.DateTimeField(default=_now)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(catchup__in=ScheduleCatchup.values), name="schedule_catchup_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(overlap__in=ScheduleOverlap.values), name="schedule_overlap_valid"
            ),
        ]
        indexes = [
            # The scheduler's scan (enabled schedules by next fire time) reads this index only.
            models.Index(
                fields=["next_run_at"], name="schedule_due", condition=models.Q(next_run_at__isnull=False)
            ),
            models.Index(fields=["organization", "created_at"], name="schedule_org_created"),
        ]

    def __str__(self):
        return f"{self.id} ({self.cron_expression} {self.timezone})"


class ScheduleFire(models.Model):
    """One fire time of a schedule and what became of it. The unique (schedule, fire_time) is what makes a
    fire time start at most one run, whoever fires it (scheduler, catch-up or backfill); the run id is a
    plain column, so run retention never reopens a fire time."""

    schedule = models.ForeignKey(Schedule, on_delete=models.CASCADE, related_name="fires")
    fire_time = models.DateTimeField()
    outcome = models.CharField(max_length=16, choices=FireOutcome.choices)
    run_id = models.CharField(max_length=40, blank=True, default="")
    backfill = models.BooleanField(default=False)
    # Why the run could not be created (outcome `failed`): {"code", "message", "details"?, "fire_time"}.
    error = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["schedule", "fire_time"]
        constraints = [
            models.UniqueConstraint(fields=["schedule", "fire_time"], name="schedule_fire_unique"),
        ]
        indexes = [
            models.Index(
                fields=["schedule", "fire_time"],
                name="schedule_fire_waiting",
                condition=models.Q(outcome="waiting"),
            ),
        ]

    def __str__(self):
        return f"{self.schedule_id} @ {self.fire_time:%Y-%m-%dT%H:%M:%SZ} ({self.outcome})"


class WebhookDelivery(models.Model):
    """A delivery an inbound webhook has seen: its `Idempotency-Key`, its `X-GitHub-Delivery` id, or its
    signature (`sig:`, refused when seen again: a replay). Unique per workflow, so of two concurrent copies
    of one delivery exactly one starts a run; the other answers with that run's id."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="webhook_deliveries")
    key = models.CharField(max_length=300)
    run_id = models.CharField(max_length=40, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "key"], name="webhook_delivery_unique"),
        ]
        indexes = [models.Index(fields=["created_at"], name="webhook_delivery_created")]

    def __str__(self):
        return f"{self.workflow_id} {self.key}"
