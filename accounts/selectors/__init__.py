"""Organisation-scoped reads of the accounts app: another organisation's object is simply not found."""

from accounts.selectors.llm import (
    agent_get,
    agents_of,
    default_llm_provider,
    llm_provider_get,
    llm_providers_of,
    organization_has_llm_provider,
    provider_api_key,
)
from accounts.selectors.security import secret_get, secrets_of
from accounts.selectors.tenancy import (
    api_key_get,
    api_keys_of,
    membership_get,
    memberships_of,
    memberships_of_user,
    usage_period,
)

__all__ = [
    "agent_get",
    "agents_of",
    "api_key_get",
    "api_keys_of",
    "default_llm_provider",
    "llm_provider_get",
    "llm_providers_of",
    "membership_get",
    "memberships_of",
    "memberships_of_user",
    "organization_has_llm_provider",
    "provider_api_key",
    "secret_get",
    "secrets_of",
    "usage_period",
]
