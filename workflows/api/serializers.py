"""Input serializers check shape (services check rules); output serializers give the API.md shapes."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from config.api.serializers import StrictSerializer
from workflows.api.schedules import SchedulesField, hook_urls
from workflows.choices import (
    MAX_CHANGE_SUMMARY_LENGTH,
    MAX_CONCURRENCY_KEY_LENGTH,
    MAX_CONCURRENCY_LIMIT,
    MAX_DESCRIPTION_LENGTH,
    MAX_NAME_LENGTH,
    ConcurrencyPolicy,
    TriggerType,
    WorkflowStatus,
)
from workflows.definition import input_schema
from workflows.models import Project, Workflow, WorkflowTemplate, WorkflowVersion
from workflows.services import CREATE_STATUSES, MAX_RETENTION_DAYS


class ProjectRefSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class ConcurrencySerializer(serializers.Serializer):
    limit = serializers.IntegerField(min_value=1)
    key = serializers.CharField(allow_null=True, required=False)
    on_limit = serializers.ChoiceField(choices=["reject", "queue", "cancel_running"], required=False)


# ------------------------------------------------------------------------------------------- output


class WorkflowSerializer(serializers.ModelSerializer):
    """A workflow in lists: metadata only (no definition, never the webhook secret)."""

    project = serializers.SerializerMethodField()
    concurrency = ConcurrencySerializer(allow_null=True)
    tags = serializers.ListField(child=serializers.CharField())

    class Meta:
        model = Workflow
        fields = [
            "id", "slug", "name", "description", "status", "trigger_type", "tags", "project", "concurrency",
            "retention_days", "webhook_enabled", "current_version", "published_version", "created_by",
            "created_at", "updated_at", "archived_at", "last_run_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(ProjectRefSerializer(allow_null=True))
    def get_project(self, workflow) -> dict | None:
        project = workflow.project
        return {"id": project.id, "name": project.name} if project else None


class WorkflowDetailSerializer(WorkflowSerializer):
    """One workflow at one version (context["version"]), with its definition and input schema.
    `webhook_secret` is present only for admins (context["show_secret"])."""

    version = serializers.SerializerMethodField()
    change_summary = serializers.SerializerMethodField()
    content_hash = serializers.SerializerMethodField()
    version_created_at = serializers.SerializerMethodField()
    definition = serializers.SerializerMethodField()
    input_schema = serializers.SerializerMethodField()
    webhook_secret = serializers.CharField(required=False, help_text="Only shown to admins.")
    schedules = SchedulesField()
    webhook_url = serializers.CharField(
        required=False, read_only=True, help_text="Only shown to admins: the hook URL with the secret in it."
    )
    webhook_signed_url = serializers.CharField(
        required=False, read_only=True, help_text="Only shown to admins: the hook URL for signed deliveries."
    )

    class Meta(WorkflowSerializer.Meta):
        fields = [
            *WorkflowSerializer.Meta.fields, "version", "change_summary", "content_hash",
            "version_created_at", "definition", "input_schema", "webhook_secret", "schedules",
            "webhook_url", "webhook_signed_url",
        ]  # fmt: skip
        read_only_fields = fields

    def _version(self) -> WorkflowVersion:
        return self.context["version"]

    def get_version(self, workflow) -> int:
        return self._version().number

    def get_change_summary(self, workflow) -> str:
        return self._version().change_summary

    def get_content_hash(self, workflow) -> str:
        return self._version().content_hash

    @extend_schema_field(OpenApiTypes.DATETIME)
    def get_version_created_at(self, workflow):
        return serializers.DateTimeField().to_representation(self._version().created_at)

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_definition(self, workflow) -> dict:
        return self._version().definition

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_input_schema(self, workflow) -> dict:
        return input_schema(self._version().definition)

    def to_representation(self, instance):
        data = super().to_representation(instance)
        if not self.context.get("show_secret"):
            data.pop("webhook_secret", None)
        else:
            data.update(hook_urls(instance, self.context.get("request")))
        return data


class WorkflowCreatedSerializer(serializers.Serializer):
    id = serializers.CharField()
    workflow = WorkflowDetailSerializer()


class WorkflowVersionSerializer(serializers.ModelSerializer):
    version = serializers.IntegerField(source="number")
    published = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowVersion
        fields = ["version", "change_summary", "created_at", "created_by", "content_hash", "published"]
        read_only_fields = fields

    def get_published(self, version) -> bool:
        return version.number == self.context["published_version"]


class WorkflowVersionDetailSerializer(WorkflowVersionSerializer):
    workflow_id = serializers.CharField()
    definition = serializers.JSONField()
    input_schema = serializers.SerializerMethodField()

    class Meta(WorkflowVersionSerializer.Meta):
        fields = ["workflow_id", *WorkflowVersionSerializer.Meta.fields, "definition", "input_schema"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_input_schema(self, version) -> dict:
        return input_schema(version.definition)


class ValidationResultSerializer(serializers.Serializer):
    valid = serializers.BooleanField()
    errors = serializers.ListField(child=serializers.CharField())


class DiffSerializer(serializers.Serializer):
    diff = serializers.ListField(
        child=serializers.DictField(), help_text="RFC 6902 JSON Patch from v1 to v2."
    )
    summary = serializers.CharField()
    v1 = serializers.IntegerField()
    v2 = serializers.IntegerField()


class InputSchemaSerializer(serializers.Serializer):
    workflow_id = serializers.CharField()
    version = serializers.IntegerField()
    schema = serializers.JSONField()


class TemplateSerializer(serializers.ModelSerializer):
    step_count = serializers.SerializerMethodField()

    class Meta:
        model = WorkflowTemplate
        fields = [
            "id", "name", "description", "category", "is_builtin", "step_count", "source_workflow_id",
            "created_by", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_step_count(self, template) -> int:
        steps = template.definition.get("steps") if isinstance(template.definition, dict) else None
        return len(steps) if isinstance(steps, list) else 0


class TemplateDetailSerializer(TemplateSerializer):
    definition = serializers.JSONField()
    input_schema = serializers.SerializerMethodField()

    class Meta(TemplateSerializer.Meta):
        fields = [*TemplateSerializer.Meta.fields, "definition", "input_schema"]
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_input_schema(self, template) -> dict:
        return input_schema(template.definition) if isinstance(template.definition, dict) else {}


class TemplateInstalledSerializer(serializers.Serializer):
    workflow_id = serializers.CharField()
    workflow = WorkflowDetailSerializer()


class TemplateCreatedSerializer(serializers.Serializer):
    template_id = serializers.CharField()
    template = TemplateDetailSerializer()


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["id", "name", "description", "created_at", "updated_at"]
        read_only_fields = fields


# -------------------------------------------------------------------------------------------- input


@extend_schema_field({"type": "integer", "minimum": 1, "maximum": MAX_RETENTION_DAYS, "nullable": True})
class RetentionDaysField(serializers.IntegerField):
    """Days a finished run is kept (workflows.services.clean_retention_days checks the range)."""


@extend_schema_field(
    {
        "type": "object",
        "nullable": True,
        "description": "The per-workflow concurrency limit; null: none.",
        "properties": {
            "limit": {"type": "integer", "minimum": 1, "maximum": MAX_CONCURRENCY_LIMIT},
            # A template rendered per run; blank is refused.
            "key": {
                "type": "string",
                "maxLength": MAX_CONCURRENCY_KEY_LENGTH,
                "pattern": r"\S",
                "nullable": True,
            },
            "on_limit": {
                "type": "string",
                "enum": ConcurrencyPolicy.values,
                "default": ConcurrencyPolicy.QUEUE,
            },
        },
        "required": ["limit"],
        "additionalProperties": False,
    }
)
class ConcurrencyField(serializers.JSONField):
    """`{"limit", "key", "on_limit"}` or null, checked by workflows.services.clean_concurrency."""


@extend_schema_field({"type": "object", "additionalProperties": True, "description": "A definition."})
class DefinitionField(serializers.JSONField):
    """A workflow definition: a JSON object, checked by the services (422 invalid_definition)."""


class WorkflowCreateSerializer(StrictSerializer):
    definition = DefinitionField()
    trigger_type = serializers.ChoiceField(choices=TriggerType.choices, required=False)
    tags = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, allow_blank=True), required=False
    )
    project = serializers.CharField(allow_null=True, allow_blank=True, required=False, max_length=40)
    status = serializers.ChoiceField(choices=[(s.value, s.label) for s in CREATE_STATUSES], required=False)
    concurrency = ConcurrencyField(allow_null=True, required=False)
    retention_days = RetentionDaysField(allow_null=True, required=False)
    webhook_enabled = serializers.BooleanField(required=False)
    change_summary = serializers.CharField(
        allow_blank=True, required=False, max_length=MAX_CHANGE_SUMMARY_LENGTH
    )


class WorkflowUpdateSerializer(StrictSerializer):
    """A new version. The other fields of the GET body are accepted and ignored (a client may PUT back
    what it read); metadata is changed with PATCH."""

    ignored_fields = tuple(
        name for name in WorkflowDetailSerializer.Meta.fields if name not in ("definition", "change_summary")
    )
    definition = DefinitionField()
    change_summary = serializers.CharField(
        allow_blank=True, required=False, max_length=MAX_CHANGE_SUMMARY_LENGTH
    )
    base_version = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Compare-and-set: 409 version_conflict unless this is the latest.",
    )


class WorkflowMetadataSerializer(StrictSerializer):
    name = serializers.CharField(required=False, max_length=MAX_NAME_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, max_length=MAX_DESCRIPTION_LENGTH)
    tags = serializers.ListField(
        child=serializers.CharField(trim_whitespace=False, allow_blank=True), required=False
    )
    project = serializers.CharField(allow_null=True, allow_blank=True, required=False, max_length=40)
    concurrency = ConcurrencyField(allow_null=True, required=False)
    retention_days = RetentionDaysField(allow_null=True, required=False)
    webhook_enabled = serializers.BooleanField(required=False)


class WorkflowStatusSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=WorkflowStatus.choices)


@extend_schema_field(
    {
        "anyOf": [{"type": t} for t in ("object", "array", "string", "number", "boolean")],
        "description": "Any JSON value but null: the answer says what is wrong with it.",
    }
)
class AnyDefinitionField(serializers.JSONField):
    """POST /workflows/validate reads any JSON value and reports (200) why it is not a definition."""


class WorkflowValidateSerializer(StrictSerializer):
    definition = AnyDefinitionField()


class PublishSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1, required=False, allow_null=True)


class RollbackSerializer(StrictSerializer):
    version = serializers.IntegerField(min_value=1)


class CloneSerializer(StrictSerializer):
    name = serializers.CharField(required=False, max_length=MAX_NAME_LENGTH)


class TemplateInstallSerializer(StrictSerializer):
    name = serializers.CharField(required=False, max_length=MAX_NAME_LENGTH)
    project = serializers.CharField(allow_null=True, allow_blank=True, required=False, max_length=40)


class SaveAsTemplateSerializer(StrictSerializer):
    name = serializers.CharField(required=False, max_length=MAX_NAME_LENGTH)
    description = serializers.CharField(required=False, allow_blank=True, max_length=MAX_DESCRIPTION_LENGTH)
    category = serializers.CharField(required=False, allow_blank=True, max_length=50)
    version = serializers.IntegerField(min_value=1, required=False)


class ProjectCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    description = serializers.CharField(max_length=2000, required=False, default="", allow_blank=True)


class ProjectUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
