from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from rest_framework.permissions import AllowAny

from config import health
from config.metrics import metrics_view
from runs import metrics as runs_metrics

# The schema and its viewers are public documentation: no authentication, no org throttle.
_public = {"permission_classes": [AllowAny], "authentication_classes": [], "throttle_classes": []}

api_v1 = [
    # Runs first: the resolver tries patterns in order, and the trigger and the run read are the hot paths.
    path("", include("runs.api.urls")),
    path("", include("workflows.api.urls")),
    path("", include("accounts.api.urls")),
    path("", include("audit.api.urls")),
    path("schema", SpectacularAPIView.as_view(**_public), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema", **_public), name="swagger-ui"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema", **_public), name="redoc"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics_view([runs_metrics.collect]), name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("config.dashboard_urls")),
]

handler400 = "config.api.exceptions.handler400"
handler403 = "config.api.exceptions.handler403"
handler404 = "config.api.exceptions.handler404"
handler500 = "config.api.exceptions.handler500"
