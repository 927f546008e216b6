"""Writes for LLM providers and agents. Each one audits in its transaction; API keys never reach the audit
log, a response or a log line (they are stored encrypted with accounts.crypto). See docs/llm.md."""

from decimal import Decimal

from django.db import IntegrityError, transaction

from accounts.builtin_agents import BUILTIN_AGENTS
from accounts.models import Agent, AgentKind, LlmProvider, LlmProviderKind
from audit.services import audit_record
from config.errors import Conflict, InvalidRequest

DEFAULT_BASE_URLS = {
    LlmProviderKind.OPENAI: "https://api.openai.com/v1",
    LlmProviderKind.ANTHROPIC: "https://api.anthropic.com",
}
# A key shorter than this shows no last4: four characters of a short key give too much of it away.
LAST4_MIN_KEY_LENGTH = 16
_UNSET = object()


def _field_error(field: str, message: str) -> InvalidRequest:
    return InvalidRequest("invalid_request", message, details={"fields": {field: [message]}})


def normalize_base_url(url: str) -> str:
    """An http(s) URL with a host, no credentials, query or fragment; trailing slashes removed.

    Parsed like the outbound client parses it (every numeric IPv4 form, IDNA). Whether the address may be
    reached is the security policy's decision, made by the outbound client at every call."""
    from urllib.parse import urlsplit

    from accounts.network import OutboundError, parse_url

    url = (url or "").strip()
    try:
        target = parse_url(url)
    except OutboundError as exc:
        raise _field_error("base_url", exc.message) from None
    parts = urlsplit(url)
    if target.userinfo:
        raise _field_error("base_url", "base_url must not contain credentials; put the key in api_key.")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise _field_error("base_url", "base_url must not have a query string or a fragment.")
    return url.rstrip("/")


def _encrypt(api_key: str) -> tuple[str, str]:
    if not api_key:
        return "", ""
    from accounts import crypto

    last4 = api_key[-4:] if len(api_key) >= LAST4_MIN_KEY_LENGTH else ""
    return crypto.encrypt(api_key), last4


def _name_taken(kind: str, name: str) -> Conflict:
    what = "An LLM provider" if kind == "llm_provider" else "An agent"
    return Conflict(f"{kind}_name_taken", f"{what} named '{name}' already exists in this organisation.")


def _prices(value) -> Decimal:
    return Decimal(str(value)).quantize(Decimal("0.000001"))


def _model_prices(value: dict | None) -> dict:
    return {
        model: {key: float(_prices(price)) for key, price in entry.items()}
        for model, entry in (value or {}).items()
    }


def _provider_summary(provider: LlmProvider) -> dict:
    return {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "default_model": provider.default_model,
        "api_key_set": provider.api_key_set,
    }


# --- providers -----------------------------------------------------------------------------------


@transaction.atomic
def llm_provider_create(
    *,
    organization,
    actor,
    name: str,
    kind: str,
    default_model: str,
    base_url: str | None = None,
    api_key: str = "",
    input_price_per_million=0,
    output_price_per_million=0,
    model_prices: dict | None = None,
) -> LlmProvider:
    base_url = normalize_base_url(base_url) if base_url else DEFAULT_BASE_URLS[LlmProviderKind(kind)]
    if LlmProvider.objects.filter(organization=organization, name=name).exists():
        raise _name_taken("llm_provider", name)
    encrypted, last4 = _encrypt(api_key)
    try:
        with transaction.atomic():
            provider = LlmProvider.objects.create(
                organization=organization,
                name=name,
                kind=kind,
                base_url=base_url,
                api_key_encrypted=encrypted,
                api_key_last4=last4,
                default_model=default_model,
                input_price_per_million=_prices(input_price_per_million),
                output_price_per_million=_prices(output_price_per_million),
                model_prices=_model_prices(model_prices),
            )
    except IntegrityError:
        raise _name_taken("llm_provider", name) from None
    audit_record(
        organization=organization,
        event="llm_provider.created",
        actor=actor,
        target=("llm_provider", provider.id),
        data=_provider_summary(provider),
    )
    return provider


