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


MODEL_PRICES_MAX = 200
MODEL_NAME_MAX = 200
PRICE_MAX = 999_999


def _is_price(value) -> bool:
    number = isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    return number and 0 <= value <= PRICE_MAX


def model_prices_normalize(value) -> dict:
    """{model: {"input"?, "output"?}} checked (at most 200 models, names of 1 to 200 characters, prices
    between 0 and 999,999 USD per million tokens) and rounded to six decimals. InvalidRequest naming each
    bad model under `details.fields.model_prices`."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _field_error("model_prices", 'Must be an object of {model: {"input", "output"}}.')
    if len(value) > MODEL_PRICES_MAX:
        raise _field_error("model_prices", f"At most {MODEL_PRICES_MAX} models.")
    errors, prices = {}, {}
    for model, entry in value.items():
        if not isinstance(model, str) or not 0 < len(model) <= MODEL_NAME_MAX:
            errors[str(model)[:MODEL_NAME_MAX]] = [f"A model name is 1 to {MODEL_NAME_MAX} characters."]
        elif not isinstance(entry, dict) or not entry or set(entry) - {"input", "output"}:
            errors[model] = ['Must be {"input": number, "output": number} (either may be left out).']
        elif bad := [key for key, price in entry.items() if not _is_price(price)]:
            errors[model] = [f"{', '.join(bad)} must be a number between 0 and {PRICE_MAX}."]
        else:
            prices[model] = {key: float(_prices(price)) for key, price in entry.items()}
    if errors:
        message = "; ".join(f"{model}: {texts[0]}" for model, texts in errors.items())
        raise InvalidRequest("invalid_request", message, details={"fields": {"model_prices": errors}})
    return prices


def _provider_summary(provider: LlmProvider) -> dict:
    return {
        "name": provider.name,
        "kind": provider.kind,
        "base_url": provider.base_url,
        "default_model": provider.default_model,
        "api_key_set": provider.api_key_set,
    }


def _name_free(model, kind: str, organization_id, name: str) -> None:
    if model.objects.filter(organization_id=organization_id, name=name).exists():
        raise _name_taken(kind, name)


def _saved(obj, kind: str) -> None:
    """Save `obj`; a name taken meanwhile (the unique constraint) is the same 409 as the check before."""
    try:
        with transaction.atomic():
            obj.save()
    except IntegrityError:
        raise _name_taken(kind, obj.name) from None


def _audit(kind: str, verb: str, *, organization, actor, object_id: str, data: dict) -> None:
    audit_record(
        organization=organization, event=f"{kind}.{verb}", actor=actor, target=(kind, object_id), data=data
    )


def _create_saved(obj, kind: str, actor, summary):
    """Save the new `obj` and audit `<kind>.created` with `summary(obj)`; returns `obj`."""
    _saved(obj, kind)
    _audit(kind, "created", organization=obj.organization, actor=actor, object_id=obj.id, data=summary(obj))
    return obj


def _update_saved(obj, kind: str, changes: dict, actor):
    """Save `obj` and audit `<kind>.updated` when anything changed; returns `obj`."""
    if changes:
        _saved(obj, kind)
        _audit(kind, "updated", organization=obj.organization, actor=actor, object_id=obj.id,
               data={"name": obj.name, "changes": changes})  # fmt: skip
    return obj


# --- providers -----------------------------------------------------------------------------------

_PROVIDER_NORMALIZERS = {
    "base_url": normalize_base_url,
    "input_price_per_million": _prices,
    "output_price_per_million": _prices,
    "model_prices": model_prices_normalize,
}


def _provider_apply(provider: LlmProvider, values: dict) -> dict:
    """Check and set `values` on `provider` (unsaved): the one validation path of create and update.
    Returns the audit's changes; the API key is said to change, never what it is."""
    changes: dict = {}
    values = dict(values)
    if "api_key" in values:
        encrypted, last4 = _encrypt(values.pop("api_key") or "")
        if provider.api_key_set or encrypted:
            changes["api_key"] = {"changed": True, "set": bool(encrypted)}
        provider.api_key_encrypted, provider.api_key_last4 = encrypted, last4
    for field, value in values.items():
        value = _PROVIDER_NORMALIZERS.get(field, lambda v: v)(value)
        old = getattr(provider, field)
        if old == value:
            continue
        if field == "name":
            _name_free(LlmProvider, "llm_provider", provider.organization_id, value)
        as_json = float if isinstance(value, Decimal) else (lambda v: v)
        changes[field] = {"from": as_json(old), "to": as_json(value)}
        setattr(provider, field, value)
    return changes


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
    provider = LlmProvider(organization=organization, kind=kind, base_url="", default_model="")
    _provider_apply(
        provider,
        {
            "name": name,
            "default_model": default_model,
            "base_url": base_url or DEFAULT_BASE_URLS[LlmProviderKind(kind)],
            "api_key": api_key,
            "input_price_per_million": input_price_per_million,
            "output_price_per_million": output_price_per_million,
            "model_prices": model_prices,
        },
    )
    return _create_saved(provider, "llm_provider", actor, _provider_summary)


