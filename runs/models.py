"""Runs: the ledger of the engine. A run's truth is its rows (DESIGN.md "the database is the ledger")."""

from decimal import Decimal

from django.db import models
from django.utils import timezone

from config.ids import id_field
from runs.choices import RUN_TERMINAL, EventType, RunStatus, RunTrigger, StepStatus


class Run(models.Model):
    """One execution of a workflow, pinned to the version it started with."""

    id = id_field("run")
    # No index of their own: run_org_created and run_wf_concurrency begin with them (every index is written
    # on each change of a run's status; docs/performance.md).
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    workflow = models.ForeignKey(
        "workflows.Workflow", on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    # No index of its own: run_version_org_created begins with it.
    workflow_version = models.ForeignKey(
        "workflows.WorkflowVersion", on_delete=models.CASCADE, related_name="runs", db_index=False
    )
    # The pinned version's content hash: with the version's pk it keys the engine's cache of prepared
    # definitions (a pk alone can be reused on SQLite after the newest row is deleted).
    definition_hash = models.CharField(max_length=64, blank=True, default="")
    status = models.CharField(max_length=20, choices=RunStatus.choices, default=RunStatus.QUEUED)
    trigger = models.CharField(max_length=20, choices=RunTrigger.choices, default=RunTrigger.API)
    input_data = models.JSONField(default=dict, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    env = models.CharField(max_length=100, null=True, blank=True)  # noqa: DJ001  (null: no environment)
    dry_run = models.BooleanField(default=False)
    # The trigger's `model` override for agent steps ("" = each agent's own model).
    model = models.CharField(max_length=200, blank=True, default="")
    # The workflow's concurrency key rendered at trigger time (None: the workflow has no concurrency limit).
    concurrency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    result = models.JSONField(null=True, blank=True)
    # {"code", "message", "step_id"} when failed.
    error = models.JSONField(null=True, blank=True)
    # Indexed by `run_parent` where set (most runs have no parent).
    parent_run = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_runs", db_index=False
    )
    # The parent's `sub_workflow` step run that started this run (docs/engine.md "Sub-workflows"); unique,
    # so a retried or reclaimed step can never start a second child.
    parent_step_run = models.OneToOneField(
        "runs.StepRun", null=True, blank=True, on_delete=models.SET_NULL, related_name="child_run"
    )
    pinned = models.BooleanField(default=False)
    pause_signal = models.JSONField(null=True, blank=True)
    triggered_by = models.CharField(max_length=40, blank=True, default="")
    triggered_by_type = models.CharField(max_length=10, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    # `terminate`: like a cancel request, but running steps are killed instead of awaited.
    terminate_requested_at = models.DateTimeField(null=True, blank=True)
    # `pause`: no new step starts; the run becomes `paused` once no step is running (docs/runs-api.md).
    pause_requested_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    total_tokens = models.BigIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))
    # The last RunEvent.seq written; bumped under the run's row lock so seq stays gapless.
    event_seq = models.PositiveIntegerField(default=0)

    # Not a field: the top-level step rows `run_create` wrote, as its transaction left them, so the
    # trigger's response is written without reading them back (runs/api/representation.py).
    created_steps: list | None = None

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=models.Q(status__in=RunStatus.values), name="run_status_valid"),
        ]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="run_org_created"),
            models.Index(fields=["organization", "status", "-created_at"], name="run_org_status"),
            # A workflow's runs (GET /runs?workflow=, GET /workflows/{ref}/runs) and a version's runs
            # (?version=), newest first: with the organisation in the index, the page reads them in order
            # and the bounded count (config/api/pagination.py) is an index-only scan, also with ?status=
            # on a workflow's runs (status is carried in the index: PostgreSQL only; docs/reliability.md).
            models.Index(
                fields=["workflow", "organization", "-created_at"],
                name="run_workflow_org_created",
                include=["status"],
            ),
            models.Index(
                fields=["workflow_version", "organization", "-created_at"], name="run_version_org_created"
            ),
            models.Index(fields=["status", "deadline_at"], name="run_status_deadline"),
            # A run's sub-workflow runs, where there are any.
            models.Index(
                fields=["parent_run"], name="run_parent", condition=models.Q(parent_run__isnull=False)
            ),
            # Concurrency limits: the active runs of a workflow's key (runs/concurrency.py).
            models.Index(fields=["workflow", "concurrency_key", "status"], name="run_wf_concurrency"),
        ]

    def __str__(self):
        return f"{self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in RUN_TERMINAL

    def can_cancel(self) -> bool:
        return not self.is_terminal


