"""Writes for workflows, their versions and templates. Every one runs in a transaction and records its
audit event in that same transaction; version numbers are taken under the workflow's row lock."""

import copy
import hashlib
import secrets

import rfc8785
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError
from django.utils import timezone
from django.utils.text import slugify

from accounts.models import Organization, Project
from accounts.services import project_create, project_delete, project_update  # noqa: F401 (written from here)
from audit.services import audit_record
from config.errors import Conflict, InvalidRequest, NotFound, Unprocessable
from workflows.choices import (
    MAX_CHANGE_SUMMARY_LENGTH,
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_CONCURRENCY_LIMIT,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    MAX_RETENTION_DAYS,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    RESERVED_SLUGS,
    SLUG_MAX_LENGTH,
    STATUS_TRANSITIONS,
    ConcurrencyPolicy,
    TriggerType,
    WorkflowStatus,
)
from workflows.definition import validate_definition
from workflows.models import Workflow, WorkflowTag, WorkflowTemplate, WorkflowVersion

UNTITLED = "Untitled workflow"
CREATE_STATUSES = (WorkflowStatus.DRAFT, WorkflowStatus.ACTIVE, WorkflowStatus.PAUSED)
METADATA_FIELDS = (
    "name",
    "description",
    "tags",
    "project",
    "concurrency",
    "retention_days",
    "webhook_enabled",
)


# ---------------------------------------------------------------------------------------------- rules


def definition_hash(definition) -> str:
    """SHA-256 of the RFC 8785 canonical JSON of a definition."""
    return hashlib.sha256(rfc8785.dumps(definition)).hexdigest()


def definition_errors(definition) -> list[str]:
    """Every problem of a definition as a sentence ([] when it may be saved)."""
    errors = list(validate_definition(definition))
    if not errors:
        try:
            rfc8785.dumps(definition)
        except (rfc8785.CanonicalizationError, TypeError, ValueError):
            errors.append("The definition contains a number that JSON cannot carry exactly (beyond ±2^53).")
    if not errors and isinstance(definition.get("name"), str) and len(definition["name"]) > MAX_NAME_LENGTH:
        errors.append(f"The workflow name must be at most {MAX_NAME_LENGTH} characters.")
    return errors


def _require_valid(definition) -> None:
    errors = definition_errors(definition)
    if errors:
        raise Unprocessable(
            "invalid_definition",
            f"The workflow definition is invalid: {errors[0]}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""),
            details={"errors": errors},
        )


def _name_of(definition: dict, fallback: str = UNTITLED) -> str:
    name = definition.get("name")
    return name.strip()[:MAX_NAME_LENGTH] if isinstance(name, str) and name.strip() else fallback


def _description_of(definition: dict, fallback: str = "") -> str:
    description = definition.get("description")
    return description if isinstance(description, str) else fallback


def _field_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", f"{field}: {message}", details={"fields": {field: [message]}})


def clean_tags(tags) -> list[str]:
    """Stripped, de-duplicated (order kept), at most MAX_TAGS tags of at most MAX_TAG_LENGTH characters."""
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise _field_error("tags", "Must be a list of strings.")
    cleaned: list[str] = []
    for tag in (tag.strip() for tag in tags):
        if not tag:
            raise _field_error("tags", "Tags may not be blank.")
        if len(tag) > MAX_TAG_LENGTH:
            raise _field_error("tags", f"Each tag is at most {MAX_TAG_LENGTH} characters.")
        if any(ord(ch) < 32 for ch in tag):
            raise _field_error("tags", "Tags may not contain control characters.")
        if tag not in cleaned:
            cleaned.append(tag)
    if len(cleaned) > MAX_TAGS:
        raise _field_error("tags", f"At most {MAX_TAGS} tags.")
    return cleaned


