"""Resume and rerun (API.md `/runs/{id}/resume`, `/rerun`; docs/runs-api.md "Pause, resume and rerun").

- `run_resume`: a `paused` run continues where it stopped; a `failed` or `cancelled` run is re-run in
  place: its failed, cancelled and unfinished steps (and `from_step`, when given) and every step downstream
  of them start anew, every other step keeps its recorded output. The run goes through admission again
  (concurrency limits), keeps its id, events and audit history.
- `run_rerun`: a new run linked to this one (`parent_run_id`), with the same input, metadata, environment
  and model, on the pinned, latest or published version; steps upstream of `from_step` keep the outputs
  this run recorded (they are not executed again).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from accounts.selectors import organization_has_llm_provider
from audit.services import audit_record
from config.errors import Conflict, InvalidRequest
from runs import concurrency as admission
from runs.choices import EventType, RunStatus, RunTrigger, StepStatus
from runs.engine.control import reset_steps, run_continue
from runs.engine.dispatch import dispatch
from runs.engine.plan import downstream, plan_for, plan_for_version
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, StepRun
from runs.services.approvals import hold_if_gated
from runs.services.trigger import run_create, uses_agents
from workflows.choices import WorkflowStatus
from workflows.selectors import workflow_version_get

KEPT = (StepStatus.COMPLETED, StepStatus.SKIPPED)  # outcomes a resume or rerun keeps
RESUMABLE = (RunStatus.PAUSED, RunStatus.FAILED, RunStatus.CANCELLED)


def _unknown_step(step_id: str, where: str) -> InvalidRequest:
    return InvalidRequest(
        "invalid_request",
        f"from_step '{step_id}' is not a step of {where}.",
        details={"fields": {"from_step": [f"No step '{step_id}'."]}},
    )


def run_resume(*, run: Run, actor, from_step: str | None = None) -> Run:
    """Resume a paused run, or re-run a failed or cancelled one in place (see the module docstring)."""
    with transaction.atomic():
        organization = admission.lock_organization(run.organization_id)  # lock order: organisation first
        locked = Run.objects.select_for_update().get(pk=run.pk)
        work = UnitOfWork(locked)
        paused = locked.status == RunStatus.PAUSED or (
            locked.pause_requested_at is not None and not locked.is_terminal
        )
        if not paused and locked.status not in RESUMABLE:
            raise Conflict(
                "run_not_resumable",
                f"Run {run.id} is {locked.status}: only paused, failed or cancelled runs can be resumed.",
            )
        if locked.parent_step_run_id is not None and locked.is_terminal:
            raise Conflict(
                "run_not_resumable",
                f"Run {run.id} is a sub-workflow run: resume its parent run "
                f"({locked.parent_step_run.run_id}), which starts the step anew.",
            )
        plan = plan_for(locked)
        if from_step is not None and from_step not in plan.steps:
            raise _unknown_step(from_step, f"run {run.id}'s workflow version")
        now = timezone.now()
        reset: set[str] = set()
        if from_step is not None or locked.is_terminal:
            if (
                paused
                and StepRun.objects.filter(
                    run_id=locked.id, status__in=(StepStatus.RUNNING, StepStatus.QUEUED)
                ).exists()
            ):
                raise Conflict(
                    "run_not_resumable",
                    f"Run {run.id} still has running steps: resume it from a step once it is paused.",
                )
            seeds = set(
                StepRun.objects.filter(run_id=locked.id, parent__isnull=True)
                .exclude(status__in=KEPT)
                .values_list("step_id", flat=True)
            )
            if from_step is not None:
                seeds.add(from_step)
            reset = downstream(plan, seeds)
            reset_steps(locked, reset, now)
        ready: list[str] = []
        starting: list[UnitOfWork] = []
        if locked.is_terminal or locked.started_at is None:
            # Back through admission, like a new run (the concurrency limits apply), keeping its place.
            locked.status = RunStatus.QUEUED
            for field in ("completed_at", "result", "error", "cancel_requested_at", "terminate_requested_at",
                          "pause_requested_at", "pause_signal", "deadline_at"):  # fmt: skip
                setattr(locked, field, None)
            # A run that never started (rejected or cancelled at the environment gate, or paused there) waits
            # at the gate again: it cannot start without an approval (approvals.py).
            if not hold_if_gated(work, resumed=True):
                work.emit(EventType.RUN_QUEUED, data={"resumed": True, "from_step": from_step})
            work.save()  # admission reads the queue from the table
            starting = admission.select_admissions(organization, work) if organization else [work]
        else:
            ready = run_continue(work, now)
        work.save()
        audit_record(
            organization=locked.organization,
            event="run.resumed",
            actor=actor,
            target=("run", locked.id),
            data={"from_step": from_step, "steps": sorted(reset)},
            run_id=locked.id,
        )
        dispatch(ready)
        admission.start_admitted(starting)
    return locked


def run_rerun(*, run: Run, actor, from_step: str = "start", version: str = "pinned") -> Run:
    """Start a new run linked to `run` (see the module docstring). `from_step`: `start` (everything runs
    again), `failed` (the failed, cancelled and unfinished steps and what follows them) or a step id."""
    workflow = run.workflow
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise Conflict("workflow_archived", f"Workflow {workflow.id} is archived: its runs cannot be rerun.")
    if workflow.status == WorkflowStatus.PAUSED:
        raise Conflict("workflow_disabled", f"Workflow {workflow.id} is paused: activate it to rerun runs.")
    target = (
        run.workflow_version if version == "pinned" else workflow_version_get(workflow=workflow, spec=version)
    )
    if uses_agents(target.definition.get("steps")) and not organization_has_llm_provider(
        workflow.organization
    ):
        raise InvalidRequest(
            "no_llm_provider",
            "This workflow has agent steps and the organisation has no LLM provider: add one first.",
        )
    plan = plan_for_version(target)
    fields = ("id", "step_id", "type", "status", "skip_reason", "input_data", "output_data", "started_at",
              "completed_at")  # fmt: skip
    rows = StepRun.objects.filter(run_id=run.id, parent__isnull=True).only(*fields)
    recorded = {row.step_id: row for row in rows}
    if from_step == "start":
        seeds = set(plan.steps)
    elif from_step == "failed":
        seeds = {step_id for step_id, row in recorded.items() if row.status not in KEPT}
        if not seeds:
            raise Conflict(
                "run_not_failed",
                f"Run {run.id} has no failed, cancelled or unfinished step to rerun from: use from_step "
                "'start' or a step id.",
            )
    elif from_step in plan.steps:
        seeds = {from_step}
    else:
        raise _unknown_step(from_step, f"workflow version {target.number}")
    # A step the recorded run has no kept outcome for (new in this version, another type, failed) runs too.
    for step_id, step in plan.steps.items():
        row = recorded.get(step_id)
        if row is None or row.status not in KEPT or row.type != step["type"]:
            seeds.add(step_id)
    runs_again = downstream(plan, seeds)
    reuse = {step_id: recorded[step_id] for step_id in plan.steps if step_id not in runs_again}
    with transaction.atomic():
        return run_create(
            workflow=workflow,
            actor=actor,
            version=target,
            input_data=run.input_data,
            metadata=run.metadata,
            env=run.env,
            dry_run=run.dry_run,
            trigger=RunTrigger.RERUN,
            parent_run=run,
            model=run.model,
            reuse=reuse,
            audit_data={"parent_run_id": run.id, "from_step": from_step, "reused_steps": sorted(reuse)},
        )
