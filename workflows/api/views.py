"""Workflows, templates and projects over HTTP: each handler parses input, calls one service or selector, and
renders the result. Lookups go through org-scoped selectors, so other organisations' objects are 404s."""

from rest_framework import status as http
from rest_framework.decorators import action
from rest_framework.response import Response

from accounts.choices import Role
from accounts.permissions import OWNER, WORKFLOWS_READ, WORKFLOWS_WRITE
from config.api.idempotency import idempotent
from config.api.parsing import invalid_parameter
from config.api.permissions import require_access
from config.api.viewsets import (
    DestroyMixin,
    ListMixin,
    OrganizationModelViewSet,
    OrganizationViewSet,
    Resource,
    RetrieveMixin,
    UpdateMixin,
)
from config.errors import NotFound
from workflows import selectors, services
from workflows.api import schema
from workflows.api import serializers as s
from workflows.diff import definition_patch, definition_summary
from workflows.filtersets import WorkflowFilterSet, WorkflowTemplateFilterSet

# Options of POST /workflows passed to the service as they are.
CREATE_OPTIONS = (
    "trigger_type",
    "tags",
    "status",
    "concurrency",
    "retention_days",
    "webhook_enabled",
    "change_summary",
)


@schema.WORKFLOWS
class WorkflowViewSet(ListMixin, UpdateMixin, DestroyMixin, OrganizationViewSet):
    lookup_field = "ref"
    resource = Resource(
        "workflow",
        list=selectors.workflow_list,
        get=selectors.workflow_get,
        destroy=services.workflow_archive,
    )
    serializer_class = s.WorkflowSerializer
    filterset_class = WorkflowFilterSet
    input_serializers = {
        "create": s.WorkflowCreateSerializer,
        "update": s.WorkflowUpdateSerializer,
        "partial_update": s.WorkflowMetadataSerializer,
        "set_status": s.WorkflowStatusSerializer,
        "validate": s.WorkflowValidateSerializer,
        "rollback": s.RollbackSerializer,
        "publish": s.PublishSerializer,
        "clone": s.CloneSerializer,
        "save_as_template": s.SaveAsTemplateSerializer,
    }
    access = {
        **dict.fromkeys(("list", "retrieve", "versions", "version_detail"), WORKFLOWS_READ),
        **dict.fromkeys(("validate", "diff", "input_schema"), WORKFLOWS_READ),
        **dict.fromkeys(("create", "update", "partial_update", "destroy"), WORKFLOWS_WRITE),
        **dict.fromkeys(("unarchive", "set_status", "rollback", "publish"), WORKFLOWS_WRITE),
        **dict.fromkeys(("clone", "save_as_template"), WORKFLOWS_WRITE),
        # Owner-only, checked after the lookup so another organisation's workflow is a 404, not a 403.
        "permanent": WORKFLOWS_WRITE,
    }

    @property
    def results_key(self) -> str:  # read by the paginator and the schema generator
        return "versions" if getattr(self, "action", None) == "versions" else "workflows"

    def render(self, instance, *, many: bool = False):
        """A page of workflows (metadata only), or one workflow at its latest version."""
        return super().render(instance, many=True) if many else self._detail(instance)

    def _detail(self, workflow, version=None) -> dict:
        version = version or selectors.workflow_version_get(workflow=workflow, spec="latest")
        context = {
            "version": version,
            "show_secret": self.actor.has_role(Role.ADMIN),
            "request": self.request,
        }
        return s.WorkflowDetailSerializer(workflow, context=context).data

    def _version(self, workflow, param: str = "version"):
        spec = selectors.parse_version_spec(self.request.query_params.get(param))
        return selectors.workflow_version_get(workflow=workflow, spec=spec)

    @idempotent
    def create(self, request):
        data = self.validated_input()
        workflow = services.workflow_create(
            organization=self.organization,
            actor=self.actor,
            definition=data["definition"],
            project_id=data.get("project"),
            **{name: data[name] for name in CREATE_OPTIONS if name in data},
        )
        return Response({"id": workflow.id, "workflow": self.render(workflow)}, status=http.HTTP_201_CREATED)

    def retrieve(self, request, ref=None):
        workflow = self.get_object()
        return Response(self._detail(workflow, self._version(workflow)))

    def update(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        workflow, _created = services.workflow_update(
            workflow=workflow,
            actor=self.actor,
            definition=data["definition"],
            change_summary=data.get("change_summary", ""),
            base_version=data.get("base_version"),
        )
        return Response(self.render(workflow))

    def perform_update(self, workflow, data):
        return services.workflow_update_metadata(workflow=workflow, actor=self.actor, changes=dict(data))

    @action(detail=True, methods=["post"])
    def unarchive(self, request, ref=None):
        workflow = services.workflow_unarchive(workflow=self.get_object(), actor=self.actor)
        return Response(self.render(workflow))

    @action(detail=True, methods=["delete"])
    def permanent(self, request, ref=None):
        workflow = self.get_object()
        require_access(self.actor, OWNER)
        services.workflow_delete_permanent(workflow=workflow, actor=self.actor)
        return Response(status=http.HTTP_204_NO_CONTENT)

    @action(detail=True, methods=["patch"], url_path="status")
    def set_status(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        workflow = services.workflow_set_status(workflow=workflow, actor=self.actor, status=data["status"])
        return Response(self.render(workflow))

    @action(detail=False, methods=["post"])
    def validate(self, request):
        errors = services.definition_errors(self.validated_input()["definition"])
        return Response({"valid": not errors, "errors": errors})

    @action(detail=True, methods=["get"])
    def versions(self, request, ref=None):
        workflow = self.get_object()
        page = self.paginate_queryset(selectors.workflow_versions(workflow=workflow))
        context = {"published_version": workflow.published_version}
        return self.get_paginated_response(s.WorkflowVersionSerializer(page, many=True, context=context).data)

    @action(detail=True, methods=["get"], url_path=r"versions/(?P<number>[^/]+)")
    def version_detail(self, request, ref=None, number=None):
        workflow = self.get_object()
        version = selectors.workflow_version_get(
            workflow=workflow, spec=_version_in_path(number, workflow.id)
        )
        context = {"published_version": workflow.published_version}
        return Response(s.WorkflowVersionDetailSerializer(version, context=context).data)

    @action(detail=True, methods=["get"])
    def diff(self, request, ref=None):
        workflow = self.get_object()
        for name in ("v1", "v2"):
            if not request.query_params.get(name):
                raise invalid_parameter(name, "This parameter is required.", summary=f"'{name}' is required.")
        specs = {
            name: selectors.parse_version_spec(request.query_params[name], name=name) for name in ("v1", "v2")
        }
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

    @action(detail=True, methods=["post"])
    @idempotent  # creates a version
    def rollback(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        workflow = services.workflow_rollback(workflow=workflow, actor=self.actor, version=data["version"])
        return Response(self.render(workflow))

    @action(detail=True, methods=["post"])
    def publish(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        workflow = services.workflow_publish(workflow=workflow, actor=self.actor, version=data.get("version"))
        return Response(self.render(workflow))

    @action(detail=True, methods=["post"])
    @idempotent
    def clone(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        clone = services.workflow_clone(workflow=workflow, actor=self.actor, name=data.get("name"))
        return Response({"id": clone.id, "workflow": self.render(clone)}, status=http.HTTP_201_CREATED)

    @action(detail=True, methods=["get"], url_path="input-schema")
    def input_schema(self, request, ref=None):
        workflow = self.get_object()
        version = self._version(workflow)
        return Response(
            {
                "workflow_id": workflow.id,
                "version": version.number,
                "schema": s.input_schema(version.definition),
            }
        )

    @action(detail=True, methods=["post"], url_path="save-as-template")
    @idempotent
    def save_as_template(self, request, ref=None):
        workflow = self.get_object()
        data = self.validated_input()
        template = services.template_save_from_workflow(workflow=workflow, actor=self.actor, **data)
        return Response(
            {"template_id": template.id, "template": s.TemplateDetailSerializer(template).data},
            status=http.HTTP_201_CREATED,
        )


def _version_in_path(raw: str, workflow_id: str) -> int:
    if raw.isascii() and raw.isdigit() and int(raw) >= 1:
        return int(raw)
    raise NotFound("version_not_found", f"Workflow {workflow_id} has no version {raw}.")


@schema.TEMPLATES
class TemplateViewSet(ListMixin, RetrieveMixin, DestroyMixin, OrganizationViewSet):
    resource = Resource(
        "template", list=selectors.template_list, get=selectors.template_get, destroy=services.template_delete
    )
    lookup_value_regex = "[^/.]+"  # the router's default, which template ids have always been matched by
    results_key = "templates"
    serializer_class = s.TemplateSerializer
    filterset_class = WorkflowTemplateFilterSet
    input_serializers = {"install": s.TemplateInstallSerializer}
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "install": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
    }

    def get_serializer_class(self):
        return s.TemplateDetailSerializer if self.action == "retrieve" else s.TemplateSerializer

    @action(detail=True, methods=["post"])
    @idempotent
    def install(self, request, pk=None):
        template = self.get_object()
        data = self.validated_input()
        workflow = services.template_install(
            template=template,
            organization=self.organization,
            actor=self.actor,
            name=data.get("name"),
            project_id=data.get("project"),
        )
        version = selectors.workflow_version_get(workflow=workflow, spec="latest")
        context = {"version": version, "show_secret": self.actor.has_role(Role.ADMIN)}
        body = {
            "workflow_id": workflow.id,
            "workflow": s.WorkflowDetailSerializer(workflow, context=context).data,
        }
        return Response(body, status=http.HTTP_201_CREATED)


@schema.PROJECTS
class ProjectViewSet(OrganizationModelViewSet):
    resource = Resource.named("project", selectors, services)
    serializer_class = s.ProjectSerializer
    input_serializers = {"create": s.ProjectCreateSerializer, "partial_update": s.ProjectUpdateSerializer}
    results_key = "projects"
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "create": WORKFLOWS_WRITE,
        "partial_update": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
    }
