"""Sub-workflows: a `sub_workflow` step starts a child run of another workflow of the same organisation,
waits for it without holding a worker, and returns its result (docs/engine.md "Sub-workflows").

Links: the child's `parent_run` is the parent run and its `parent_step_run` the step run that started it
(one-to-one, so a retried or reclaimed step finds its child instead of starting a second one); the parent's
step records the child's id in its stored input (`child_run_id`).

Lock order (organisation → runs → step runs → audit head; `run_create` locks the organisation first):
nothing here takes one run's lock while holding another's. The handler creates the child outside any
transaction. A child that finishes wakes its parent's step, and a parent that is cancelled (or fails while a
child it waits for is still active) cancels its children — each in a transaction of its own after the one
that made the change commits (`dispatch.after_commit`). A lost follow-up is repaired by the reconciler
(`reconcile`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import replace
from functools import partial

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Organization
from accounts.principal import SYSTEM
from accounts.selectors import organization_has_llm_provider
from config.errors import Conflict, NotFound, QuotaExceeded, Unprocessable
from runs.choices import RUN_ACTIVE, RUN_TERMINAL, RunStatus, RunTrigger, StepStatus
from runs.engine.context import StepContext, StepError, StepOutcome
from runs.engine.dispatch import after_commit, dispatch
from runs.models import Run, StepRun
from workflows.choices import WorkflowStatus
from workflows.selectors import workflow_get, workflow_version_get

logger = logging.getLogger("baton.engine")

# A run started by a sub_workflow step is one level below its parent; a root run is level 0. Starting a
# child below level MAX_DEPTH fails the step with `sub_workflow_depth_exceeded` (guards against recursion).
MAX_DEPTH = 10
BATCH = 200


# ---------------------------------------------------------------------------------------------
# The handler


def execute(context: StepContext) -> StepOutcome:
    """Start the child (once per step run) or look at it again when woken: its result, its failure, or
    another suspension until it is terminal. `wait: false` completes at once with {run_id, status}."""
    child = _existing_child(context.step_run_id) or _start_child(context)
    extra = {"child_run_id": child.id}
    if not context.config.get("wait", True):
        return StepOutcome.completed({"run_id": child.id, "status": child.status}, input_extra=extra)
    if child.status == RunStatus.COMPLETED:
        return StepOutcome.completed(child.result, input_extra=extra)
    if child.status == RunStatus.FAILED:
        error = child.error or {}
        raise _error(
            "sub_workflow_failed",
            f"Step '{context.step_id}': child run {child.id} failed: {error.get('message', 'no message')}",
            details={"run_id": child.id, "error": error},
            extra=extra,
        )
    if child.status == RunStatus.CANCELLED:
        raise _error(
            "sub_workflow_cancelled",
            f"Step '{context.step_id}': child run {child.id} was cancelled.",
            details={"run_id": child.id},
            extra=extra,
        )
    suspended = StepOutcome.suspended(wake_at=None, state={"child_run_id": child.id})
    return replace(suspended, input_extra=extra)


def _error(code: str, message: str, *, retryable: bool = False, details=None, extra=None) -> StepError:
    error = StepError(code, message, retryable=retryable, details=details)
    if extra:
        error.input_extra = extra
    return error


def _existing_child(step_run_id: str) -> Run | None:
    return (
        Run.objects.filter(parent_step_run_id=step_run_id)
        .only("id", "status", "result", "error", "parent_step_run_id")
        .first()
    )


def run_depth(run_id: str) -> int:
    """How many sub_workflow levels are above this run (0 for a run not started by a step); stops counting
    past MAX_DEPTH."""
    depth = 0
    while depth <= MAX_DEPTH:
        parent_id = (
            Run.objects.filter(pk=run_id, parent_step_run__isnull=False)
            .values_list("parent_run_id", flat=True)
            .first()
        )
        if parent_id is None:
            return depth
        depth += 1
        run_id = parent_id
    return depth


def _child_input(context: StepContext) -> dict:
    value = context.config.get("input", {})
    if isinstance(value, str):
        with contextlib.suppress(ValueError):  # a template rendering JSON text; else refused below
            value = json.loads(value) if value.strip() else {}
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise _error(
            "invalid_input",
            f"Step '{context.step_id}' config.input must be an object (it is {type(value).__name__}).",
        )
    return value


def _start_child(context: StepContext) -> Run:
    """Check the target workflow and create the child run (outside any transaction: run_create locks the
    organisation first). The child is triggered by the SYSTEM actor (`trigger: sub_workflow`), inherits the
    parent's `env` and `model`, and counts against the organisation's quota and concurrency limits."""
    from runs.quotas import check_trigger_quota
    from runs.services import run_create, uses_agents

    step_id = context.step_id
    parent = Run.objects.only("id", "organization_id", "env", "model", "parent_run_id").get(pk=context.run_id)
    depth = run_depth(parent.id) + 1
    if depth > MAX_DEPTH:
        raise _error(
            "sub_workflow_depth_exceeded",
            f"Step '{step_id}': sub-workflows nest at most {MAX_DEPTH} levels deep; this child would be "
            f"level {depth}.",
        )
    organization = Organization.objects.get(pk=context.organization_id)
    ref = str(context.config.get("workflow", ""))
    try:
        workflow = workflow_get(organization=organization, ref=ref)
    except NotFound:
        workflow = None
    if workflow is None or workflow.status == WorkflowStatus.ARCHIVED:
        raise _error(
            "sub_workflow_not_found",
            f"Step '{step_id}': workflow '{ref}' was not found in this organisation.",
        )
    if workflow.status == WorkflowStatus.PAUSED:
        raise _error(
            "workflow_disabled", f"Step '{step_id}': workflow {workflow.id} is paused: activate it to run it."
        )
    try:
        version = workflow_version_get(workflow=workflow, spec=context.config.get("version") or "latest")
    except NotFound as exc:
        raise _error(exc.code, f"Step '{step_id}': {exc.message}") from None
    if uses_agents(version.definition.get("steps")) and not organization_has_llm_provider(organization):
        raise _error(
            "no_llm_provider",
            f"Step '{step_id}': workflow {workflow.id} has agent steps and the organisation has no LLM "
            "provider.",
        )
    input_data = _child_input(context)
    try:
        check_trigger_quota(organization, uses_agents=False)  # an early 402; run_create checks it all
        with transaction.atomic():
            child = run_create(
                workflow=workflow,
                actor=SYSTEM,
                version=version,
                input_data=input_data,
                env=parent.env,
                model=parent.model,
                trigger=RunTrigger.SUB_WORKFLOW,
                parent_run=parent,
                # Unique: a second execution of this step run (a reclaim racing a slow worker) fails here
                # and rolls its child back; it then uses the first one. Set at creation, so admission
                # already knows the child runs inside its parent's slot (runs/concurrency.py).
                parent_step_run_id=context.step_run_id,
            )
    except IntegrityError:
        existing = _existing_child(context.step_run_id)
        if existing is None:
            raise
        return existing
    except QuotaExceeded as exc:
        raise _error(exc.code, f"Step '{step_id}': {exc.message}", details=exc.details) from None
    except Unprocessable as exc:
        raise _error(
            exc.code, f"Step '{step_id}': the child run was refused: {exc.message}", details=exc.details
        ) from None
    except Conflict as exc:  # workflow_already_running (on_limit: reject): the step's retry policy applies
        raise _error(
            exc.code, f"Step '{step_id}': {exc.message}", retryable=True, details=exc.details
        ) from None
    child.parent_step_run_id = context.step_run_id
    return child


# ---------------------------------------------------------------------------------------------
# Hooks called by the engine under a run's lock: they only schedule work for after the commit.


def on_run_finished(run: Run, status: str) -> None:
    """`run` (locked) just became terminal: wake the parent step waiting for it; when it failed or was
    cancelled, cancel the children it was waiting for (all of them when it was cancelled)."""
    if run.parent_step_run_id:
        after_commit(partial(wake_parent_step, run.parent_step_run_id))
    if status in (RunStatus.FAILED, RunStatus.CANCELLED) and _starts_children(run):
        terminate = run.terminate_requested_at is not None
        after_commit(
            partial(cancel_children, run.id, terminate=terminate, every=status == RunStatus.CANCELLED)
        )


def on_cancel_requested(run: Run) -> None:
    """`run` (locked) was asked to cancel or terminate: do the same to its active children (when it already
    finished, `on_run_finished` did)."""
    if not run.is_terminal and _starts_children(run):
        terminate = run.terminate_requested_at is not None
        after_commit(partial(cancel_children, run.id, terminate=terminate, every=True))


def _starts_children(run: Run) -> bool:
    from runs.engine.plan import plan_for

    for step in plan_for(run).steps.values():
        inline = (step.get("config") or {}).get("step") if step["type"] == "loop" else None
        if step["type"] == "sub_workflow" or (
            isinstance(inline, dict) and inline.get("type") == "sub_workflow"
        ):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Follow-ups, each in transactions of its own


def wake_parent_step(step_run_id: str) -> bool:
    """Requeue a `sub_workflow` step waiting for its child (no-op unless it is waiting); True if woken."""
    run_id = StepRun.objects.filter(pk=step_run_id).values_list("run_id", flat=True).first()
    if run_id is None:
        return False
    with transaction.atomic():
        Run.objects.select_for_update().only("id").get(pk=run_id)
        woken = StepRun.objects.filter(
            pk=step_run_id, status=StepStatus.WAITING, wake_at__isnull=True
        ).update(status=StepStatus.QUEUED, dispatched_at=timezone.now())
        if woken:
            dispatch([step_run_id])
    return bool(woken)


def cancel_children(run_id: str, *, terminate: bool = False, every: bool = True) -> int:
    """Cancel (or terminate) the active children of a run, each in its own transaction; `every` False:
    only those whose step is not completed (a step still waiting for them). Returns how many."""
    from runs.services import run_cancel, run_terminate

    children = Run.objects.filter(parent_step_run__run_id=run_id, status__in=RUN_ACTIVE)
    if not every:
        children = children.exclude(parent_step_run__status=StepStatus.COMPLETED)
    if not terminate:
        children = children.filter(cancel_requested_at__isnull=True)
    else:
        children = children.filter(terminate_requested_at__isnull=True)
    count = 0
    for child in list(children.order_by("created_at", "id")):
        action = run_terminate if terminate else run_cancel
        try:
            action(run=child, actor=SYSTEM, reason=f"The parent run {run_id} stopped.")
        except Conflict:
            continue  # finished meanwhile
        count += 1
    return count


def reconcile() -> int:
    """The reconciler's safety net for lost follow-ups: wake parent steps whose child is terminal, and
    cancel active children whose parent was cancelled (or ended while still waiting for them)."""
    woken = 0
    due = StepRun.objects.filter(
        status=StepStatus.WAITING,
        wake_at__isnull=True,
        type="sub_workflow",
        child_run__status__in=RUN_TERMINAL,
    ).values_list("pk", flat=True)[:BATCH]
    for step_run_id in list(due):
        woken += wake_parent_step(step_run_id)
    orphaned = (
        Run.objects.filter(status__in=RUN_ACTIVE, cancel_requested_at__isnull=True)
        .filter(
            Q(parent_step_run__run__status=RunStatus.CANCELLED)
            | (
                Q(parent_step_run__run__status__in=RUN_TERMINAL)
                & ~Q(parent_step_run__status=StepStatus.COMPLETED)
            )
        )
        .order_by()
        .values_list("parent_step_run__run_id", "parent_step_run__run__status")
        .distinct()[:BATCH]
    )
    cancelled = 0
    for parent_id, status in list(orphaned):
        cancelled += cancel_children(parent_id, every=status == RunStatus.CANCELLED)
    return woken + cancelled