PROVIDER_FIELDS = (
    "name",
    "kind",
    "base_url",
    "api_key",
    "default_model",
    "input_price_per_million",
    "output_price_per_million",
    "model_prices",
)


@transaction.atomic
def llm_provider_update(*, provider: LlmProvider, actor, **fields) -> LlmProvider:
    """Change the given fields (PROVIDER_FIELDS). `api_key`: a new key replaces the old one, "" or None
    removes it. The audit event says the key changed, never what it is."""
    unknown = set(fields) - set(PROVIDER_FIELDS)
    if unknown:
        raise InvalidRequest("invalid_request", f"Unknown provider field(s): {', '.join(sorted(unknown))}.")
    provider = LlmProvider.objects.select_for_update().get(pk=provider.pk)
    return _update_saved(provider, "llm_provider", _provider_apply(provider, fields), actor)


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
    _audit(
        "llm_provider", "deleted", organization=organization, actor=actor, object_id=provider_id, data=summary
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


def _agent_provider(organization_id, provider_id):
    if provider_id is None:
        return None
    provider = LlmProvider.objects.filter(organization_id=organization_id, pk=provider_id).first()
    if provider is None:
        raise _field_error("provider_id", f"LLM provider {provider_id} was not found.")
    return provider


def _agent_summary(agent: Agent) -> dict:
    return {"name": agent.name, "kind": agent.kind, "model": agent.model, "provider_id": agent.provider_id}


AGENT_FIELDS = ("name", "model", "system_prompt", "temperature", "max_tokens", "description")


def _agent_apply(agent: Agent, values: dict) -> dict:
    """Check and set `values` on `agent` (unsaved): the one validation path of create and update. Returns
    the audit's changes (a prompt's change is said with its new length: prompts can be long)."""
    unknown = set(values) - {*AGENT_FIELDS, "provider_id"}
    if unknown:
        raise InvalidRequest("invalid_request", f"Unknown agent field(s): {', '.join(sorted(unknown))}.")
    changes: dict = {}
    for field, value in values.items():
        old = agent.provider_id if field == "provider_id" else getattr(agent, field)
        if old == value:
            continue
        if field == "provider_id":
            provider = _agent_provider(agent.organization_id, value)
            changes[field] = {"from": old, "to": provider.id if provider else None}
            agent.provider = provider
            continue
        if field == "name":
            if agent.kind == AgentKind.BUILT_IN:
                raise Conflict(
                    "agent_builtin", "A built-in agent cannot be renamed; create a custom agent instead."
                )
            _name_free(Agent, "agent", agent.organization_id, value)
        changes[field] = (
            {"changed": True, "length": len(value)}
            if field == "system_prompt"
            else {"from": old, "to": value}
        )
        setattr(agent, field, value)
    return changes


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
    agent = Agent(organization=organization, kind=AgentKind.CUSTOM, name="")
    _agent_apply(
        agent,
        {
            "provider_id": provider_id,
            "name": name,
            "model": model,
            "system_prompt": system_prompt,
            "temperature": temperature,
            "max_tokens": max_tokens,
            "description": description,
        },
    )
    return _create_saved(agent, "agent", actor, _agent_summary)


@transaction.atomic
def agent_update(*, agent: Agent, actor, **fields) -> Agent:
    """Change the given fields (`provider_id` None = the organisation's first provider). A built-in agent
    may be tuned (model, provider, prompt, sampling, description) but keeps its name (409 agent_builtin)."""
    agent = Agent.objects.select_for_update().get(pk=agent.pk)
    return _update_saved(agent, "agent", _agent_apply(agent, fields), actor)


@transaction.atomic
def agent_delete(*, agent: Agent, actor) -> None:
    if agent.kind == AgentKind.BUILT_IN:
        raise Conflict("agent_builtin", f"'{agent.name}' is a built-in agent and cannot be deleted.")
    organization, summary, agent_id = agent.organization, _agent_summary(agent), agent.id
    agent.delete()
    _audit("agent", "deleted", organization=organization, actor=actor, object_id=agent_id, data=summary)
