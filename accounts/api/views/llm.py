"""LLM providers and agents over HTTP (docs/llm.md). Providers are admin-only; agents are readable by every
member (workflow authors pick them) and managed by admins."""

from accounts import selectors, services
from accounts.api import schema
from accounts.api import serializers as s
from accounts.permissions import ADMIN, WORKFLOWS_READ
from config.api.viewsets import OrganizationModelViewSet, Resource


@schema.LLM_PROVIDERS
class LlmProviderViewSet(OrganizationModelViewSet):
    resource = Resource.named("provider", selectors, services, prefix="llm_provider")
    serializer_class = s.LlmProviderSerializer
    input_serializers = {
        "create": s.LlmProviderCreateSerializer,
        "partial_update": s.LlmProviderUpdateSerializer,
    }
    results_key = "llm_providers"
    # Responses never hold the key; listed anyway so a future field cannot leak through a replay.
    idempotency_replay_omit = ("api_key",)
    access = {"list": ADMIN, "create": ADMIN, "retrieve": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}


@schema.AGENTS
class AgentViewSet(OrganizationModelViewSet):
    resource = Resource.named("agent", selectors, services)
    serializer_class = s.AgentSerializer
    input_serializers = {"create": s.AgentWriteSerializer, "partial_update": s.AgentUpdateSerializer}
    results_key = "agents"
    access = {
        "list": WORKFLOWS_READ,
        "retrieve": WORKFLOWS_READ,
        "create": ADMIN,
        "partial_update": ADMIN,
        "destroy": ADMIN,
    }