class StepRun(models.Model):
    """One step of a run (or one iteration of a loop step, with `parent` and `iteration` set)."""

    id = id_field("sr")
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="steps")
    step_id = models.CharField(max_length=64)
    type = models.CharField(max_length=32)
    name = models.CharField(max_length=200, blank=True, default="")
    status = models.CharField(max_length=20, choices=StepStatus.choices, default=StepStatus.PENDING)
    # A loop's iterations are found by `step_iteration_unique` (parent, iteration), where the parent is set.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="iterations", db_index=False
    )
    iteration = models.PositiveIntegerField(null=True, blank=True)
    attempt = models.PositiveIntegerField(default=0)
    # [{"attempt", "status", "error", "duration_ms", "started_at"}], one entry per finished attempt.
    attempts = models.JSONField(default=list, blank=True)
    input_data = models.JSONField(null=True, blank=True)
    output_data = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    skip_reason = models.CharField(max_length=40, blank=True, default="")
    # Handler-private durable state across suspensions (a wait's start, a loop's progress).
    state = models.JSONField(default=dict, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    wake_at = models.DateTimeField(null=True, blank=True)
    dispatched_at = models.DateTimeField(null=True, blank=True)
    tokens = models.JSONField(default=dict, blank=True)
    cost_usd = models.DecimalField(max_digits=14, decimal_places=6, default=Decimal("0"))

    class Meta:
        ordering = ["run", "queued_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=StepStatus.values), name="step_status_valid"
            ),
            models.UniqueConstraint(
                fields=["run", "step_id"], condition=models.Q(parent__isnull=True), name="step_run_unique"
            ),
            models.UniqueConstraint(
                fields=["parent", "iteration"],
                condition=models.Q(parent__isnull=False),
                name="step_iteration_unique",
            ),
        ]
        indexes = [
            # The reconciler's three scans, each over the rows it looks for only: a step row is written again
            # at each change of its status (a new entry in every index that holds it), and most rows end
            # finished, where these leave them out. The wake-up scan asks for several statuses, and SQLite
            # uses a partial index only for the very terms of its condition, or where a comparison of a
            # column implies the condition's `IS NOT NULL`: its index holds the rows with a time to wake at.
            models.Index(
                fields=["status", "lease_expires_at"], name="step_status_lease",
                condition=models.Q(status=StepStatus.RUNNING),
            ),
            models.Index(
                fields=["status", "wake_at"], name="step_status_wake",
                condition=models.Q(wake_at__isnull=False),
            ),
            models.Index(
                fields=["status", "dispatched_at"], name="step_status_dispatched",
                condition=models.Q(status=StepStatus.QUEUED),
            ),
        ]  # fmt: skip

    def __str__(self):
        suffix = f"[{self.iteration}]" if self.iteration is not None else ""
        return f"{self.run_id}/{self.step_id}{suffix} ({self.status})"


class RunEvent(models.Model):
    """An append-only entry of a run's event log; `seq` is gapless per run (the SSE `id:`)."""

    # No index of its own: run_event_seq_unique begins with it.
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="events", db_index=False)
    seq = models.PositiveIntegerField()
    type = models.CharField(max_length=32, choices=EventType.choices)
    step_id = models.CharField(max_length=64, blank=True, default="")
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["run", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="run_event_seq_unique")]

    def __str__(self):
        return f"{self.run_id}#{self.seq} {self.type}"


class RunFile(models.Model):
    """A file uploaded with a run's trigger (multipart `attachment`)."""

    id = id_field("file")
    run = models.ForeignKey(Run, null=True, blank=True, on_delete=models.CASCADE, related_name="files")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="run_files"
    )
    name = models.CharField(max_length=255)
    size = models.PositiveBigIntegerField(default=0)
    content_type = models.CharField(max_length=255, blank=True, default="")
    sha256 = models.CharField(max_length=64)
    storage_path = models.CharField(max_length=500)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.name} ({self.id})"


class WorkflowSubscription(models.Model):
    """A member who wants to hear when a run of this workflow fails (runs/notifications.py)."""

    workflow = models.ForeignKey("workflows.Workflow", on_delete=models.CASCADE, related_name="subscriptions")
    user = models.ForeignKey("accounts.User", on_delete=models.CASCADE, related_name="workflow_subscriptions")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["workflow", "user"], name="workflow_subscription_unique")
        ]

    def __str__(self):
        return f"{self.user_id} → {self.workflow_id}"
