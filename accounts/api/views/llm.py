"""LLM providers and agents over HTTP (docs/llm.md). Providers are admin-only; agents are readable by every
member (workflow authors pick them) and managed by admins."""

from accounts import selectors, services
from accounts.api import schema
from accounts.api import serializers as s
from accounts.permissions import ADMIN, WORKFLOWS_READ
from config.api.viewsets import OrganizationModelViewSet


@schema.LLM_PROVIDERS
class LlmProviderViewSet(OrganizationModelViewSet):
    serializer_class = s.LlmProviderSerializer
    input_serializers = {
        "create": s.LlmProviderCreateSerializer,
        "partial_update": s.LlmProviderUpdateSerializer,
    }
    results_key = "llm_providers"
    # Responses never hold the key; listed anyway so a future field cannot leak through a replay.
    idempotency_replay_omit = ("api_key",)
    access = {"list": ADMIN, "create": ADMIN, "retrieve": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}

    def get_queryset(self):
        return selectors.llm_providers_of(self.organization)

    def get_object(self):
        return selectors.llm_provider_get(organization=self.organization, provider_id=self.kwargs["pk"])

    def perform_create(self, data):
        return services.llm_provider_create(organization=self.organization, actor=self.actor, **data)

    def perform_update(self, provider, data):
        return services.llm_provider_update(provider=provider, actor=self.actor, **data)

    def perform_destroy(self, provider):
        services.llm_provider_delete(provider=provider, actor=self.actor)


@schema.AGENTS
class AgentViewSet(OrganizationModelViewSet):
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

    def get_queryset(self):
        return selectors.agents_of(self.organization)

    def get_object(self):
        return selectors.agent_get(organization=self.organization, agent_id=self.kwargs["pk"])

    def perform_create(self, data):
        return services.agent_create(organization=self.organization, actor=self.actor, **data)

    def perform_update(self, agent, data):
        return services.agent_update(agent=agent, actor=self.actor, **data)

    def perform_destroy(self, agent):
        services.agent_delete(agent=agent, actor=self.actor)
