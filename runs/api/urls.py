from django.urls import path
from rest_framework.routers import SimpleRouter

from runs import stream
from runs.api.views import RunViewSet, UsageView, WorkflowRunViewSet

router = SimpleRouter(trailing_slash=False)
router.register("runs", RunViewSet, basename="run")

# Owned by the runs API work; the stream route below is owned by the SSE work.
urlpatterns: list = [
    path("usage", UsageView.as_view(), name="usage"),
    path("runs/<str:run_id>/stream", stream.run_stream, name="run-stream"),
    path("workflows/<str:ref>/run", WorkflowRunViewSet.as_view({"post": "trigger"}), name="workflow-run"),
    path("workflows/<str:ref>/runs", WorkflowRunViewSet.as_view({"get": "list"}), name="workflow-runs"),
    *router.urls,
]
