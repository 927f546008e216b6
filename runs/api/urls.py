from django.urls import path
from rest_framework.routers import SimpleRouter

from runs import stream
from runs.api.hooks import HookSignedView, HookTokenView
from runs.api.schedules import ScheduleBackfillView
from runs.api.views import RunViewSet, UsageView, WorkflowRunViewSet

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="run")

urlpatterns: list = [
    path("usage", UsageView.as_view(), name="usage"),
    path("runs/<str:run_id>/stream", stream.run_stream, name="run-stream"),
    path("workflows/<str:ref>/run", WorkflowRunViewSet.as_view({"post": "trigger"}), name="workflow-run"),
    path("workflows/<str:ref>/runs", WorkflowRunViewSet.as_view({"get": "list"}), name="workflow-runs"),
    # Schedules and inbound webhooks (docs/schedules.md).
    path("schedules/<str:schedule_id>/backfill", ScheduleBackfillView.as_view(), name="schedule-backfill"),
    path("hooks/<str:workflow_id>/<str:token>", HookTokenView.as_view(), name="hook-token"),
    path("hooks/<str:workflow_id>", HookSignedView.as_view(), name="hook-signed"),
    *router.urls,
]