def clean_concurrency(value) -> dict | None:
    """`{"limit", "key", "on_limit"}` with defaults filled in, or None for no per-workflow limit."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _field_error("concurrency", 'Must be an object {"limit", "key", "on_limit"} or null.')
    unknown = sorted(set(value) - {"limit", "key", "on_limit"})
    if unknown:
        raise _field_error("concurrency", f"Unknown field(s): {', '.join(unknown)}.")
    limit = value.get("limit")
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_CONCURRENCY_LIMIT:
        raise _field_error("concurrency", f"'limit' must be an integer from 1 to {MAX_CONCURRENCY_LIMIT}.")
    key = value.get("key")
    if key is not None and (
        not isinstance(key, str) or not key.strip() or len(key) > MAX_CONCURRENCY_KEY_LENGTH
    ):
        raise _field_error(
            "concurrency",
            f"'key' must be null or a template of 1 to {MAX_CONCURRENCY_KEY_LENGTH} characters.",
        )
    on_limit = value.get("on_limit", ConcurrencyPolicy.QUEUE)
    if on_limit not in ConcurrencyPolicy.values:
        raise _field_error("concurrency", f"'on_limit' must be one of {', '.join(ConcurrencyPolicy.values)}.")
    return {"limit": limit, "key": key, "on_limit": str(on_limit)}


def clean_retention_days(value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_RETENTION_DAYS:
        raise _field_error("retention_days", f"Must be null or an integer from 1 to {MAX_RETENTION_DAYS}.")
    return value


def _project_in(organization: Organization, project_id) -> Project | None:
    if project_id in (None, ""):
        return None
    project = Project.objects.filter(organization=organization, pk=str(project_id)).first()
    if project is None:
        raise _field_error("project", f"Project {project_id} was not found.")
    return project


def _choice(field: str, value, choices) -> str:
    if value not in choices:
        raise _field_error(field, f"Must be one of {', '.join(choices)}.")
    return str(value)


def _slug_base(name: str) -> str:
    base = slugify(name).replace("_", "-").strip("-")[: SLUG_MAX_LENGTH - 8].strip("-")
    return base or "workflow"


def _free_slug(organization: Organization, name: str) -> str:
    """The first of base, base-2, base-3, … not taken in the organisation (underscores never appear,
    so a slug can never look like a `wf_` id)."""
    base = _slug_base(name)
    taken = set(
        Workflow.objects.filter(organization=organization, slug__startswith=base).values_list(
            "slug", flat=True
        )
    )
    taken |= RESERVED_SLUGS
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def _sync_tags(workflow: Workflow) -> None:
    WorkflowTag.objects.filter(workflow=workflow).exclude(name__in=workflow.tags).delete()
    have = set(WorkflowTag.objects.filter(workflow=workflow).values_list("name", flat=True))
    WorkflowTag.objects.bulk_create(
        [WorkflowTag(workflow=workflow, name=t) for t in workflow.tags if t not in have]
    )


def _locked(workflow: Workflow) -> Workflow:
    return Workflow.objects.select_for_update(of=("self",)).select_related("project").get(pk=workflow.pk)


def _refuse_archived(workflow: Workflow) -> None:
    if workflow.is_archived:
        raise Conflict("workflow_archived", f"Workflow {workflow.id} is archived; unarchive it first.")


def _add_version(workflow: Workflow, *, definition: dict, change_summary: str, actor) -> WorkflowVersion:
    """Append the next version to a workflow whose row the caller holds locked."""
    number = workflow.current_version + 1
    version = WorkflowVersion.objects.create(
        workflow=workflow,
        number=number,
        definition=definition,
        change_summary=(change_summary or "")[:MAX_CHANGE_SUMMARY_LENGTH],
        created_by=actor.actor_id,
        content_hash=definition_hash(definition),
    )
    workflow.current_version = number
    return version


def _clean_summary(change_summary) -> str:
    if change_summary is None:
        return ""
    if not isinstance(change_summary, str) or len(change_summary) > MAX_CHANGE_SUMMARY_LENGTH:
        raise _field_error(
            "change_summary", f"Must be text of at most {MAX_CHANGE_SUMMARY_LENGTH} characters."
        )
    return change_summary.strip()


# ------------------------------------------------------------------------------------------ workflows


@transaction.atomic
def workflow_create(
    *,
    organization: Organization,
    actor,
    definition: dict,
    trigger_type: str = TriggerType.API,
    tags: list[str] | None = None,
    project_id: str | None = None,
    status: str = WorkflowStatus.DRAFT,
    concurrency: dict | None = None,
    retention_days: int | None = None,
    webhook_enabled: bool = False,
    change_summary: str = "Created",
    audit_data: dict | None = None,
) -> Workflow:
    """Create a workflow and its version 1 from a valid definition (422 invalid_definition otherwise).
    Name and description come from the definition; the slug is derived from the name and made unique."""
    _require_valid(definition)
    fields = {
        "organization": organization,
        "project": _project_in(organization, project_id),
        "name": _name_of(definition),
        "description": _description_of(definition),
        "status": _choice("status", status, CREATE_STATUSES),
        "trigger_type": _choice("trigger_type", trigger_type, TriggerType.values),
        "tags": clean_tags(tags),
        "concurrency": clean_concurrency(concurrency),
        "retention_days": clean_retention_days(retention_days),
        "webhook_enabled": bool(webhook_enabled),
        "webhook_secret": secrets.token_hex(24),
        "created_by": actor.actor_id,
    }
    # Slug allocation is serialized per organisation (its row lock), so concurrent creates with one name
    # get base, base-2, … instead of racing; the unique constraint still backs it up.
    list(Organization.objects.select_for_update().filter(pk=organization.pk).values_list("pk", flat=True))
    try:
        with transaction.atomic():
            workflow = Workflow.objects.create(slug=_free_slug(organization, fields["name"]), **fields)
    except IntegrityError:
        raise Conflict(
            "conflict", "Another workflow took this slug at the same moment; retry the request."
        ) from None
    _add_version(workflow, definition=definition, change_summary=_clean_summary(change_summary), actor=actor)
    workflow.save(update_fields=["current_version"])
    _sync_tags(workflow)
    audit_record(
        organization=organization,
        event="workflow.created",
        actor=actor,
        target=("workflow", workflow.id),
        data={
            "name": workflow.name,
            "slug": workflow.slug,
            "version": 1,
            "status": workflow.status,
            **(audit_data or {}),
        },
    )
    return workflow


@transaction.atomic
def workflow_update(
    *, workflow: Workflow, actor, definition: dict, change_summary: str = "", base_version: int | None = None
) -> tuple[Workflow, bool]:
    """Save a new version (name and description follow the definition). Returns (workflow, created);
    a definition identical to the latest version creates nothing. `base_version` is a compare-and-set:
    when given and not the latest version, 409 version_conflict."""
    _require_valid(definition)
    summary = _clean_summary(change_summary)
    workflow = _locked(workflow)
    _refuse_archived(workflow)
    if base_version is not None and base_version != workflow.current_version:
        raise Conflict(
            "version_conflict",
            f"Workflow {workflow.id} is at version {workflow.current_version}, "
            f"not {base_version}; reload and apply your change again.",
            details={"current_version": workflow.current_version},
        )
    latest = workflow.versions.filter(number=workflow.current_version).first()
    if latest is not None and latest.content_hash == definition_hash(definition):
        return workflow, False
    version = _add_version(workflow, definition=definition, change_summary=summary, actor=actor)
    workflow.name = _name_of(definition, workflow.name)
    workflow.description = _description_of(definition, workflow.description)
    workflow.updated_at = timezone.now()
    workflow.save(update_fields=["current_version", "name", "description", "updated_at"])
    audit_record(
        organization=workflow.organization,
        event="workflow.updated",
        actor=actor,
        target=("workflow", workflow.id),
        data={"version": version.number, "change_summary": version.change_summary},
    )
    return workflow, True


@transaction.atomic
def workflow_update_metadata(*, workflow: Workflow, actor, changes: dict) -> Workflow:
    """Change metadata (name, description, tags, project, concurrency, retention_days, webhook_enabled)
    without a new version. Audits the fields that actually changed, old and new values."""
    unknown = sorted(set(changes) - set(METADATA_FIELDS))
    if unknown:
        raise _field_error(unknown[0], "This field cannot be changed here.")
    workflow = _locked(workflow)
    _refuse_archived(workflow)
    new: dict = {}
    if "name" in changes:
        name = changes["name"]
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_LENGTH:
            raise _field_error("name", f"Must be 1 to {MAX_NAME_LENGTH} characters.")
        new["name"] = name.strip()
    if "description" in changes:
        description = changes["description"] or ""
        if not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH:
            raise _field_error("description", f"Must be text of at most {MAX_DESCRIPTION_LENGTH} characters.")
        new["description"] = description
    if "tags" in changes:
        new["tags"] = clean_tags(changes["tags"])
    if "project" in changes:
        new["project"] = _project_in(workflow.organization, changes["project"])
    if "concurrency" in changes:
        new["concurrency"] = clean_concurrency(changes["concurrency"])
    if "retention_days" in changes:
        new["retention_days"] = clean_retention_days(changes["retention_days"])
    if "webhook_enabled" in changes:
        if not isinstance(changes["webhook_enabled"], bool):
            raise _field_error("webhook_enabled", "Must be true or false.")
        new["webhook_enabled"] = changes["webhook_enabled"]

    diff = {}
    for field, value in new.items():
        old = getattr(workflow, field)
        if old != value:
            as_json = (lambda p: p.id if p else None) if field == "project" else (lambda v: v)
            diff[field] = {"from": as_json(old), "to": as_json(value)}
            setattr(workflow, field, value)
    if diff:
        workflow.updated_at = timezone.now()
        workflow.save(update_fields=[*diff, "updated_at"])
        if "tags" in diff:
            _sync_tags(workflow)
        audit_record(
            organization=workflow.organization,
            event="workflow.updated",
            actor=actor,
            target=("workflow", workflow.id),
            data={"metadata": diff},
        )
    return workflow


def _move_status(workflow: Workflow, actor, status: str) -> Workflow:
    previous = workflow.status
    workflow.status = status
    workflow.updated_at = timezone.now()
    workflow.archived_at = workflow.updated_at if status == WorkflowStatus.ARCHIVED else None
    workflow.save(update_fields=["status", "updated_at", "archived_at"])
    if status == WorkflowStatus.ARCHIVED:
        event = "workflow.archived"
    elif previous == WorkflowStatus.ARCHIVED:
        event = "workflow.unarchived"
    else:
        event = "workflow.status_changed"
    audit_record(
        organization=workflow.organization,
        event=event,
        actor=actor,
        target=("workflow", workflow.id),
        data={"from": previous, "to": status},
    )
    return workflow


@transaction.atomic
def workflow_archive(*, workflow: Workflow, actor) -> Workflow:
    """Archive (soft delete): hidden from lists, runs refused; versions and runs kept. Idempotent."""
    workflow = _locked(workflow)
    if workflow.is_archived:
        return workflow
    return _move_status(workflow, actor, WorkflowStatus.ARCHIVED)


@transaction.atomic
def workflow_unarchive(*, workflow: Workflow, actor) -> Workflow:
    """Archived → draft; 409 workflow_not_archived for any other status."""
    workflow = _locked(workflow)
    if not workflow.is_archived:
        raise Conflict("workflow_not_archived", f"Workflow {workflow.id} is not archived.")
    return _move_status(workflow, actor, WorkflowStatus.DRAFT)


@transaction.atomic
def workflow_set_status(*, workflow: Workflow, actor, status: str) -> Workflow:
    """Move along STATUS_TRANSITIONS (same status: no change). 409 invalid_status_transition otherwise."""
    _choice("status", status, WorkflowStatus.values)
    workflow = _locked(workflow)
    if workflow.status == status:
        return workflow
    if not workflow.can_transition_to(status):
        hint = " Use POST /workflows/{ref}/unarchive first." if workflow.is_archived else ""
        raise Conflict(
            "invalid_status_transition",
            f"A workflow cannot go from {workflow.status} to {status}.{hint}",
            details={
                "from": workflow.status,
                "to": status,
                "allowed": sorted(STATUS_TRANSITIONS[workflow.status]),
            },
        )
    return _move_status(workflow, actor, status)


@transaction.atomic
def workflow_delete_permanent(*, workflow: Workflow, actor) -> None:
    """Delete an archived workflow with its versions for good (409 workflow_not_archived otherwise)."""
    workflow = _locked(workflow)
    if not workflow.is_archived:
        raise Conflict(
            "workflow_not_archived", f"Workflow {workflow.id} must be archived before it is deleted."
        )
    audit_record(
        organization=workflow.organization,
        event="workflow.deleted",
        actor=actor,
        target=("workflow", workflow.id),
        data={"name": workflow.name, "slug": workflow.slug, "versions": workflow.current_version},
    )
    try:
        with transaction.atomic():
            workflow.delete()
    except ProtectedError:
        raise Conflict(
            "workflow_in_use", f"Workflow {workflow.id} is still referenced and cannot be deleted."
        ) from None


def _version_number(workflow: Workflow, version) -> int:
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise _field_error("version", "Must be a positive integer.")
    if version > workflow.current_version:
        raise NotFound("version_not_found", f"Workflow {workflow.id} has no version {version}.")
    return version


@transaction.atomic
def workflow_publish(*, workflow: Workflow, actor, version: int | None = None) -> Workflow:
    """Make `version` (default: the latest) the one runs asking for `published` get."""
    workflow = _locked(workflow)
    _refuse_archived(workflow)
    number = workflow.current_version if version is None else _version_number(workflow, version)
    previous = workflow.published_version
    if previous != number:
        workflow.published_version = number
        workflow.updated_at = timezone.now()
        workflow.save(update_fields=["published_version", "updated_at"])
        audit_record(
            organization=workflow.organization,
            event="workflow.published",
            actor=actor,
            target=("workflow", workflow.id),
            data={"version": number, "previous": previous},
        )
    return workflow


@transaction.atomic
def workflow_rollback(*, workflow: Workflow, actor, version: int) -> Workflow:
    """A new version whose definition equals `version`'s (history is never rewritten)."""
    workflow = _locked(workflow)
    _refuse_archived(workflow)
    number = _version_number(workflow, version)
    target = workflow.versions.get(number=number)
    created = _add_version(
        workflow,
        definition=copy.deepcopy(target.definition),
        change_summary=f"Rolled back to version {number}",
        actor=actor,
    )
    workflow.name = _name_of(target.definition, workflow.name)
    workflow.description = _description_of(target.definition, workflow.description)
    workflow.updated_at = timezone.now()
    workflow.save(update_fields=["current_version", "name", "description", "updated_at"])
    audit_record(
        organization=workflow.organization,
        event="workflow.rolled_back",
        actor=actor,
        target=("workflow", workflow.id),
        data={"to_version": number, "version": created.number},
    )
    return workflow


