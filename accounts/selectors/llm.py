"""Org-scoped reads of LLM providers and agents. Another organisation's object is simply not found.

Pure ORM (no HTTP layer): the engine's agent_task handler uses these too."""

from django.db.models import QuerySet

from accounts.models import Agent, LlmProvider
from config.errors import not_found


def llm_providers_of(organization) -> QuerySet[LlmProvider]:
    return LlmProvider.objects.filter(organization=organization).order_by("created_at", "id")


def llm_provider_get(*, organization, provider_id: str) -> LlmProvider:
    """The organisation's provider, or 404 llm_provider_not_found."""
    provider = llm_providers_of(organization).filter(pk=provider_id).first()
    if provider is None:
        raise not_found("llm_provider", provider_id)
    return provider


def organization_has_llm_provider(organization) -> bool:
    return LlmProvider.objects.filter(organization=organization).exists()


def default_llm_provider(organization_id: str) -> LlmProvider | None:
    """The provider used when an agent or step names none: the organisation's first (oldest) provider."""
    return LlmProvider.objects.filter(organization_id=organization_id).order_by("created_at", "id").first()


def agents_of(organization) -> QuerySet[Agent]:
    return Agent.objects.filter(organization=organization).order_by("created_at", "id")


def agent_get(*, organization, agent_id: str) -> Agent:
    """The organisation's agent, or 404 agent_not_found."""
    agent = agents_of(organization).filter(pk=agent_id).first()
    if agent is None:
        raise not_found("agent", agent_id)
    return agent


def provider_api_key(provider: LlmProvider) -> str:
    """The provider's API key in clear, for the outbound call only ("" when none is set)."""
    from accounts import crypto

    return crypto.decrypt(provider.api_key_encrypted) if provider.api_key_encrypted else ""
