from rest_framework.routers import SimpleRouter

from workflows.api.views import TemplateViewSet, WorkflowViewSet

router = SimpleRouter(trailing_slash=False)
router.register("workflows", WorkflowViewSet, basename="workflow")
router.register("templates", TemplateViewSet, basename="template")

urlpatterns = router.urls
