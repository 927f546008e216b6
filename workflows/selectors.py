"""Organisation-scoped reads. Another organisation's workflow or template is simply not found."""

from django.db.models import Q, QuerySet

from accounts.models import Organization
from config.errors import InvalidRequest, NotFound, not_found
from workflows import fastpaths
from workflows.models import Project, Schedule, Workflow, WorkflowTemplate, WorkflowVersion


def workflow_list(*, organization: Organization) -> QuerySet[Workflow]:
    """Every workflow of the organisation, archived ones included (the filterset hides them)."""
    return Workflow.objects.filter(organization=organization).select_related("project")


def workflow_get(
    *, organization: Organization, ref: str, project: bool = True, run_policy: bool = False
) -> Workflow:
    """The workflow whose id or slug is `ref` (slugs never contain `_`, so the two cannot clash).
    `project=False`: the project is not loaded with it (read on access), through the trigger's fast path;
    `run_policy` (with `project=False`): read with what starting a run needs of the organisation's security
    policy, as `workflow.run_policy` (workflows/fastpaths.py)."""
    by_id = ref.startswith("wf_")
    if project:
        lookup = Q(pk=ref) if by_id else Q(slug=ref)
        workflow = workflow_list(organization=organization).filter(lookup).first()
    else:
        lookup = fastpaths.workflow_by_id if by_id else fastpaths.workflow_by_slug
        workflow = lookup(organization.pk, ref, run_policy=run_policy)
    if workflow is None:
        raise not_found("workflow", ref)
    workflow.organization = organization  # it is this one (the filter): not read again on access
    return workflow


def parse_version_spec(raw, *, name: str = "version", default: str = "latest") -> str | int:
    """`latest`, `published` or a positive integer; anything else is a 400."""
    value = ("" if raw is None else str(raw).strip()) or default
    if value in ("latest", "published"):
        return value
    if value.isascii() and value.isdigit() and int(value) >= 1:
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
    version = fastpaths.version_by_number(workflow.pk, number)
    if version is None:
        raise NotFound("version_not_found", f"Workflow {workflow.id} has no version {number}.")
    return version


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


def projects_of(organization: Organization) -> QuerySet[Project]:
    return Project.objects.filter(organization=organization).order_by("name", "id")


def project_get(*, organization: Organization, project_id: str) -> Project:
    project = projects_of(organization).filter(pk=project_id).first()
    if project is None:
        raise not_found("project", project_id)
    return project


def schedule_list(*, organization: Organization, workflow: Workflow | None = None) -> QuerySet[Schedule]:
    """The organisation's schedules (of one workflow when given), oldest first."""
    queryset = Schedule.objects.filter(organization=organization)
    if workflow is not None:
        queryset = queryset.filter(workflow=workflow)
    return queryset.order_by("created_at", "id")


def schedule_get(*, organization: Organization, schedule_id: str) -> Schedule:
    schedule = schedule_list(organization=organization).filter(pk=schedule_id).first()
    if schedule is None:
        raise not_found("schedule", schedule_id)
    schedule.organization = organization
    return schedule
