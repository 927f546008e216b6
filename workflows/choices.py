from django.db import models


class WorkflowStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    ACTIVE = "active", "Active"
    PAUSED = "paused", "Paused"
    ARCHIVED = "archived", "Archived"


class TriggerType(models.TextChoices):
    """How the workflow is meant to be started. Descriptive: every workflow can also be run via the API."""

    API = "api", "API"
    WEBHOOK = "webhook", "Webhook"
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"


class ConcurrencyPolicy(models.TextChoices):
    REJECT = "reject", "Reject"
    QUEUE = "queue", "Queue"
    CANCEL_RUNNING = "cancel_running", "Cancel running"


# Allowed PATCH /status moves. Archived workflows leave that state only through /unarchive (→ draft).
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    WorkflowStatus.DRAFT: frozenset({WorkflowStatus.ACTIVE, WorkflowStatus.PAUSED, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ACTIVE: frozenset({WorkflowStatus.DRAFT, WorkflowStatus.PAUSED, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.PAUSED: frozenset({WorkflowStatus.DRAFT, WorkflowStatus.ACTIVE, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ARCHIVED: frozenset(),
}

MAX_TAGS = 20
MAX_TAG_LENGTH = 50
MAX_NAME_LENGTH = 200
MAX_DESCRIPTION_LENGTH = 2000
MAX_CHANGE_SUMMARY_LENGTH = 500
MAX_CONCURRENCY_LIMIT = 1000
MAX_CONCURRENCY_KEY_LENGTH = 500
MAX_RETENTION_DAYS = 3650
SLUG_MAX_LENGTH = 100
# Slugs that would be shadowed by a fixed route under /workflows/.
RESERVED_SLUGS = frozenset({"validate"})


class ScheduleCatchup(models.TextChoices):
    """What a schedule does with fire times missed while nothing could fire them (docs/schedules.md)."""

    NONE = "none", "None"
    LAST = "last", "The last one"
    ALL = "all", "All of them"


class ScheduleOverlap(models.TextChoices):
    """What a fire time does while the schedule's previous run is still active."""

    SKIP = "skip", "Skip"
    QUEUE = "queue", "Queue (at most one waiting)"
    ALLOW = "allow", "Allow"


class FireOutcome(models.TextChoices):
    """What became of one fire time of a schedule (ScheduleFire.outcome)."""

    STARTED = "started", "A run was started"
    WAITING = "waiting", "Waiting for the previous run (overlap: queue)"
    SKIPPED_OVERLAP = "skipped_overlap", "Skipped: the previous run was still active"
    SKIPPED_PAUSED = "skipped_paused", "Skipped: the workflow was paused"
    MISSED = "missed", "Missed (catch-up policy)"
    FAILED = "failed", "The run could not be created"
