"""People in runs: approval decisions and answers to input requests (docs/approvals.md).

Each service locks the run row first (`lock_run`), then the step run, then appends to the audit chain
(lock order: organisation → run → step runs → audit head), so two people deciding at once are serialised:
exactly one decision completes a step, and a decision arriving after the step settled is a 409.

The environment gate (security policy `require_approval_for_envs`) lives here too: `environment_gate`
decides at trigger time whether a run waits for an approval before it starts, and `run_decide` settles it
(organisation lock first: an approved run goes through admission).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from accounts.choices import ROLE_RANK, role_at_least
from audit.services import audit_record
from config.errors import Conflict, Forbidden, Unprocessable, not_found
from runs import concurrency as admission
from runs.choices import EventType, RunStatus, StepStatus
from runs.engine import secrets as engine_secrets
from runs.engine.outcomes import finish_run
from runs.engine.plan import plan_for
from runs.engine.resolve import iso
from runs.engine.unit_of_work import UnitOfWork, lock_run
from runs.engine.waits import approval_record, person_answered
from runs.models import Run, StepRun

# A decision or an answer is accepted while the run is in one of these (a paused, queued or finished run is
# not waiting for anyone; `running` only while a step's wait has not yet reached the run's status).
_OPEN = (RunStatus.AWAITING_APPROVAL, RunStatus.AWAITING_INPUT, RunStatus.RUNNING)
NOTE_MAX_LENGTH = 1000


def _waiting_step(run: Run, status: str, step_id: str | None, code: str, what: str) -> StepRun:
    """The locked step of `run` waiting with `status`: `step_id`, else the one the pause signal names, else
    the first in plan order. 404 step_not_found for an unknown step id; 409 `code` when none waits."""
    if run.status not in _OPEN or run.pause_requested_at is not None:
        raise Conflict(code, f"Run {run.id} is {run.status}: it is not waiting for {what}.")
    steps = StepRun.objects.select_for_update().filter(run_id=run.id, parent__isnull=True)
    if step_id is not None:
        row = steps.filter(step_id=step_id).first()
        if row is None:
            raise not_found("step", step_id)
        if row.status != status:
            raise Conflict(
                code,
                f"Step '{step_id}' of run {run.id} is {row.status}: it is not waiting for {what}.",
                details={"step_id": step_id},
            )
        return row
    waiting = {row.step_id: row for row in steps.filter(status=status)}
    if not waiting:
        raise Conflict(code, f"Run {run.id} is {run.status}: it is not waiting for {what}.")
    named = (run.pause_signal or {}).get("step_id")
    if named in waiting:
        return waiting[named]
    return next(waiting[step] for step in plan_for(run).order if step in waiting)


def is_approver(approvers: list[str] | None, actor) -> bool:
    """Whether `actor` may decide a step with this `approvers` list. No list: any member (or API key with
    runs:approve). A list: a person whose email is listed, or whose role is at least a listed role
    (owner ⊃ admin ⊃ member ⊃ viewer); an API key is no person and never matches a list."""
    if not approvers:
        return True
    if getattr(actor, "api_key", None) is not None or getattr(actor, "user", None) is None:
        return False
    email = (actor.user.email or "").lower()
    for entry in approvers:
        if "@" in entry:
            if entry.lower() == email:
                return True
        elif entry in ROLE_RANK and actor.role and role_at_least(actor.role, entry):
            return True
    return False


def _decision(actor, approved: bool, note: str, now) -> dict:
    decision = {"by": actor.actor_id, "by_type": actor.actor_type, "approved": approved, "note": note,
                "at": iso(now)}  # fmt: skip
    user = getattr(actor, "user", None)
    if user is not None:
        decision["email"] = user.email
    return decision


@transaction.atomic
def run_decide(*, run: Run, actor, approved: bool, note: str = "", step_id: str | None = None) -> Run:
    """Approve or reject the run's step awaiting approval (`step_id`, else the one the pause signal names).

    The decision joins the step's `decisions` (its output) and the audit log (`run.approved` /
    `run.rejected` with the note). One rejection fails the step (`approval_rejected`); `required_approvals`
    approvals complete it; either way the step is requeued and the run is `running` again unless another
    step still waits for a person. Raises Conflict run_not_awaiting_approval (nothing awaits approval, or the
    step settled meanwhile), NotFound step_not_found, Forbidden not_an_approver / self_approval_forbidden,
    Conflict already_decided (this person or key decided this step before).

    A run waiting at the environment gate (no `step_id` given; see `environment_gate`) is decided by
    `_decide_gate` instead: one decision by any member or key with runs:approve starts or fails it."""
    note = (note or "")[:NOTE_MAX_LENGTH]
    if step_id is None and at_gate(run):  # the caller's snapshot: the organisation lock must come first
        return _decide_gate(run=run, actor=actor, approved=approved, note=note)
    work = lock_run(run.pk)
    locked = work.run
    row = _waiting_step(
        locked, StepStatus.AWAITING_APPROVAL, step_id, "run_not_awaiting_approval", "approval"
    )
    config = row.input_data or {}
    if not is_approver(config.get("approvers"), actor):
        key_note = " API keys cannot decide a step that lists its approvers." if actor.api_key else ""
        raise Forbidden(
            "not_an_approver",
            f"Step '{row.step_id}' may only be decided by: {', '.join(config['approvers'])}.{key_note}",
            details={"step_id": row.step_id, "approvers": config["approvers"]},
        )
    if approved and not config.get("allow_self_approval", True) and locked.triggered_by == actor.actor_id:
        raise Forbidden(
            "self_approval_forbidden",
            f"Step '{row.step_id}' does not allow the one who triggered the run to approve it.",
            details={"step_id": row.step_id},
        )
    if any(d.get("by") == actor.actor_id for d in row.state.get("decisions") or []):
        raise Conflict(
            "already_decided",
            f"{actor.actor_id} already decided step '{row.step_id}' of run {locked.id}.",
            details={"step_id": row.step_id},
        )
    now = timezone.now()
    outcome = approval_record(work, row, _decision(actor, approved, note, now), now)
    decisions = row.state.get("decisions") or []
    audit_record(
        organization=locked.organization,
        event="run.approved" if approved else "run.rejected",
        actor=actor,
        target=("run", locked.id),
        data={
            "step_id": row.step_id,
            "step_run_id": row.id,
            "approved": approved,
            "approvals": sum(1 for d in decisions if d.get("approved")),
            "required_approvals": config.get("required_approvals", 1),
            "outcome": outcome,
        },
        note=note or None,
        run_id=locked.id,
    )
    work.save()
    return locked


# --- the environment gate (docs/approvals.md "Environment gate") ------------------------------------------

GATE = "environment"


def environment_gate(organization_id: str, env, *, dry_run: bool, parent_step_run_id) -> dict | None:
    """The pause signal of a new run that must wait for an approval before it starts, else None: its `env`
    is listed in the organisation's security policy `require_approval_for_envs` (exact, case-sensitive).
    Dry runs (no side effects) and sub-workflow child runs (their parent passed the gate or was not gated)
    are exempt. Reads the policy with `policy_for` (one query, never a cached copy: a gate just added
    applies to the very next trigger in every process)."""
    if dry_run or parent_step_run_id is not None or not env:
        return None
    if env not in (engine_secrets.policy_for(organization_id).get("require_approval_for_envs") or ()):
        return None
    return {
        "type": "approval",
        "step_id": None,
        "message": f"Runs in environment '{env}' need an approval before they start.",
    }


def gate_event(work: UnitOfWork, signal: dict, **data) -> None:
    """`run_awaiting_approval` for a run held at the gate (the caller holds the run and saves it)."""
    data = {"pause_signal": signal, "gate": GATE, "env": work.run.env, **data}
    work.emit(EventType.RUN_AWAITING_APPROVAL, data=data)


def hold_if_gated(work: UnitOfWork, **data) -> bool:
    """A locked run going back to admission (a resume in place) that never started waits at the gate again
    instead: a rejected, cancelled or paused gated run cannot start without an approval. True if held."""
    run = work.run
    if run.started_at is not None:
        return False
    signal = environment_gate(
        run.organization_id, run.env, dry_run=run.dry_run, parent_step_run_id=run.parent_step_run_id
    )
    if signal is None:
        return False
    run.status = RunStatus.AWAITING_APPROVAL
    run.pause_signal = signal
    gate_event(work, signal, **data)
    return True


def at_gate(run: Run) -> bool:
    """Whether the run waits at the environment gate (not started, no step named by its pause signal)."""
    signal = run.pause_signal or {}
    return (
        run.status == RunStatus.AWAITING_APPROVAL
        and run.started_at is None
        and signal.get("type") == "approval"
        and signal.get("step_id") is None
    )


def _decide_gate(*, run: Run, actor, approved: bool, note: str) -> Run:
    """Approve (→ `queued`, then admission) or reject (→ `failed`, approval_rejected) a run at the gate.

    Lock order: organisation (admission decides under it) → run → audit head. Anyone the endpoint admits
    decides (member or higher, API key with runs:approve), the one who triggered the run included; one
    decision settles it. 409 run_not_awaiting_approval when the run left the gate meanwhile."""
    organization = admission.lock_organization(run.organization_id) if approved else None
    work = lock_run(run.pk)
    locked = work.run
    if not at_gate(locked) or locked.pause_requested_at is not None or locked.cancel_requested_at is not None:
        raise Conflict(
            "run_not_awaiting_approval",
            f"Run {locked.id} is {locked.status}: it is not waiting for approval.",
        )
    now = timezone.now()
    decision = _decision(actor, approved, note, now)
    data = {"gate": GATE, "env": locked.env, "step_id": None, "approved": approved,
            "outcome": "approved" if approved else "rejected"}  # fmt: skip
    starting: list[UnitOfWork] = []
    if approved:
        locked.status = RunStatus.QUEUED
        locked.pause_signal = None
        work.emit(EventType.RUN_QUEUED, data={"gate": GATE, "decision": decision})
        work.save()  # admission reads the queue from the table
        starting = admission.select_admissions(organization, work) if organization else [work]
    audit_record(  # after admission's run locks (lock order), before the run.failed of a rejection
        organization=locked.organization,
        event="run.approved" if approved else "run.rejected",
        actor=actor,
        target=("run", locked.id),
        data=data,
        note=note or None,
        run_id=locked.id,
    )
    if not approved:
        error = {
            "code": "approval_rejected",
            "message": f"The run was rejected by {actor.actor_id} at the approval gate of environment "
            f"'{locked.env}'" + (f": {note}" if note else "."),
            "step_id": None,
        }
        finish_run(work, RunStatus.FAILED, now=now, error=error)
        work.save()
    admission.start_admitted(starting)
    return locked


def input_problems(schema: dict | None, data) -> tuple[list[str], dict[str, list[str]]]:
    """(sentences, {field path: [messages]}) for each way `data` fails `schema`; both empty when valid."""
    if not schema:
        return [], {}
    errors = sorted(
        Draft202012Validator(schema).iter_errors(data), key=lambda e: [str(part) for part in e.absolute_path]
    )
    sentences = []
    for error in errors:
        path = ".".join(str(part) for part in error.absolute_path)
        sentences.append(f"data.{path}: {error.message}" if path else f"data: {error.message}")
    return sentences, field_errors(errors, root="data")


def field_errors(errors, *, root: str) -> dict[str, list[str]]:
    """{field path: [messages]} for jsonschema errors (`root` names a failure of the whole value); a
    missing required property is reported under its own path."""
    fields: dict[str, list[str]] = {}
    for error in errors:
        path = ".".join(str(part) for part in error.absolute_path)
        if error.validator == "required" and isinstance(error.instance, dict):
            for name in error.validator_value:
                if name not in error.instance:
                    key = f"{path}.{name}" if path else name
                    fields.setdefault(key, []).append("This field is required.")
            continue
        fields.setdefault(path or root, []).append(error.message)
    return fields


@transaction.atomic
def run_collect_inputs(*, run: Run, actor, data, step_id: str | None = None) -> Run:
    """Answer the run's step awaiting input (`step_id`, else the one the pause signal names) with `data`.

    `data` must match the step's `schema` (JSON Schema 2020-12), else Unprocessable invalid_input with
    `details.errors` (sentences) and `details.fields` ({path: [messages]}). The data becomes the step's
    output (the step is requeued) and the run is `running` again unless another step still waits; audited
    as `run.resumed` (`data.type` collect_inputs, the field names, never the values). Raises Conflict
    run_not_awaiting_input (nothing awaits input, or it was answered meanwhile), NotFound step_not_found."""
    work = lock_run(run.pk)
    locked = work.run
    row = _waiting_step(locked, StepStatus.AWAITING_INPUT, step_id, "run_not_awaiting_input", "input")
    sentences, fields = input_problems((row.input_data or {}).get("schema"), data)
    if sentences:
        raise Unprocessable(
            "invalid_input",
            f"The data does not match the input schema of step '{row.step_id}'.",
            details={"step_id": row.step_id, "errors": sentences, "fields": fields},
        )
    now = timezone.now()
    answer = {"outcome": "provided", "data": data, "by": actor.actor_id, "answered_at": iso(now)}
    person_answered(work, row, now, state=answer)
    audit_record(
        organization=locked.organization,
        event="run.resumed",
        actor=actor,
        target=("run", locked.id),
        data={
            "type": "collect_inputs",
            "step_id": row.step_id,
            "step_run_id": row.id,
            "fields": sorted(data) if isinstance(data, dict) else [],
        },
        run_id=locked.id,
    )
    work.save()
    return locked
