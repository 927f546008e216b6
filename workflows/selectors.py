"""Organisation-scoped reads. Another organisation's workflow or template is simply not found."""

from django.db.models import Q, QuerySet

from accounts.models import Organization
from accounts.selectors import project_get, projects_of  # noqa: F401 (projects are read from here)
from config import sql
from config.errors import InvalidRequest, NotFound, not_found
from workflows.models import Workflow, WorkflowTemplate, WorkflowVersion


def workflow_list(*, organization: Organization) -> QuerySet[Workflow]:
    """Every workflow of the organisation, archived ones included (the filterset hides them)."""
    return Workflow.objects.filter(organization=organization).select_related("project")


def workflow_get(*, organization: Organization, ref: str, project: bool = True) -> Workflow:
    """The workflow whose id or slug is `ref` (slugs never contain `_`, so the two cannot clash).
    `project=False`: the project is not loaded with it (read on access), and the query is one written once
    (every trigger looks its workflow up this way)."""
    by_id = ref.startswith("wf_")
    if project:
        lookup = Q(pk=ref) if by_id else Q(slug=ref)
        workflow = workflow_list(organization=organization).filter(lookup).first()
    else:
        workflow = (_WORKFLOW_BY_ID if by_id else _WORKFLOW_BY_SLUG).first(organization.pk, ref)
    if workflow is None:
        raise not_found("workflow", ref)
    workflow.organization = organization  # it is this one (the filter): not read again on access
    return workflow


# The lookups of every trigger (config/sql.py: compiled once).
_WORKFLOW_BY_ID = sql.Prepared(
    Workflow, lambda org, ref: Workflow.objects.filter(organization_id=org, pk=ref), arity=2
)
_WORKFLOW_BY_SLUG = sql.Prepared(
    Workflow, lambda org, ref: Workflow.objects.filter(organization_id=org, slug=ref), arity=2
)


def parse_version_spec(raw, *, name: str = "version", default: str = "latest") -> str | int:
    """`latest`, `published` or a positive integer; anything else is a 400."""
    value = default if raw is None or raw == "" else str(raw).strip()
    if value in ("latest", "published"):
        return value
    if value.isdigit() and int(value) >= 1:
        return int(value)
    raise InvalidRequest(
        "invalid_request",
        f"'{name}' must be latest, published or a version number.",
        details={"fields": {name: ["Must be latest, published or a positive integer."]}},
    )


def workflow_version_get(*, workflow: Workflow, spec: str | int) -> WorkflowVersion:
    """The version named by `spec` (see parse_version_spec); 404 version_not_found when absent."""
    if spec == "latest":
        number = workflow.current_version
    elif spec == "published":
        number = workflow.published_version
        if number is None:
            raise NotFound("version_not_found", f"Workflow {workflow.id} has no published version.")
    else:
        number = spec
    version = _VERSION.first(workflow.pk, number)
    if version is None:
        raise NotFound("version_not_found", f"Workflow {workflow.id} has no version {number}.")
    return version


# Read by every trigger: written once (config/sql.py).
_VERSION = sql.Select(WorkflowVersion, None, "{workflow_id} = %s AND {number} = %s")


def workflow_versions(*, workflow: Workflow) -> QuerySet[WorkflowVersion]:
    return WorkflowVersion.objects.filter(workflow=workflow).order_by("-number")


def template_list(*, organization: Organization) -> QuerySet[WorkflowTemplate]:
    """The built-in templates and the organisation's own."""
    return WorkflowTemplate.objects.filter(Q(organization__isnull=True) | Q(organization=organization))


def template_get(*, organization: Organization, template_id: str) -> WorkflowTemplate:
    template = template_list(organization=organization).filter(pk=template_id).first()
    if template is None:
        raise not_found("template", template_id)
    return template
