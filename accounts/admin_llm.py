"""Operator console pages for LLM providers and agents (read-only: writes go through the API, which
validates and audits). A provider's key is never shown, not even encrypted."""

from django.contrib import admin

from accounts.models_llm import Agent, LlmProvider


@admin.register(LlmProvider)
class LlmProviderAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "kind", "base_url", "default_model", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "id", "organization__name", "base_url"]
    fields = [
        "id",
        "organization",
        "name",
        "kind",
        "base_url",
        "api_key_last4",
        "default_model",
        "input_price_per_million",
        "output_price_per_million",
        "model_prices",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "kind", "model", "provider", "created_at"]
    list_filter = ["kind"]
    search_fields = ["name", "id", "organization__name"]
    fields = [
        "id",
        "organization",
        "name",
        "kind",
        "builtin_key",
        "description",
        "model",
        "provider",
        "system_prompt",
        "temperature",
        "max_tokens",
        "created_at",
        "updated_at",
    ]
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
