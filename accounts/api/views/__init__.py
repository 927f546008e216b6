"""The accounts endpoints, by concern: tenancy (sign-in, /me, organisation, members, API keys),
LLM providers and agents, security (policy, signing secret, secrets)."""

from accounts.api.views.llm import AgentViewSet, LlmProviderViewSet
from accounts.api.views.security import (
    SecretViewSet,
    SecurityPolicyView,
    SigningSecretRotateView,
    SigningSecretView,
)
from accounts.api.views.tenancy import (
    ApiKeyViewSet,
    MemberViewSet,
    MeView,
    OrganizationView,
    TokenRefreshView,
    TokenView,
)

__all__ = [
    "AgentViewSet",
    "ApiKeyViewSet",
    "LlmProviderViewSet",
    "MeView",
    "MemberViewSet",
    "OrganizationView",
    "SecretViewSet",
    "SecurityPolicyView",
    "SigningSecretRotateView",
    "SigningSecretView",
    "TokenRefreshView",
    "TokenView",
]
