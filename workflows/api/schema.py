"""The OpenAPI description of the workflow, template and project endpoints, apart from the views: one
`extend_schema_view` per viewset, applied as its class decorator."""

from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view

from config.api.schema import BOOLEAN_QUERY_SCHEMA, VERSION_SPEC_SCHEMA, error_response, resource_schema
from workflows.api import serializers as s

VERSION_PARAM = OpenApiParameter(
    "version", VERSION_SPEC_SCHEMA, description="`latest` (default), `published` or a version number."
)
ERRORS = {
    400: OpenApiResponse(description="invalid_request"),
    404: OpenApiResponse(description="workflow_not_found / version_not_found"),
}


def _detail(summary: str, request, conflict: str) -> extend_schema:
    """An operation that answers the workflow's detail, or 409 `conflict`."""
    responses = {200: s.WorkflowDetailSerializer, 409: OpenApiResponse(description=conflict), **ERRORS}
    return extend_schema(summary=summary, request=request, responses=responses)


WORKFLOWS = extend_schema_view(
    list=extend_schema(summary="List workflows", responses=s.WorkflowSerializer(many=True)),
    destroy=extend_schema(summary="Archive a workflow (soft delete)", responses={204: None, **ERRORS}),
    create=extend_schema(
        summary="Create a workflow",
        request=s.WorkflowCreateSerializer,
        responses={
            201: s.WorkflowCreatedSerializer,
            422: OpenApiResponse(description="invalid_definition"),
            **ERRORS,
        },
    ),
    retrieve=extend_schema(
        summary="Get a workflow by id or slug",
        parameters=[VERSION_PARAM],
        responses={200: s.WorkflowDetailSerializer, **ERRORS},
    ),
    update=extend_schema(
        summary="Save a new version",
        request=s.WorkflowUpdateSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_archived / version_conflict"),
            422: OpenApiResponse(description="invalid_definition"),
            **ERRORS,
        },
    ),
    partial_update=_detail(
        "Change metadata (no new version)", s.WorkflowMetadataSerializer, "workflow_archived"
    ),
    unarchive=_detail("Unarchive (back to draft)", None, "workflow_not_archived"),
    permanent=extend_schema(
        summary="Delete an archived workflow for good (owner only)",
        request=None,
        responses={204: None, 409: OpenApiResponse(description="workflow_not_archived"), **ERRORS},
    ),
    set_status=_detail("Change the status", s.WorkflowStatusSerializer, "invalid_status_transition"),
    validate=extend_schema(
        summary="Validate a definition",
        request=s.WorkflowValidateSerializer,
        responses={200: s.ValidationResultSerializer, 400: OpenApiResponse(description="invalid_request")},
    ),
    versions=extend_schema(
        summary="List versions, newest first",
        filters=False,  # limit and offset only: the workflow list's filters do not apply
        responses={200: s.WorkflowVersionSerializer(many=True)},
    ),
    version_detail=extend_schema(
        summary="One version with its definition",
        responses={200: s.WorkflowVersionDetailSerializer, **ERRORS},
    ),
    diff=extend_schema(
        summary="Diff two versions",
        parameters=[
            OpenApiParameter(
                "v1",
                {"type": "string", "pattern": "^(latest|published|[1-9][0-9]{0,8})$"},
                required=True,
                description="Version number, `latest` or `published`.",
            ),
            OpenApiParameter(
                "v2", {"type": "string", "pattern": "^(latest|published|[1-9][0-9]{0,8})$"}, required=True
            ),
        ],
        responses={200: s.DiffSerializer, **ERRORS},
    ),
    rollback=_detail(
        "Roll back: a new version equal to an earlier one", s.RollbackSerializer, "workflow_archived"
    ),
    publish=_detail("Publish a version (default: the latest)", s.PublishSerializer, "workflow_archived"),
    clone=extend_schema(
        summary='Clone into a new draft ("<name> (Copy)")',
        request=s.CloneSerializer,
        responses={201: s.WorkflowCreatedSerializer, **ERRORS},
    ),
    input_schema=extend_schema(
        summary="The input JSON Schema",
        parameters=[VERSION_PARAM],
        responses={200: s.InputSchemaSerializer, **ERRORS},
    ),
    save_as_template=extend_schema(
        summary="Save as an organisation template",
        request=s.SaveAsTemplateSerializer,
        responses={201: s.TemplateCreatedSerializer, **ERRORS},
    ),
)

TEMPLATES = extend_schema_view(
    list=extend_schema(
        summary="List templates (built-in and the organisation's own)",
        parameters=[OpenApiParameter("is_builtin", BOOLEAN_QUERY_SCHEMA)],
    ),
    retrieve=extend_schema(summary="One template with its definition", responses=s.TemplateDetailSerializer),
    destroy=extend_schema(
        summary="Delete an organisation template",
        responses={204: None, 409: error_response("template_builtin: built-in templates cannot be deleted")},
    ),
    install=extend_schema(
        summary="Install a template as a new draft workflow",
        request=s.TemplateInstallSerializer,
        responses={
            201: s.TemplateInstalledSerializer,
            404: OpenApiResponse(description="template_not_found"),
            422: OpenApiResponse(description="invalid_definition"),
        },
    ),
)

PROJECTS = resource_schema(
    s.ProjectSerializer,
    create=s.ProjectCreateSerializer,
    update=s.ProjectUpdateSerializer,
    errors={
        "create": {409: "project_name_taken"},
        "retrieve": {404: "project_not_found"},
        "partial_update": {404: "project_not_found", 409: "project_name_taken"},
        "destroy": {404: "project_not_found"},
    },
)
