from rest_framework.routers import SimpleRouter

from workflows.api.views import ProjectViewSet, TemplateViewSet, WorkflowViewSet

router = SimpleRouter(trailing_slash=False)
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("templates", TemplateViewSet, basename="template")
router.register("projects", ProjectViewSet, basename="project")

urlpatterns = router.urls
