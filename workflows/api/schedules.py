"""Schedules over HTTP (API.md "Workflows", docs/schedules.md): GET/POST /workflows/{ref}/schedules,
GET /schedules, GET/PATCH/DELETE /schedules/{id}, and POST /workflows/{ref}/webhook-secret/rotate.
The backfill, which creates runs, is served by the runs app (runs/api/schedules.py)."""

from django.conf import settings
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers, viewsets
from rest_framework import status as http
from rest_framework.response import Response

from accounts.permissions import ADMIN, WORKFLOWS_READ, WORKFLOWS_WRITE
from config.api.idempotency import idempotent
from config.api.schema import error_response
from config.errors import InvalidRequest
from workflows import schedules as services
from workflows import selectors, webhooks
from workflows.choices import ScheduleCatchup, ScheduleOverlap
from workflows.models import Schedule

# ------------------------------------------------------------------------------------------- serializers


class ScheduleSerializer(serializers.ModelSerializer):
    """A schedule as the API shows it (`id` and `schedule_id` are the same value)."""

    schedule_id = serializers.CharField(source="id")
    input_data = serializers.JSONField()
    last_error = serializers.JSONField(
        allow_null=True,
        help_text="Why the last fire time could not start its run (`code`, `message`, `details`?, "
        "`fire_time`), e.g. an input the workflow's schema no longer accepts; null once a run starts.",
    )

    class Meta:
        model = Schedule
        fields = [
            "id", "schedule_id", "workflow_id", "cron_expression", "timezone", "input_data", "enabled",
            "catchup", "catchup_window_seconds", "overlap", "next_run_at", "last_run_at", "last_run_id",
            "last_error", "created_by", "created_at", "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class ScheduleWriteSerializer(serializers.Serializer):
    """The shape of a create or a PATCH; the service checks the rules (cron, time zone, limits) and says
    what is wrong in a sentence. Unknown fields are refused."""

    cron_expression = serializers.CharField(help_text="5 fields (`0 9 * * 1-5`) or `@hourly`, `@daily`, …")
    timezone = serializers.CharField(required=False, help_text="IANA name, default `UTC`.")
    input_data = serializers.JSONField(required=False, help_text="The runs' input (an object).")
    enabled = serializers.BooleanField(required=False)
    catchup = serializers.ChoiceField(choices=ScheduleCatchup.choices, required=False)
    catchup_window_seconds = serializers.IntegerField(required=False)
    overlap = serializers.ChoiceField(choices=ScheduleOverlap.choices, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class ScheduleUpdateSerializer(ScheduleWriteSerializer):
    cron_expression = serializers.CharField(required=False)


class WebhookSecretSerializer(serializers.Serializer):
    webhook_secret = serializers.CharField()
    webhook_url = serializers.CharField()
    webhook_signed_url = serializers.CharField()


def schedules_of(workflow) -> list[dict]:
    """The workflow's schedules as they appear in its API object."""
    return ScheduleSerializer(selectors.schedule_list(organization=workflow.organization, workflow=workflow),
                              many=True).data  # fmt: skip


@extend_schema_field(ScheduleSerializer(many=True))
class SchedulesField(serializers.Field):
    """The workflow's schedules (the workflow detail serializer's `schedules`)."""

    def __init__(self, **kwargs):
        super().__init__(source="*", read_only=True, **kwargs)

    def to_representation(self, workflow):
        return schedules_of(workflow)


def hook_urls(workflow, request) -> dict:
    """The workflow's inbound webhook URLs: with the secret in the path, and the signed form."""
    base = settings.BATON_PUBLIC_URL or (request.build_absolute_uri("/").rstrip("/") if request else "")
    signed = f"{base}/api/v1/hooks/{workflow.id}"
    return {"webhook_url": f"{signed}/{workflow.webhook_secret}", "webhook_signed_url": signed}


# ---------------------------------------------------------------------------------------------- views


def _body(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


SCHEDULE_404 = {404: error_response("schedule_not_found")}
WRITE_ERRORS = {
    400: error_response(
        "invalid_request: a bad cron expression, time zone or field, fire times closer than the minimum "
        "interval, or an input the workflow's input schema refuses (a sentence says which)"
    ),
    402: error_response("quota_exceeded: the plan's max_schedules or max_schedules_per_workflow"),
    409: error_response("workflow_archived"),
}
LIST_PARAMS = [
    OpenApiParameter("workflow", OpenApiTypes.STR, description="Only this workflow's schedules (id)."),
    OpenApiParameter("enabled", OpenApiTypes.BOOL, description="`true` or `false`."),
]


class WorkflowScheduleViewSet(viewsets.GenericViewSet):
    """GET/POST /workflows/{ref}/schedules."""

    results_key = "schedules"
    max_limit = 200
    serializer_class = ScheduleSerializer
    filter_backends: list = []
    access = {"list": WORKFLOWS_READ, "create": WORKFLOWS_WRITE}

    def _workflow(self):
        return selectors.workflow_get(organization=self.request.auth.organization, ref=self.kwargs["ref"])

    @extend_schema(summary="The workflow's schedules", responses={200: ScheduleSerializer(many=True),
                   404: error_response("workflow_not_found")})  # fmt: skip
    def list(self, request, ref=None):
        workflow = self._workflow()
        page = self.paginate_queryset(
            selectors.schedule_list(organization=workflow.organization, workflow=workflow)
        )
        return self.get_paginated_response(ScheduleSerializer(page, many=True).data)

    @extend_schema(
        summary="Create a schedule",
        request=ScheduleWriteSerializer,
        responses={201: ScheduleSerializer, 404: error_response("workflow_not_found"), **WRITE_ERRORS},
    )
    @idempotent
    def create(self, request, ref=None):
        workflow = self._workflow()
        values = _body(ScheduleWriteSerializer, request)
        schedule = services.schedule_create(workflow=workflow, actor=request.auth, values=values)
        return Response(ScheduleSerializer(schedule).data, status=http.HTTP_201_CREATED)


class ScheduleViewSet(viewsets.GenericViewSet):
    """GET /schedules, GET/PATCH/DELETE /schedules/{id}."""

    lookup_url_kwarg = "schedule_id"
    queryset = Schedule.objects.none()  # the schema's path parameter type; reads go through selectors
    results_key = "schedules"
    max_limit = 200
    serializer_class = ScheduleSerializer
    filter_backends: list = []
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "partial_update": WORKFLOWS_WRITE,
        "destroy": WORKFLOWS_WRITE,
    }

    def get_object(self):
        return selectors.schedule_get(
            organization=self.request.auth.organization, schedule_id=self.kwargs["schedule_id"]
        )

    @extend_schema(summary="The organisation's schedules", parameters=LIST_PARAMS,
                   responses={200: ScheduleSerializer(many=True)})  # fmt: skip
    def list(self, request):
        params = request.query_params
        unknown = sorted(set(params) - {"limit", "offset", "workflow", "enabled"})
        if unknown:
            raise InvalidRequest(
                "invalid_request",
                f"Unknown query parameter '{unknown[0]}'.",
                details={"fields": {name: ["Unknown parameter."] for name in unknown}},
            )
        queryset = selectors.schedule_list(organization=request.auth.organization)
        if params.get("workflow"):
            queryset = queryset.filter(workflow_id=params["workflow"])
        if "enabled" in params:
            if params["enabled"] not in ("true", "false"):
                raise InvalidRequest("invalid_request", "'enabled' must be true or false.",
                                     details={"fields": {"enabled": ["Must be true or false."]}})  # fmt: skip
            queryset = queryset.filter(enabled=params["enabled"] == "true")
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ScheduleSerializer(page, many=True).data)

    @extend_schema(summary="One schedule", responses={200: ScheduleSerializer, **SCHEDULE_404})
    def retrieve(self, request, schedule_id=None):
        return Response(ScheduleSerializer(self.get_object()).data)

    @extend_schema(
        summary="Change a schedule",
        request=ScheduleUpdateSerializer,
        responses={200: ScheduleSerializer, **SCHEDULE_404, **WRITE_ERRORS},
    )
    def partial_update(self, request, schedule_id=None):
        schedule = self.get_object()
        changes = _body(ScheduleUpdateSerializer, request)
        schedule = services.schedule_update(schedule=schedule, actor=request.auth, changes=changes)
        return Response(ScheduleSerializer(schedule).data)

    @extend_schema(summary="Delete a schedule (its runs stay)", responses={204: None, **SCHEDULE_404})
    def destroy(self, request, schedule_id=None):
        services.schedule_delete(schedule=self.get_object(), actor=request.auth)
        return Response(status=http.HTTP_204_NO_CONTENT)


class WorkflowWebhookViewSet(viewsets.GenericViewSet):
    """POST /workflows/{ref}/webhook-secret/rotate (admins)."""

    serializer_class = WebhookSecretSerializer
    access = {"rotate": ADMIN}

    @extend_schema(
        summary="Rotate the inbound webhook secret",
        description="A new secret replaces the old one at once: hook URLs and signatures made with the old "
        "one stop working. Answers the new secret and hook URLs.",
        request=None,
        responses={200: WebhookSecretSerializer, 404: error_response("workflow_not_found")},
    )
    def rotate(self, request, ref=None):
        workflow = selectors.workflow_get(organization=request.auth.organization, ref=self.kwargs["ref"])
        workflow = webhooks.webhook_secret_rotate(workflow=workflow, actor=request.auth)
        return Response({"webhook_secret": workflow.webhook_secret, **hook_urls(workflow, request)})