def _renamed(definition: dict, name: str) -> dict:
    renamed = copy.deepcopy(definition)
    renamed["name"] = name
    return renamed


@transaction.atomic
def workflow_clone(*, workflow: Workflow, actor, name: str | None = None) -> Workflow:
    """A new draft with the latest definition and the metadata (webhooks off, new secret), named
    `name` or "<name> (Copy)"."""
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_LENGTH
    ):
        raise _field_error("name", f"Must be 1 to {MAX_NAME_LENGTH} characters.")
    source = workflow.versions.get(number=workflow.current_version)
    new_name = name.strip() if name else f"{workflow.name} (Copy)"[:MAX_NAME_LENGTH]
    return workflow_create(
        organization=workflow.organization,
        actor=actor,
        definition=_renamed(source.definition, new_name),
        trigger_type=workflow.trigger_type,
        tags=workflow.tags,
        project_id=workflow.project_id,
        concurrency=workflow.concurrency,
        retention_days=workflow.retention_days,
        change_summary=f"Cloned from {workflow.id} version {source.number}",
        audit_data={"cloned_from": workflow.id, "cloned_version": source.number},
    )


# ------------------------------------------------------------------------------------------ templates


@transaction.atomic
def template_install(
    *,
    template: WorkflowTemplate,
    organization: Organization,
    actor,
    name: str | None = None,
    project_id: str | None = None,
) -> Workflow:
    """A new draft workflow from a template (named `name`, else the template's definition name)."""
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_LENGTH
    ):
        raise _field_error("name", f"Must be 1 to {MAX_NAME_LENGTH} characters.")
    definition = copy.deepcopy(template.definition)
    if name:
        definition = _renamed(definition, name.strip())
    elif isinstance(definition, dict) and not _name_of(definition, ""):
        definition = _renamed(definition, template.name)
    workflow = workflow_create(
        organization=organization,
        actor=actor,
        definition=definition,
        project_id=project_id,
        change_summary=f"Installed from template {template.id}",
        audit_data={"template_id": template.id},
    )
    audit_record(
        organization=organization,
        event="template.installed",
        actor=actor,
        target=("workflow", workflow.id),
        data={"template_id": template.id, "template_name": template.name},
    )
    return workflow


