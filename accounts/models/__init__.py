"""The accounts app's models, one module per concern: tenancy (people, organisations, keys), LLM
providers and agents, and the security policy with its secrets."""

from accounts.models.llm import Agent, AgentKind, LlmProvider, LlmProviderKind
from accounts.models.security import Secret, SecurityPolicy, SigningSecret
from accounts.models.tenancy import ApiKey, Membership, Organization, User
from accounts.models.twofactor import TwoFactor

__all__ = [
    "Agent",
    "AgentKind",
    "ApiKey",
    "LlmProvider",
    "LlmProviderKind",
    "Membership",
    "Organization",
    "Secret",
    "SecurityPolicy",
    "SigningSecret",
    "TwoFactor",
    "User",
]
