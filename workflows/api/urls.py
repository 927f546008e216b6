from django.urls import path
from rest_framework.routers import SimpleRouter

from workflows.api.schedules import ScheduleViewSet, WorkflowScheduleViewSet, WorkflowWebhookViewSet
from workflows.api.views import ProjectViewSet, TemplateViewSet, WorkflowViewSet

router = SimpleRouter(trailing_slash=False)
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("templates", TemplateViewSet, basename="template")
router.register("projects", ProjectViewSet, basename="project")

router.register("schedules", ScheduleViewSet, basename="schedule")

urlpatterns = [
    path(
        "workflows/<str:ref>/schedules",
        WorkflowScheduleViewSet.as_view({"get": "list", "post": "create"}),
        name="workflow-schedules",
    ),
    path(
        "workflows/<str:ref>/webhook-secret/rotate",
        WorkflowWebhookViewSet.as_view({"post": "rotate"}),
        name="workflow-webhook-secret-rotate",
    ),
    *router.urls,
]
