"""Shapes of LLM providers and agents (docs/llm.md). API keys are write-only: responses say only whether
one is set (`api_key_set`) and, for long keys, its last four characters."""

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from accounts.models import Agent, LlmProvider, LlmProviderKind
from accounts.services.llm import model_prices_normalize
from config.api.serializers import StrictSerializer
from config.errors import ApplicationError

PRICE = {"max_digits": 12, "decimal_places": 6, "min_value": 0, "coerce_to_string": False}


@extend_schema_field(
    {
        "type": "object",
        "description": "Per-model prices in USD per million tokens, overriding the provider's prices.",
        "additionalProperties": {
            "type": "object",
            "properties": {
                "input": {"type": "number", "minimum": 0},
                "output": {"type": "number", "minimum": 0},
            },
            "additionalProperties": False,
        },
        "example": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
    }
)
class ModelPricesField(serializers.Field):
    """{model: {"input"?, "output"?}}: non-negative numbers; a missing one falls back to the provider's."""

    def to_internal_value(self, data):
        try:
            return model_prices_normalize(data)
        except ApplicationError as exc:
            fields = (exc.details or {}).get("fields", {}).get("model_prices")
            raise serializers.ValidationError(fields if isinstance(fields, dict) else exc.message) from None

    def to_representation(self, value):
        return value


class LlmProviderSerializer(serializers.ModelSerializer):
    api_key_set = serializers.BooleanField(read_only=True, help_text="Whether an API key is stored.")
    api_key_last4 = serializers.CharField(
        read_only=True, help_text="The key's last four characters (empty for keys under 16 characters)."
    )
    input_price_per_million = serializers.DecimalField(**PRICE, read_only=True)
    output_price_per_million = serializers.DecimalField(**PRICE, read_only=True)
    model_prices = ModelPricesField(read_only=True)

    class Meta:
        model = LlmProvider
        fields = [
            "id",
            "name",
            "kind",
            "base_url",
            "api_key_set",
            "api_key_last4",
            "default_model",
            "input_price_per_million",
            "output_price_per_million",
            "model_prices",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


API_KEY_HELP = (
    "Write-only: stored encrypted, never returned. Sent as Bearer (openai) or x-api-key (anthropic)."
)
BASE_URL_HELP = (
    "openai: the URL that /chat/completions is appended to (default https://api.openai.com/v1); anthropic: "
    "the URL that /v1/messages is appended to (default https://api.anthropic.com). Reached through the "
    "security policy's outbound rules."
)


class LlmProviderCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    kind = serializers.ChoiceField(choices=LlmProviderKind.choices)
    base_url = serializers.CharField(max_length=2000, required=False, help_text=BASE_URL_HELP)
    api_key = serializers.CharField(
        max_length=4096, required=False, allow_blank=True, write_only=True, help_text=API_KEY_HELP
    )
    default_model = serializers.CharField(max_length=200)
    input_price_per_million = serializers.DecimalField(**PRICE, required=False, default=0)
    output_price_per_million = serializers.DecimalField(**PRICE, required=False, default=0)
    model_prices = ModelPricesField(required=False, default=dict)


class LlmProviderUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100, required=False)
    kind = serializers.ChoiceField(choices=LlmProviderKind.choices, required=False)
    base_url = serializers.CharField(max_length=2000, required=False, help_text=BASE_URL_HELP)
    api_key = serializers.CharField(
        max_length=4096,
        required=False,
        allow_blank=True,
        allow_null=True,
        write_only=True,
        help_text=API_KEY_HELP + ' "" or null removes the key.',
    )
    default_model = serializers.CharField(max_length=200, required=False)
    input_price_per_million = serializers.DecimalField(**PRICE, required=False)
    output_price_per_million = serializers.DecimalField(**PRICE, required=False)
    model_prices = ModelPricesField(required=False)


class AgentSerializer(serializers.ModelSerializer):
    provider_id = serializers.CharField(
        read_only=True, allow_null=True, help_text="null: the organisation's first provider."
    )

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "kind",
            "model",
            "provider_id",
            "system_prompt",
            "temperature",
            "max_tokens",
            "description",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=100)
    model = serializers.CharField(
        max_length=200, required=False, allow_blank=True, help_text='"": the provider\'s default model.'
    )
    provider_id = serializers.CharField(
        max_length=64, required=False, allow_null=True, help_text="null: the organisation's first provider."
    )
    system_prompt = serializers.CharField(
        max_length=65_536, required=False, allow_blank=True, trim_whitespace=False
    )
    temperature = serializers.FloatField(min_value=0, max_value=2, required=False, allow_null=True)
    max_tokens = serializers.IntegerField(min_value=1, max_value=200_000, required=False, allow_null=True)
    description = serializers.CharField(max_length=2000, required=False, allow_blank=True)


class AgentUpdateSerializer(AgentWriteSerializer):
    name = serializers.CharField(max_length=100, required=False)