@transaction.atomic
def llm_provider_update(
    *,
    provider: LlmProvider,
    actor,
    name=_UNSET,
    kind=_UNSET,
    base_url=_UNSET,
    api_key=_UNSET,
    default_model=_UNSET,
    input_price_per_million=_UNSET,
    output_price_per_million=_UNSET,
    model_prices=_UNSET,
) -> LlmProvider:
    """Change what is given. `api_key`: a new key replaces the old one, "" or None removes it. The audit
    event says the key changed, never what it is."""
    provider = LlmProvider.objects.select_for_update().get(pk=provider.pk)
    changes: dict = {}

    def change(field, value):
        old = getattr(provider, field)
        if old != value:
            as_json = (lambda v: float(v)) if isinstance(value, Decimal) else (lambda v: v)
            changes[field] = {"from": as_json(old), "to": as_json(value)}
            setattr(provider, field, value)

    if name is not _UNSET and name != provider.name:
        if LlmProvider.objects.filter(organization_id=provider.organization_id, name=name).exists():
            raise _name_taken("llm_provider", name)
        change("name", name)
    if kind is not _UNSET:
        change("kind", kind)
    if base_url is not _UNSET:
        change("base_url", normalize_base_url(base_url))
    if default_model is not _UNSET:
        change("default_model", default_model)
    if input_price_per_million is not _UNSET:
        change("input_price_per_million", _prices(input_price_per_million))
    if output_price_per_million is not _UNSET:
        change("output_price_per_million", _prices(output_price_per_million))
    if model_prices is not _UNSET:
        change("model_prices", _model_prices(model_prices))
    if api_key is not _UNSET:
        encrypted, last4 = _encrypt(api_key or "")
        had_key = provider.api_key_set
        provider.api_key_encrypted, provider.api_key_last4 = encrypted, last4
        if had_key or encrypted:
            changes["api_key"] = {"changed": True, "set": bool(encrypted)}
    if changes:
        try:
            with transaction.atomic():
                provider.save()
        except IntegrityError:
            raise _name_taken("llm_provider", provider.name) from None
        audit_record(
            organization=provider.organization,
            event="llm_provider.updated",
            actor=actor,
            target=("llm_provider", provider.id),
            data={"name": provider.name, "changes": changes},
        )
    return provider


@transaction.atomic
def llm_provider_delete(*, provider: LlmProvider, actor) -> None:
    """Delete a provider. Refused (409 llm_provider_in_use) while agents name it: re-point them first, so
    no agent silently moves to another vendor."""
    in_use = list(Agent.objects.filter(provider=provider).order_by("created_at").values_list("id", flat=True))
    if in_use:
        raise Conflict(
            "llm_provider_in_use",
            f"{len(in_use)} agent(s) use this provider; point them at another provider first.",
            details={"agent_ids": in_use[:50]},
        )
    organization, summary, provider_id = provider.organization, _provider_summary(provider), provider.id
    provider.delete()
    audit_record(
        organization=organization,
        event="llm_provider.deleted",
        actor=actor,
        target=("llm_provider", provider_id),
        data=summary,
    )


# --- agents --------------------------------------------------------------------------------------


def agents_seed_builtin(organization) -> list[Agent]:
    """Create the built-in agents the organisation lacks (idempotent; by `builtin_key`)."""
    have = set(Agent.objects.filter(organization=organization).values_list("builtin_key", flat=True))
    names = set(Agent.objects.filter(organization=organization).values_list("name", flat=True))
    created = []
    for spec in BUILTIN_AGENTS:
        if spec["builtin_key"] in have:
            continue
        name = spec["name"] if spec["name"] not in names else f"{spec['name']} (built-in)"
        created.append(Agent(organization=organization, kind=AgentKind.BUILT_IN, **{**spec, "name": name}))
    return Agent.objects.bulk_create(created)


