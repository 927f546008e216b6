"""Workflows and templates over HTTP: each handler parses input, calls one service or selector, and
renders the result. Lookups go through org-scoped selectors, so other organisations' objects are 404s."""

from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import status as http
from rest_framework import viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.choices import Role
from accounts.permissions import OWNER, WORKFLOWS_READ, WORKFLOWS_WRITE
from config.api.idempotency import idempotent
from config.api.schema import error_response
from config.errors import Forbidden, InvalidRequest, NotFound
from workflows import selectors, services
from workflows.api import serializers as s
from workflows.diff import definition_patch, definition_summary
from workflows.filtersets import WorkflowFilterSet, WorkflowTemplateFilterSet

VERSION_PARAM = OpenApiParameter(
    "version", OpenApiTypes.STR, description="`latest` (default), `published` or a version number."
)
ERRORS = {
    400: OpenApiResponse(description="invalid_request"),
    404: OpenApiResponse(description="workflow_not_found / version_not_found"),
}


def _body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


@extend_schema_view(
    list=extend_schema(summary="List workflows", responses=s.WorkflowSerializer(many=True)),
    destroy=extend_schema(summary="Archive a workflow (soft delete)", responses={204: None, **ERRORS}),
)
class WorkflowViewSet(viewsets.GenericViewSet):
    lookup_field = "ref"
    lookup_value_regex = "[^/]+"
    results_key = "workflows"
    max_limit = 200
    serializer_class = s.WorkflowSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = WorkflowFilterSet
    access = {
        "list": WORKFLOWS_READ,
        "create": WORKFLOWS_WRITE,
        "retrieve": WORKFLOWS_READ,
        "update": WORKFLOWS_WRITE,
        "partial_update": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
        "unarchive": WORKFLOWS_WRITE,
        # Owner-only, checked after the lookup so another organisation's workflow is a 404, not a 403.
        "permanent": WORKFLOWS_WRITE,
        "set_status": WORKFLOWS_WRITE,
        "validate": WORKFLOWS_READ,
        "versions": WORKFLOWS_READ,
        "version_detail": WORKFLOWS_READ,
        "diff": WORKFLOWS_READ,
        "rollback": WORKFLOWS_WRITE,
        "publish": WORKFLOWS_WRITE,
        "clone": WORKFLOWS_WRITE,
        "input_schema": WORKFLOWS_READ,
        "save_as_template": WORKFLOWS_WRITE,
    }

    def get_queryset(self):
        return selectors.workflow_list(organization=self.request.auth.organization)

    def get_object(self):
        return selectors.workflow_get(organization=self.request.auth.organization, ref=self.kwargs["ref"])

    def _detail(self, workflow, version=None) -> dict:
        version = version or selectors.workflow_version_get(workflow=workflow, spec="latest")
        context = {
            "version": version,
            "show_secret": self.request.auth.has_role(Role.ADMIN),
            "request": self.request,
        }
        return s.WorkflowDetailSerializer(workflow, context=context).data

    def list(self, request):
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(s.WorkflowSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a workflow",
        request=s.WorkflowCreateSerializer,
        responses={
            201: s.WorkflowCreatedSerializer,
            422: OpenApiResponse(description="invalid_definition"),
            **ERRORS,
        },
    )
    @idempotent
    def create(self, request):
        data = _body(s.WorkflowCreateSerializer, request)
        options = {
            name: data[name]
            for name in (
                "trigger_type",
                "tags",
                "status",
                "concurrency",
                "retention_days",
                "webhook_enabled",
                "change_summary",
            )
            if name in data
        }
        workflow = services.workflow_create(
            organization=request.auth.organization,
            actor=request.auth,
            definition=data["definition"],
            project_id=data.get("project"),
            **options,
        )
        return Response({"id": workflow.id, "workflow": self._detail(workflow)}, status=http.HTTP_201_CREATED)

    @extend_schema(
        summary="Get a workflow by id or slug",
        parameters=[VERSION_PARAM],
        responses={200: s.WorkflowDetailSerializer, **ERRORS},
    )
    def retrieve(self, request, ref=None):
        workflow = self.get_object()
        spec = selectors.parse_version_spec(request.query_params.get("version"))
        return Response(self._detail(workflow, selectors.workflow_version_get(workflow=workflow, spec=spec)))

    @extend_schema(
        summary="Save a new version",
        request=s.WorkflowUpdateSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_archived / version_conflict"),
            422: OpenApiResponse(description="invalid_definition"),
            **ERRORS,
        },
    )
    def update(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.WorkflowUpdateSerializer, request)
        workflow, _created = services.workflow_update(
            workflow=workflow,
            actor=request.auth,
            definition=data["definition"],
            change_summary=data.get("change_summary", ""),
            base_version=data.get("base_version"),
        )
        return Response(self._detail(workflow))

    @extend_schema(
        summary="Change metadata (no new version)",
        request=s.WorkflowMetadataSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_archived"),
            **ERRORS,
        },
    )
    def partial_update(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.WorkflowMetadataSerializer, request)
        workflow = services.workflow_update_metadata(
            workflow=workflow, actor=request.auth, changes=dict(data)
        )
        return Response(self._detail(workflow))

    def destroy(self, request, ref=None):
        services.workflow_archive(workflow=self.get_object(), actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Unarchive (back to draft)",
        request=None,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_not_archived"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def unarchive(self, request, ref=None):
        workflow = services.workflow_unarchive(workflow=self.get_object(), actor=request.auth)
        return Response(self._detail(workflow))

    @extend_schema(
        summary="Delete an archived workflow for good (owner only)",
        request=None,
        responses={204: None, 409: OpenApiResponse(description="workflow_not_archived"), **ERRORS},
    )
    @action(detail=True, methods=["delete"])
    def permanent(self, request, ref=None):
        workflow = self.get_object()
        _require_owner(request.auth)
        services.workflow_delete_permanent(workflow=workflow, actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Change the status",
        request=s.WorkflowStatusSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="invalid_status_transition"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["patch"], url_path="status")
    def set_status(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.WorkflowStatusSerializer, request)
        workflow = services.workflow_set_status(workflow=workflow, actor=request.auth, status=data["status"])
        return Response(self._detail(workflow))

    @extend_schema(
        summary="Validate a definition",
        request=s.WorkflowValidateSerializer,
        responses={200: s.ValidationResultSerializer, 400: OpenApiResponse(description="invalid_request")},
    )
    @action(detail=False, methods=["post"])
    def validate(self, request):
        data = _body(s.WorkflowValidateSerializer, request)
        errors = services.definition_errors(data["definition"])
        return Response({"valid": not errors, "errors": errors})

    @extend_schema(
        summary="List versions, newest first", responses={200: s.WorkflowVersionSerializer(many=True)}
    )
    @action(detail=True, methods=["get"])
    def versions(self, request, ref=None):
        workflow = self.get_object()
        self.results_key = "versions"
        page = self.paginate_queryset(selectors.workflow_versions(workflow=workflow))
        context = {"published_version": workflow.published_version}
        return self.get_paginated_response(s.WorkflowVersionSerializer(page, many=True, context=context).data)

    @extend_schema(
        summary="One version with its definition",
        responses={200: s.WorkflowVersionDetailSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[^/]+)")
    def version_detail(self, request, ref=None, number=None):
        workflow = self.get_object()
        version = selectors.workflow_version_get(
            workflow=workflow, spec=_version_in_path(number, workflow.id)
        )
        context = {"published_version": workflow.published_version}
        return Response(s.WorkflowVersionDetailSerializer(version, context=context).data)

    @extend_schema(
        summary="Diff two versions",
        parameters=[
            OpenApiParameter(
                "v1", OpenApiTypes.STR, required=True, description="Version number, `latest` or `published`."
            ),
            OpenApiParameter("v2", OpenApiTypes.STR, required=True),
        ],
        responses={200: s.DiffSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"])
    def diff(self, request, ref=None):
        workflow = self.get_object()
        specs = {}
        for name in ("v1", "v2"):
            if not request.query_params.get(name):
                raise InvalidRequest(
                    "invalid_request",
                    f"'{name}' is required.",
                    details={"fields": {name: ["This parameter is required."]}},
                )
            specs[name] = selectors.parse_version_spec(request.query_params[name], name=name)
        old = selectors.workflow_version_get(workflow=workflow, spec=specs["v1"])
        new = selectors.workflow_version_get(workflow=workflow, spec=specs["v2"])
        return Response(
            {
                "diff": definition_patch(old.definition, new.definition),
                "summary": definition_summary(old.definition, new.definition),
                "v1": old.number,
                "v2": new.number,
            }
        )

    @extend_schema(
        summary="Roll back: a new version equal to an earlier one",
        request=s.RollbackSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_archived"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def rollback(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.RollbackSerializer, request)
        workflow = services.workflow_rollback(workflow=workflow, actor=request.auth, version=data["version"])
        return Response(self._detail(workflow))

    @extend_schema(
        summary="Publish a version (default: the latest)",
        request=s.PublishSerializer,
        responses={
            200: s.WorkflowDetailSerializer,
            409: OpenApiResponse(description="workflow_archived"),
            **ERRORS,
        },
    )
    @action(detail=True, methods=["post"])
    def publish(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.PublishSerializer, request)
        workflow = services.workflow_publish(
            workflow=workflow, actor=request.auth, version=data.get("version")
        )
        return Response(self._detail(workflow))

    @extend_schema(
        summary='Clone into a new draft ("<name> (Copy)")',
        request=s.CloneSerializer,
        responses={201: s.WorkflowCreatedSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def clone(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.CloneSerializer, request)
        clone = services.workflow_clone(workflow=workflow, actor=request.auth, name=data.get("name"))
        return Response({"id": clone.id, "workflow": self._detail(clone)}, status=http.HTTP_201_CREATED)

    @extend_schema(
        summary="The input JSON Schema",
        parameters=[VERSION_PARAM],
        responses={200: s.InputSchemaSerializer, **ERRORS},
    )
    @action(detail=True, methods=["get"], url_path="input-schema")
    def input_schema(self, request, ref=None):
        workflow = self.get_object()
        spec = selectors.parse_version_spec(request.query_params.get("version"))
        version = selectors.workflow_version_get(workflow=workflow, spec=spec)
        return Response(
            {
                "workflow_id": workflow.id,
                "version": version.number,
                "schema": s.input_schema(version.definition),
            }
        )

    @extend_schema(
        summary="Save as an organisation template",
        request=s.SaveAsTemplateSerializer,
        responses={201: s.TemplateCreatedSerializer, **ERRORS},
    )
    @action(detail=True, methods=["post"], url_path="save-as-template")
    @idempotent
    def save_as_template(self, request, ref=None):
        workflow = self.get_object()
        data = _body(s.SaveAsTemplateSerializer, request)
        template = services.template_save_from_workflow(workflow=workflow, actor=request.auth, **data)
        return Response(
            {"template_id": template.id, "template": s.TemplateDetailSerializer(template).data},
            status=http.HTTP_201_CREATED,
        )


def _require_owner(principal) -> None:
    if principal.api_key is not None:
        raise Forbidden("forbidden", "Only an organisation owner may do this; API keys cannot.")
    if not principal.has_role(OWNER.role):
        raise Forbidden(
            "forbidden", f"This requires the {OWNER.role} role.", details={"required_role": OWNER.role}
        )


def _version_in_path(raw: str, workflow_id: str) -> int:
    if raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise NotFound("version_not_found", f"Workflow {workflow_id} has no version {raw}.")


@extend_schema_view(
    list=extend_schema(summary="List templates (built-in and the organisation's own)"),
    retrieve=extend_schema(summary="One template with its definition", responses=s.TemplateDetailSerializer),
    destroy=extend_schema(summary="Delete an organisation template", responses={204: None}),
)
class TemplateViewSet(viewsets.GenericViewSet):
    results_key = "templates"
    max_limit = 200
    serializer_class = s.TemplateSerializer
    filter_backends = [DjangoFilterBackend]
    filterset_class = WorkflowTemplateFilterSet
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "install": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
    }

    def get_queryset(self):
        return selectors.template_list(organization=self.request.auth.organization)

    def get_object(self):
        return selectors.template_get(
            organization=self.request.auth.organization, template_id=self.kwargs["pk"]
        )

    def list(self, request):
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(s.TemplateSerializer(page, many=True).data)

    def retrieve(self, request, pk=None):
        return Response(s.TemplateDetailSerializer(self.get_object()).data)

    def destroy(self, request, pk=None):
        services.template_delete(template=self.get_object(), actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)

    @extend_schema(
        summary="Install a template as a new draft workflow",
        request=s.TemplateInstallSerializer,
        responses={
            201: s.TemplateInstalledSerializer,
            404: OpenApiResponse(description="template_not_found"),
            422: OpenApiResponse(description="invalid_definition"),
        },
    )
    @action(detail=True, methods=["post"])
    @idempotent
    def install(self, request, pk=None):
        template = self.get_object()
        data = _body(s.TemplateInstallSerializer, request)
        workflow = services.template_install(
            template=template,
            organization=request.auth.organization,
            actor=request.auth,
            name=data.get("name"),
            project_id=data.get("project"),
        )
        version = selectors.workflow_version_get(workflow=workflow, spec="latest")
        context = {"version": version, "show_secret": request.auth.has_role(Role.ADMIN)}
        body = {
            "workflow_id": workflow.id,
            "workflow": s.WorkflowDetailSerializer(workflow, context=context).data,
        }
        return Response(body, status=http.HTTP_201_CREATED)


# --- projects -------------------------------------------------------------------------------


@extend_schema_view(
    list=extend_schema(responses={200: s.ProjectSerializer(many=True)}),
    create=extend_schema(
        request=s.ProjectCreateSerializer,
        responses={201: s.ProjectSerializer, 409: error_response("project_name_taken")},
    ),
    retrieve=extend_schema(responses={200: s.ProjectSerializer, 404: error_response("project_not_found")}),
    partial_update=extend_schema(
        request=s.ProjectUpdateSerializer,
        responses={
            200: s.ProjectSerializer,
            404: error_response("project_not_found"),
            409: error_response("project_name_taken"),
        },
    ),
    destroy=extend_schema(responses={204: None, 404: error_response("project_not_found")}),
)
class ProjectViewSet(viewsets.GenericViewSet):
    serializer_class = s.ProjectSerializer
    results_key = "projects"
    lookup_value_regex = r"[^/]+"
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "create": WORKFLOWS_WRITE,
        "partial_update": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
    }

    def get_queryset(self):
        return selectors.projects_of(self.request.auth.organization)

    def get_object(self):
        return selectors.project_get(
            organization=self.request.auth.organization, project_id=self.kwargs["pk"]
        )

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ProjectSerializer(page, many=True).data)

    @idempotent
    def create(self, request):
        data = _body(s.ProjectCreateSerializer, request)
        project = services.project_create(organization=request.auth.organization, actor=request.auth, **data)
        return Response(s.ProjectSerializer(project).data, status=http.HTTP_201_CREATED)

    def retrieve(self, request, pk):
        return Response(s.ProjectSerializer(self.get_object()).data)

    def partial_update(self, request, pk):
        project = self.get_object()
        data = _body(s.ProjectUpdateSerializer, request)
        project = services.project_update(project=project, actor=request.auth, **data)
        return Response(s.ProjectSerializer(project).data)

    def destroy(self, request, pk):
        services.project_delete(project=self.get_object(), actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)
