"""Tenancy-test factories for this area's routes (see tests/support/tenancy_registry.py)."""

from accounts.services import agent_create, llm_provider_create
from tests.conftest import owner_principal
from tests.support.tenancy_registry import register


@register("llm-provider-detail")
def _llm_provider(org, owner):
    provider = llm_provider_create(
        organization=org,
        actor=owner_principal(org, owner),
        name="Victim provider",
        kind="openai",
        api_key="sk-victim-0123456789abcdef",
        default_model="gpt-4o-mini",
    )
    return {"pk": provider.id}


@register("agent-detail")
def _agent(org, owner):
    agent = agent_create(organization=org, actor=owner_principal(org, owner), name="Victim agent")
    return {"pk": agent.id}
