from django.urls import path

from audit.api.views import AuditPublicKeysView, AuditViewSet

urlpatterns = [
    path("audit/logs", AuditViewSet.as_view({"get": "list"}), name="audit-logs"),
    path("audit/verify", AuditViewSet.as_view({"get": "verify"}), name="audit-verify"),
    path("audit/export", AuditViewSet.as_view({"get": "export"}), name="audit-export"),
    path("audit/public-keys", AuditPublicKeysView.as_view(), name="audit-public-keys"),
]
