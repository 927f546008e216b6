from django.urls import path
from rest_framework.routers import SimpleRouter

from accounts.api import views

router = SimpleRouter(trailing_slash=False)
router.register("members", views.MemberViewSet, basename="member")
router.register("api-keys", views.ApiKeyViewSet, basename="api-key")
router.register("llm-providers", views.LlmProviderViewSet, basename="llm-provider")
router.register("agents", views.AgentViewSet, basename="agent")
router.register("secrets", views.SecretViewSet, basename="secret")

urlpatterns = [
    path("auth/token", views.TokenView.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshView.as_view(), name="auth-token-refresh"),
    path("me", views.MeView.as_view(), name="me"),
    path("organization", views.OrganizationView.as_view(), name="organization"),
    path("security/policy", views.SecurityPolicyView.as_view(), name="security-policy"),
    path("security/signing-secret", views.SigningSecretView.as_view(), name="security-signing-secret"),
    path(
        "security/signing-secret/rotate",
        views.SigningSecretRotateView.as_view(),
        name="security-signing-secret-rotate",
    ),
    *router.urls,
]
