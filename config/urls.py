from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from config import health

api_v1 = [
    path("", include("accounts.api.urls")),
    path("", include("audit.api.urls")),
    path("", include("workflows.api.urls")),
    path("schema", SpectacularAPIView.as_view(), name="schema"),
    path("docs", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("redoc", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
]

urlpatterns = [
    path("api/v1/", include(api_v1)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("admin/", admin.site.urls),
    path("", include("config.dashboard_urls")),
]

handler400 = "config.api.exceptions.handler400"
handler403 = "config.api.exceptions.handler403"
handler404 = "config.api.exceptions.handler404"
handler500 = "config.api.exceptions.handler500"
