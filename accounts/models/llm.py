"""LLM providers and agents of an organisation (see docs/llm.md)."""

from decimal import Decimal

from django.db import models
from django.utils import timezone

from config.ids import id_field


class LlmProviderKind(models.TextChoices):
    OPENAI = "openai", "OpenAI-compatible Chat Completions"
    ANTHROPIC = "anthropic", "Anthropic Messages"


class AgentKind(models.TextChoices):
    BUILT_IN = "built-in", "Built-in"
    CUSTOM = "custom", "Custom"


PRICE_DIGITS = {"max_digits": 12, "decimal_places": 6}


class LlmProvider(models.Model):
    """An endpoint Baton calls for agent steps. The API key is stored only encrypted (accounts.crypto)."""

    id = id_field("llm")
    organization = models.ForeignKey(
        "accounts.Organization", on_delete=models.CASCADE, related_name="llm_providers"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=LlmProviderKind.choices)
    base_url = models.CharField(max_length=2000)
    api_key_encrypted = models.TextField(blank=True, default="")
    api_key_last4 = models.CharField(max_length=4, blank=True, default="")
    default_model = models.CharField(max_length=200)
    input_price_per_million = models.DecimalField(**PRICE_DIGITS, default=Decimal("0"))
    output_price_per_million = models.DecimalField(**PRICE_DIGITS, default=Decimal("0"))
    # {"<model>": {"input": <USD per million prompt tokens>, "output": <USD per million completion tokens>}}
    model_prices = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="llm_provider_name_unique"),
        ]

    def __str__(self):
        return f"{self.name} ({self.kind})"

    @property
    def api_key_set(self) -> bool:
        return bool(self.api_key_encrypted)

    def prices_for(self, model: str) -> tuple[Decimal, Decimal]:
        """(input, output) USD per million tokens for `model`: its per-model price, else the provider's."""
        override = (self.model_prices or {}).get(model) or {}
        return (
            Decimal(str(override.get("input", self.input_price_per_million))),
            Decimal(str(override.get("output", self.output_price_per_million))),
        )


class Agent(models.Model):
    """A saved agent: a system prompt with a model and sampling settings. Built-ins are seeded for every
    organisation (accounts.builtin_agents) and cannot be deleted."""

    id = id_field("agent")
    organization = models.ForeignKey("accounts.Organization", on_delete=models.CASCADE, related_name="agents")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=AgentKind.choices, default=AgentKind.CUSTOM)
    # A built-in's stable key ("general", "summarizer", …) so seeding is idempotent; "" for custom agents.
    builtin_key = models.CharField(max_length=40, blank=True, default="")
    description = models.TextField(blank=True, default="", max_length=2000)
    # "" = the provider's default model.
    model = models.CharField(max_length=200, blank=True, default="")
    # null = the organisation's first provider (the oldest).
    provider = models.ForeignKey(
        LlmProvider, null=True, blank=True, on_delete=models.PROTECT, related_name="agents"
    )
    system_prompt = models.TextField(blank=True, default="", max_length=65_536)
    temperature = models.FloatField(null=True, blank=True)  # null = the provider's default
    max_tokens = models.PositiveIntegerField(null=True, blank=True)  # null = Baton's default (4096)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "name"], name="agent_name_unique"),
            models.UniqueConstraint(
                fields=["organization", "builtin_key"],
                condition=~models.Q(builtin_key=""),
                name="agent_builtin_key_unique",
            ),
        ]

    def __str__(self):
        return self.name
