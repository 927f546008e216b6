"""POST /schedules/{id}/backfill (API.md): it creates runs, so it is served by the runs app; the other
schedule routes are workflows/api/schedules.py."""

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import RUNS_WRITE
from config.api.idempotency import idempotent
from config.api.schema import error_response
from runs.scheduling import schedule_backfill
from workflows.selectors import schedule_get


class BackfillSerializer(serializers.Serializer):
    start = serializers.DateTimeField(help_text="ISO 8601; the window is [start, end].")
    end = serializers.DateTimeField(help_text="ISO 8601, not in the future.")
    dry_run = serializers.BooleanField(required=False, default=False, help_text="Only list the fire times.")

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["Unknown field."] for name in unknown})
        return super().to_internal_value(data)


class BackfillResultSerializer(serializers.Serializer):
    fire_times = serializers.ListField(child=serializers.CharField())
    runs = serializers.ListField(
        child=inline_serializer(
            "BackfillRun", {"fire_time": serializers.CharField(), "run_id": serializers.CharField()}
        )
    )
    created = serializers.IntegerField()
    skipped = serializers.IntegerField(help_text="Fire times in the window that already had a run.")


class ScheduleBackfillView(APIView):
    access = {"post": RUNS_WRITE}

    @extend_schema(
        summary="Backfill a schedule's past fire times",
        description="Lists every fire time in [start, end]; unless `dry_run`, creates a run for each one "
        "that never had one (`metadata.backfill: true`). Repeating a backfill creates nothing new.",
        request=BackfillSerializer,
        responses={
            200: BackfillResultSerializer,
            400: error_response("invalid_request: bad window (order, future, too long, too many fire times)"),
            402: error_response("quota_exceeded: the quota cannot hold every run (none is created)"),
            404: error_response("schedule_not_found"),
            409: error_response("workflow_disabled"),
            422: error_response("invalid_input"),
        },
    )
    @idempotent
    def post(self, request, schedule_id: str):
        schedule = schedule_get(organization=request.auth.organization, schedule_id=schedule_id)
        serializer = BackfillSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        result = schedule_backfill(
            schedule=schedule,
            actor=request.auth,
            start=data["start"],
            end=data["end"],
            dry_run=data["dry_run"],
        )
        return Response(result)