def _agent_provider(organization, provider_id):
    if provider_id is None:
        return None
    provider = LlmProvider.objects.filter(organization=organization, pk=provider_id).first()
    if provider is None:
        raise _field_error("provider_id", f"LLM provider {provider_id} was not found.")
    return provider


def _agent_summary(agent: Agent) -> dict:
    return {"name": agent.name, "kind": agent.kind, "model": agent.model, "provider_id": agent.provider_id}


@transaction.atomic
def agent_create(
    *,
    organization,
    actor,
    name: str,
    model: str = "",
    provider_id: str | None = None,
    system_prompt: str = "",
    temperature: float | None = None,
    max_tokens: int | None = None,
    description: str = "",
) -> Agent:
    provider = _agent_provider(organization, provider_id)
    if Agent.objects.filter(organization=organization, name=name).exists():
        raise _name_taken("agent", name)
    try:
        with transaction.atomic():
            agent = Agent.objects.create(
                organization=organization,
                name=name,
                kind=AgentKind.CUSTOM,
                model=model,
                provider=provider,
                system_prompt=system_prompt,
                temperature=temperature,
                max_tokens=max_tokens,
                description=description,
            )
    except IntegrityError:
        raise _name_taken("agent", name) from None
    audit_record(
        organization=organization,
        event="agent.created",
        actor=actor,
        target=("agent", agent.id),
        data=_agent_summary(agent),
    )
    return agent


AGENT_FIELDS = ("name", "model", "system_prompt", "temperature", "max_tokens", "description")


@transaction.atomic
def agent_update(*, agent: Agent, actor, **fields) -> Agent:
    """Change the given fields (`provider_id` None = the organisation's first provider). A built-in agent
    may be tuned (model, provider, prompt, sampling, description) but keeps its name (409 agent_builtin)."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    unknown = set(fields) - {*AGENT_FIELDS, "provider_id"}
    if unknown:
        raise InvalidRequest("invalid_request", f"Unknown agent field(s): {', '.join(sorted(unknown))}.")
    changes: dict = {}
    if "name" in fields and fields["name"] != agent.name:
        if agent.kind == AgentKind.BUILT_IN:
            raise Conflict(
                "agent_builtin", "A built-in agent cannot be renamed; create a custom agent instead."
            )
        if Agent.objects.filter(organization_id=agent.organization_id, name=fields["name"]).exists():
            raise _name_taken("agent", fields["name"])
    for field in AGENT_FIELDS:
        if field in fields and fields[field] != getattr(agent, field):
            # Prompts can be long: the audit event says that one changed, and its new length.
            changes[field] = (
                {"changed": True, "length": len(fields[field])}
                if field == "system_prompt"
                else {"from": getattr(agent, field), "to": fields[field]}
            )
            setattr(agent, field, fields[field])
    if "provider_id" in fields and fields["provider_id"] != agent.provider_id:
        provider = _agent_provider(agent.organization, fields["provider_id"])
        changes["provider_id"] = {"from": agent.provider_id, "to": provider.id if provider else None}
        agent.provider = provider
    if changes:
        try:
            with transaction.atomic():
                agent.save()
        except IntegrityError:
            raise _name_taken("agent", agent.name) from None
        audit_record(
            organization=agent.organization,
            event="agent.updated",
            actor=actor,
            target=("agent", agent.id),
            data={"name": agent.name, "changes": changes},
        )
    return agent


@transaction.atomic
def agent_delete(*, agent: Agent, actor) -> None:
    if agent.kind == AgentKind.BUILT_IN:
        raise Conflict("agent_builtin", f"'{agent.name}' is a built-in agent and cannot be deleted.")
    organization, summary, agent_id = agent.organization, _agent_summary(agent), agent.id
    agent.delete()
    audit_record(
        organization=organization,
        event="agent.deleted",
        actor=actor,
        target=("agent", agent_id),
        data=summary,
    )
