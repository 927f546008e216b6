"""Run, step and event vocabularies (API.md "Runs")."""

from django.db import models


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    AWAITING_INPUT = "awaiting_input", "Awaiting input"
    PAUSED = "paused", "Paused"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


RUN_TERMINAL = frozenset({RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED})
RUN_ACTIVE = frozenset(set(RunStatus.values) - RUN_TERMINAL)


class StepStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    WAITING = "waiting", "Waiting"
    AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
    AWAITING_INPUT = "awaiting_input", "Awaiting input"
    COMPLETED = "completed", "Completed"
    FAILED = "failed", "Failed"
    SKIPPED = "skipped", "Skipped"
    CANCELLED = "cancelled", "Cancelled"


STEP_FINISHED = frozenset({StepStatus.COMPLETED, StepStatus.FAILED, StepStatus.SKIPPED, StepStatus.CANCELLED})
# Started but not finished: a run with such steps is not done yet.
STEP_IN_FLIGHT = frozenset(
    {
        StepStatus.QUEUED,
        StepStatus.RUNNING,
        StepStatus.WAITING,
        StepStatus.AWAITING_APPROVAL,
        StepStatus.AWAITING_INPUT,
    }
)


class RunTrigger(models.TextChoices):
    API = "api", "API"
    WEBHOOK = "webhook", "Webhook"
    SCHEDULE = "schedule", "Schedule"
    MANUAL = "manual", "Manual"
    RERUN = "rerun", "Rerun"
    SUB_WORKFLOW = "sub_workflow", "Sub-workflow"


class EventType(models.TextChoices):
    RUN_QUEUED = "run_queued"
    RUN_STARTED = "run_started"
    STEP_STARTED = "step_started"
    STEP_COMPLETED = "step_completed"
    STEP_FAILED = "step_failed"
    STEP_RETRYING = "step_retrying"
    STEP_SKIPPED = "step_skipped"
    RUN_PAUSED = "run_paused"
    RUN_AWAITING_APPROVAL = "run_awaiting_approval"
    RUN_AWAITING_INPUT = "run_awaiting_input"
    RUN_COMPLETED = "run_completed"
    RUN_FAILED = "run_failed"
    RUN_CANCELLED = "run_cancelled"


RUN_TERMINAL_EVENTS = {
    RunStatus.COMPLETED: EventType.RUN_COMPLETED,
    RunStatus.FAILED: EventType.RUN_FAILED,
    RunStatus.CANCELLED: EventType.RUN_CANCELLED,
}


class SkipReason(models.TextChoices):
    WHEN_FALSE = "when_false", "`when` was false"
    BRANCH_NOT_TAKEN = "branch_not_taken", "Condition branch not taken"
    UPSTREAM_SKIPPED = "upstream_skipped", "Every dependency was skipped"
    DRY_RUN = "dry_run", "Dry run: side effect not executed"
    RUN_ENDED = "run_ended", "The run ended before this step ran"
