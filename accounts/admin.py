"""The operator console (superusers). Writes that have rules go through the services; the key secret
is never shown (only its prefix, last four characters and hash metadata)."""

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm, UserChangeForm

from accounts.models import Agent, ApiKey, LlmProvider, Membership, Organization, User


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]


class UserCreateForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ["email", "name"]

    def clean_email(self):
        return User.objects.normalize_email(self.cleaned_data["email"]).lower()


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreateForm
    ordering = ["email"]
    list_display = ["email", "name", "is_active", "is_staff", "date_joined"]
    list_filter = ["is_active", "is_staff", "is_superuser"]
    search_fields = ["email", "name"]
    readonly_fields = ["id", "date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["id", "email", "password", "name"]}),
        ("Permissions", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["last_login", "date_joined"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "name", "password1", "password2"]})]


@admin.register(Organization)
class OrganizationAdmin(admin.ModelAdmin):
    list_display = ["name", "id", "plan", "retention_days", "created_at"]
    list_filter = ["plan"]
    search_fields = ["name", "id"]
    readonly_fields = ["id", "created_at", "updated_at"]
    inlines = [MembershipInline]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ["name", "organization", "prefix", "last4", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix", "id", "organization__name"]
    fields = [
        "id",
        "organization",
        "name",
        "prefix",
        "last4",
        "scopes",
        "pepper_id",
        "key_hash",
        "created_by",
        "created_at",
        "expires_at",
        "last_used_at",
        "revoked_at",
        "revoked_by",
    ]
    readonly_fields = fields  # keys are created and revoked through the API, never edited here

    def has_add_permission(self, request):
        return False


# LLM providers and agents: read-only (writes go through the API, which validates and audits); a
# provider's key is never shown, not even encrypted.


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