@transaction.atomic
def template_save_from_workflow(
    *,
    workflow: Workflow,
    actor,
    name: str | None = None,
    description: str | None = None,
    category: str | None = None,
    version: int | None = None,
) -> WorkflowTemplate:
    """An organisation template holding the workflow's definition at `version` (default: latest)."""
    number = workflow.current_version if version is None else _version_number(workflow, version)
    source = workflow.versions.get(number=number)
    if name is not None and (
        not isinstance(name, str) or not name.strip() or len(name.strip()) > MAX_NAME_LENGTH
    ):
        raise _field_error("name", f"Must be 1 to {MAX_NAME_LENGTH} characters.")
    if description is not None and (
        not isinstance(description, str) or len(description) > MAX_DESCRIPTION_LENGTH
    ):
        raise _field_error("description", f"Must be text of at most {MAX_DESCRIPTION_LENGTH} characters.")
    if category is not None and (not isinstance(category, str) or len(category) > 50):
        raise _field_error("category", "Must be text of at most 50 characters.")
    template = WorkflowTemplate.objects.create(
        organization=workflow.organization,
        name=name.strip() if name else workflow.name,
        description=workflow.description if description is None else description,
        category=(category or "custom").strip() or "custom",
        definition=copy.deepcopy(source.definition),
        is_builtin=False,
        source_workflow_id=workflow.id,
        created_by=actor.actor_id,
    )
    audit_record(
        organization=workflow.organization,
        event="template.created",
        actor=actor,
        target=("template", template.id),
        data={"name": template.name, "workflow_id": workflow.id, "version": number},
    )
    return template


@transaction.atomic
def template_delete(*, template: WorkflowTemplate, actor) -> None:
    """Delete an organisation template (built-in ones are 409 template_builtin)."""
    if template.is_builtin:
        raise Conflict("template_builtin", f"Template {template.id} is built in and cannot be deleted.")
    audit_record(
        organization=template.organization,
        event="template.deleted",
        actor=actor,
        target=("template", template.id),
        data={"name": template.name},
    )
    template.delete()
