"""Triggering runs: check the input, the workflow's concurrency limits and the quota, create the run and
its step runs, and start it when it fits (runs/concurrency.py)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from contextlib import nullcontext

from django.db import transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from accounts.selectors import organization_has_llm_provider
from audit.services import audit_record
from config import sql
from config.errors import Conflict, InvalidRequest, Unprocessable, not_found
from config.ids import new_id
from config.instances import new
from runs import concurrency as admission
from runs import fastpaths, quotas
from runs.choices import EventType, RunStatus, RunTrigger
from runs.engine.advance import first_advance
from runs.engine.control import run_request_cancel
from runs.engine.dispatch import dispatch
from runs.engine.unit_of_work import UnitOfWork
from runs.models import Run, RunFile, StepRun
from runs.services.approvals import environment_gate, field_errors, gate_event
from runs.services.files import Upload, remove_files, store_upload
from workflows.choices import WorkflowStatus
from workflows.definition import input_schema
from workflows.models import Workflow, WorkflowVersion
from workflows.selectors import workflow_version_get


def input_errors(definition: dict, input_data, *, version: WorkflowVersion | None = None) -> list[str]:
    """Sentences for each way `input_data` fails the workflow's input schema (empty when valid). `version`:
    the saved version whose definition this is, whose validator is then made once per process."""
    validator = _validator(version) if version is not None and version.pk is not None else None
    if validator is None:
        validator = Draft202012Validator(input_schema(definition))
    errors = []
    for error in sorted(validator.iter_errors(input_data), key=lambda e: list(e.absolute_path)):
        where = ".".join(str(part) for part in error.absolute_path)
        errors.append(f"input.{where}: {error.message}" if where else f"input: {error.message}")
    return errors


# A version's definition never changes (workflows/models.py): its input schema's validator is made once.
_VALIDATORS: dict[tuple[int, str], Draft202012Validator] = {}
VALIDATORS_MAX = 1024


def _validator(version: WorkflowVersion) -> Draft202012Validator:
    key = (version.pk, version.content_hash)
    validator = _VALIDATORS.get(key)
    if validator is None:
        if len(_VALIDATORS) >= VALIDATORS_MAX:
            _VALIDATORS.clear()
        validator = _VALIDATORS[key] = Draft202012Validator(input_schema(version.definition))
    return validator


@transaction.atomic
def run_create(
    *,
    workflow: Workflow,
    actor,
    version: WorkflowVersion | None = None,
    input_data: dict | None = None,
    metadata: dict | None = None,
    env: str | None = None,
    dry_run: bool = False,
    trigger: str = RunTrigger.API,
    parent_run: Run | None = None,
    parent_step_run_id: str | None = None,
    model: str = "",
    reuse: Mapping[str, StepRun] | None = None,
    audit_data: dict | None = None,
) -> Run:
    """Create a run of `version` (default: the latest) with one pending step run per step, record
    `run_queued` and `run.triggered`, and start it when it fits the concurrency limits (else it stays
    `queued` until admission starts it; ready steps are dispatched after commit). See runs/concurrency.py.
    A run in an environment the security policy gates waits `awaiting_approval` instead, with
    `run_awaiting_approval` (the environment gate, runs/services/approvals.py).

    Raises Unprocessable("invalid_input") when the input fails the workflow's input schema or the
    concurrency key cannot be rendered, Conflict("workflow_already_running") when the workflow's limit is
    reached and its policy is `reject`, QuotaExceeded("quota_exceeded") when the organisation's monthly run
    limit (or, for a workflow with agent steps, token quota) is used up — every run counts, dry runs and
    sub-workflow runs included (runs/quotas.py). Call it without holding a run lock (lock order:
    organisation first)."""
    if version is None:
        version = WorkflowVersion.objects.get(workflow=workflow, number=workflow.current_version)
    definition = version.definition
    input_data = {} if input_data is None else input_data
    metadata = metadata or {}
    errors = input_errors(definition, input_data, version=version)
    if errors:
        raise Unprocessable("invalid_input", "The run input does not match the workflow's input schema.",
                            details={"errors": errors})  # fmt: skip
    limit = admission.policy(workflow.concurrency)
    key = admission.concurrency_key(limit, input_data=input_data, env=env, metadata=metadata, trigger=trigger)
    # The environment gate (approvals.py): such a run waits for an approval; admission never sees it.
    gate = environment_gate(
        workflow.organization_id, env, dry_run=dry_run, parent_step_run_id=parent_step_run_id
    )
    agents = uses_agents(definition.get("steps"))
    # The organisation's row lock serializes every decision that counts runs: the quota and the cap on runs
    # at once (runs/quotas.py, runs/concurrency.py). A workflow's concurrency limit reads its group's runs
    # under it before this run exists; otherwise it is taken after this run's rows are written, so that
    # concurrent triggers hold it for less, and not at all when nothing needs counting (`_counted`).
    organization = None
    if limit:
        organization = admission.lock_organization(workflow.organization_id)  # the first lock (lock order)
        quotas.check_trigger_quota(organization, uses_agents=agents)  # exact under the lock; 402
    victims: list[str] = []
    if limit:
        active = list(
            admission.group_runs(workflow.id, limit, key)
            .filter(status__in=admission.ACTIVE)
            .order_by("created_at", "id")
            .values_list("id", "cancel_requested_at")
        )
        if limit["on_limit"] == "reject" and len(active) >= limit["limit"]:
            raise Conflict(
                "workflow_already_running",
                f"Workflow {workflow.id} already has {len(active)} active run(s)"
                f"{' for this concurrency key' if limit.get('key') is not None else ''} "
                f"(limit {limit['limit']}).",
            )
        if limit["on_limit"] == "cancel_running":
            candidates = [run_id for run_id, cancel_requested_at in active if cancel_requested_at is None]
            victims = candidates[: max(0, len(candidates) + 1 - limit["limit"])]
    run = new(
        Run,
        organization_id=workflow.organization_id,
        workflow=workflow,
        workflow_version=version,
        definition_hash=version.content_hash,
        trigger=trigger,
        input_data=input_data,
        metadata=metadata,
        env=env,
        dry_run=dry_run,
        model=model or "",
        concurrency_key=key,
        parent_run=parent_run,
        parent_step_run_id=parent_step_run_id,
        triggered_by=actor.actor_id,
        triggered_by_type=actor.actor_type,
        status=RunStatus.AWAITING_APPROVAL if gate else RunStatus.QUEUED,
        pause_signal=gate,
    )
    reuse = reuse or {}
    rows = [
        _reused(run, step, reuse[step["id"]])
        if step["id"] in reuse
        else new(StepRun, run=run, step_id=step["id"], type=step["type"], name=step.get("name", ""))
        for step in definition["steps"]
    ]
    work = UnitOfWork(run)
    if gate:
        gate_event(work, gate, workflow_version=version.number)
    else:
        work.emit(EventType.RUN_QUEUED, data={"workflow_version": version.number})
    counted = not limit and _counted(workflow, agents)
    if not (limit or counted or gate or reuse):
        # Nothing counts this run and nothing holds it back: admitted at once. When its first advance only
        # starts it and queues steps, it is made before the rows are written, which are then written as the
        # advance left them, with the first events (on PostgreSQL one statement where there were five).
        # The policy as the trigger read it with the workflow, if it did (workflows/selectors.py).
        policy = getattr(workflow, "run_policy", None)
        ready = first_advance(work, {row.step_id: row for row in rows}, policy)
        if ready is not None:
            dispatch([row.id for row in ready])
            # The rows go with the last writes and the COMMIT (on PostgreSQL one round trip for all).
            with sql.pipeline(commit=True):
                fastpaths.insert_started_run(run, rows, work.take_events())
                return _finish_create(workflow, version, run, rows, actor, trigger, dry_run, audit_data, ())
    fastpaths.insert_run(run, rows)
    if counted:
        # This run's rows take no lock another transaction waits for (its foreign keys' KEY SHARE locks
        # do not conflict with the organisation lock's NO KEY UPDATE), and none of its runs sees them.
        organization = admission.lock_organization(workflow.organization_id)
        quotas.check_trigger_quota(  # exact under the lock; 402
            organization, uses_agents=agents, now=run.created_at, created=1
        )
    # Every run lock comes before the first audit append (lock order: organisation → runs → audit head).
    now = timezone.now()
    cancelled = []
    victims_locked = (  # no queryset built when there is none (most triggers): it costs more than it reads
        Run.objects.select_for_update().filter(pk__in=victims).order_by("created_at", "id") if victims else ()
    )
    for victim in victims_locked:
        if victim.is_terminal or victim.cancel_requested_at is not None:
            continue
        victim_work = UnitOfWork(victim)
        run_request_cancel(victim_work, now)  # finished here when no step runs: its slot frees at once
        victim_work.save()
        cancelled.append(victim)
    starting = [] if gate else admission.select_admissions(organization, work) if organization else [work]
    if not any(started is work for started in starting):
        work.save()  # an admitted run is saved by start_admitted, its two events in one insert
    admission.start_admitted(starting, created_rows={run.id: {row.step_id: row for row in rows}})
    return _finish_create(workflow, version, run, rows, actor, trigger, dry_run, audit_data, cancelled)


def _finish_create(workflow, version, run, rows, actor, trigger, dry_run, audit_data, cancelled) -> Run:
    """run_create's last writes: the workflow's `last_run_at` and the audit events."""
    workflow.last_run_at = run.created_at
    # Last, the writes whose row locks every other trigger of this workflow (its `last_run_at`) or of this
    # organisation (the audit chain's head) waits for: on PostgreSQL sent with the COMMIT, in one round trip,
    # when this is the outermost transaction (config/sql.py `pipeline`).
    with sql.pipeline(commit=True):
        fastpaths.save_workflow_last_run(workflow)
        audit_record(
            organization=workflow.organization_id,
            event="run.triggered",
            actor=actor,
            target=("run", run.id),
            data={
                "workflow_id": workflow.id,
                "version": version.number,
                "trigger": trigger,
                "dry_run": dry_run,
                **(audit_data or {}),
            },
            run_id=run.id,
            defer=True,
        )
        for victim in cancelled:
            audit_record(
                organization=workflow.organization_id,
                event="run.cancelled",
                actor=actor,
                target=("run", victim.id),
                data={"reason": "concurrency_limit", "replaced_by": run.id},
                note=f"Cancelled by {run.id}: the workflow's concurrency limit (on_limit: cancel_running).",
                run_id=victim.id,
                defer=True,
            )
    run.created_steps = rows  # as the advance left them: the trigger's response is written from them
    return run


def _counted(workflow: Workflow, agents: bool) -> bool:
    """Whether creating a run of `workflow` counts runs under the organisation's lock: it has a cap on runs at
    once or a monthly run limit, or a token quota and agent steps. Read from the organisation as the caller
    has it (the request's authentication read it moments before); when the caller has not loaded it, the
    lock is taken and the limits are read under it."""
    organization = workflow.organization if Workflow.organization.is_cached(workflow) else None
    if organization is None or organization.pk != workflow.organization_id:
        return True
    return (
        organization.max_concurrent_runs is not None
        or organization.monthly_run_limit is not None
        or (agents and organization.monthly_token_quota is not None)
    )


def _reused(run: Run, step: dict, source: StepRun) -> StepRun:
    """A rerun's step that keeps the outcome recorded by the run it reruns (not executed again)."""
    return StepRun(
        run=run,
        step_id=step["id"],
        type=step["type"],
        name=step.get("name", ""),
        status=source.status,
        skip_reason=source.skip_reason,
        input_data=source.input_data,
        output_data=source.output_data,
        started_at=source.started_at,
        completed_at=source.completed_at,
        state={"reused_from": source.id},
    )


def uses_agents(steps: Iterable) -> bool:
    """Whether any step (inline loop steps included, at any depth) is an `agent_task`."""
    for step in steps or ():
        if not isinstance(step, Mapping):
            continue
        if step.get("type") == "agent_task":
            return True
        inline = (step.get("config") or {}).get("step") if step.get("type") == "loop" else None
        if isinstance(inline, Mapping) and uses_agents([inline]):
            return True
    return False


def _schema_types(definition: dict, name: str) -> set[str]:
    prop = (input_schema(definition).get("properties") or {}).get(name)
    if not isinstance(prop, Mapping):
        return set()
    declared = prop.get("type")
    if isinstance(declared, str):
        return {declared}
    return {t for t in declared if isinstance(t, str)} if isinstance(declared, list) else set()


def _json_type(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    return {dict: "object", list: "array", str: "string"}.get(type(value), "unknown")


def form_input(definition: dict, fields: Mapping[str, str]) -> dict:
    """Form fields as input values. A value stays a string unless the input schema declares that
    property without `string` and the value parses as JSON of a declared type (`"3"` for an integer
    becomes 3, `"[1,2]"` for an array a list)."""
    values: dict = {}
    for name, raw in fields.items():
        types = _schema_types(definition, name)
        value = raw
        if types and "string" not in types:
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = None
            else:
                kind = _json_type(parsed)
                if kind in types or (kind == "integer" and "number" in types):
                    value = parsed
        values[name] = value
    return values


def run_trigger(
    *,
    workflow: Workflow,
    actor,
    version_spec: str | int = "latest",
    input_data: dict | None = None,
    form_fields: Mapping[str, str] | None = None,
    upload: Upload | None = None,
    metadata: dict | None = None,
    env: str | None = None,
    dry_run: bool = False,
    model: str = "",
    trigger: str = RunTrigger.API,
) -> Run:
    """Trigger a run from the API (or an inbound webhook: `trigger`): check the workflow can run (404
    archived, 409 paused), pick the version, check the LLM provider and the monthly quota, store the
    attachment, and create the run (runs.services.run_create). Either everything is written or nothing
    is: a failed creation removes the stored file."""
    if workflow.status == WorkflowStatus.ARCHIVED:
        raise not_found("workflow", workflow.id)
    if workflow.status == WorkflowStatus.PAUSED:
        raise Conflict("workflow_disabled", f"Workflow {workflow.id} is paused: activate it to trigger runs.")
    version = workflow_version_get(workflow=workflow, spec=version_spec)
    organization = workflow.organization
    if uses_agents(version.definition.get("steps")) and not organization_has_llm_provider(organization):
        raise InvalidRequest(
            "no_llm_provider",
            "This workflow has agent steps and the organisation has no LLM provider: add one first.",
        )
    # An early 402 (before an attachment is stored); run_create checks again under the organisation lock.
    quotas.check_trigger_quota(organization, uses_agents=uses_agents(version.definition.get("steps")))

    values = dict(input_data or {})
    if form_fields:
        for name, value in form_input(version.definition, form_fields).items():
            if name in values:
                raise InvalidRequest(
                    "invalid_request",
                    f"Input '{name}' is given twice (as a form field and in the input object).",
                    details={"fields": {name: ["Given twice."]}},
                )
            values[name] = value
    if upload is not None and "attachment" in values:
        raise InvalidRequest(
            "invalid_request",
            "The input already has an 'attachment' value; it is reserved for the uploaded file.",
            details={"fields": {"attachment": ["Reserved for the uploaded file."]}},
        )

    stored = None
    file_id = new_id("file")
    if upload is not None:
        stored = store_upload(organization.id, file_id, upload)
    try:
        # The file's row joins the run's transaction; without one, run_create's own is the transaction (an
        # outer one would only add a savepoint: two more round trips per trigger).
        with transaction.atomic() if stored is not None else nullcontext():
            if stored is not None:
                storage_path, sha256, size = stored
                values["attachment"] = {
                    "file_id": file_id,
                    "name": upload.name,
                    "size": size,
                    "content_type": upload.content_type,
                    "sha256": sha256,
                }
            try:
                run = run_create(
                    workflow=workflow,
                    actor=actor,
                    version=version,
                    input_data=values,
                    metadata=metadata,
                    env=env,
                    dry_run=dry_run,
                    model=model,
                    trigger=trigger,
                )
            except Unprocessable as exc:
                raise _with_field_errors(exc, version.definition, values) from None
            if stored is not None:
                RunFile.objects.create(
                    id=file_id,
                    run=run,
                    organization=organization,
                    name=upload.name,
                    size=size,
                    content_type=upload.content_type,
                    sha256=sha256,
                    storage_path=storage_path,
                )
    except BaseException:
        if stored is not None:
            remove_files([stored[0]])
        raise
    return run


def _with_field_errors(exc: Unprocessable, definition: dict, values: dict) -> Unprocessable:
    """invalid_input with `details.fields` ({input path: [messages]}) next to run_create's sentences."""
    if exc.code != "invalid_input":
        return exc
    fields = field_errors(Draft202012Validator(input_schema(definition)).iter_errors(values), root="input")
    details = {**(exc.details or {}), "fields": fields}
    return Unprocessable(exc.code, exc.message, details=details)
