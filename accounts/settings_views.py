"""Settings pages for admins: LLM providers, agents, secrets, the security policy and the webhook signing
secret (docs/dashboard.md). Each write is validated by the API's own input serializer and done by the
API's service, so the rules, limits and audit events are the API's; a refusal is shown next to the field
it names. API keys and secret values are write-only: no page ever shows one back."""

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import messages
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts import selectors, services
from accounts.api.serializers import llm as llm_shapes
from accounts.api.serializers import security as security_shapes
from accounts.choices import Role
from accounts.dashboard import dashboard_page
from accounts.models import LlmProviderKind
from accounts.models.security import SECRET_VALUE_MAX_BYTES
from accounts.services.security import DEFAULT_SIGNING_GRACE_SECONDS, MAX_SIGNING_GRACE_SECONDS
from config.errors import ApplicationError

WRITE_ONLY = forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"})
LINES = forms.Textarea(attrs={"rows": 4, "class": "code"})
PRICE = {"required": False, "min_value": 0, "max_digits": 12, "decimal_places": 6}


def _messages_of(errors) -> list[str]:
    if isinstance(errors, dict):
        return [f"{key}: {text}" for key, value in errors.items() for text in _messages_of(value)]
    if isinstance(errors, list | tuple):
        return [text for item in errors for text in _messages_of(item)]
    return [str(errors)]


def _place_errors(form: forms.Form, errors: dict) -> None:
    for field, problems in errors.items():
        target = field if field in form.fields else None
        for text in _messages_of(problems):
            form.add_error(target, text)


def api_validated(serializer_class, data: dict, form: forms.Form) -> dict | None:
    """`data` checked by the API's input serializer; its errors land next to the form's fields."""
    serializer = serializer_class(data=data)
    if serializer.is_valid():
        return dict(serializer.validated_data)
    _place_errors(form, serializer.errors)
    return None


def service_refused(form: forms.Form, exc: ApplicationError) -> int:
    """A service's refusal next to the fields it names (else above the form); the status to answer."""
    if exc.status == 404:
        raise exc
    fields = (exc.details or {}).get("fields")
    if isinstance(fields, dict) and fields:
        _place_errors(form, fields)
    else:
        form.add_error(None, exc.message)
    return exc.status


def _json(value):
    return float(value) if isinstance(value, Decimal) else value


# --- the forms (HTML only: the API's serializers judge) ----------------------------------------------


class ModelPricesField(forms.CharField):
    """Per-model prices as lines of `model input output` (USD per million tokens; `-` falls back to the
    provider's price), read into the API's {model: {"input", "output"}} for its serializer and service."""

    widget = forms.Textarea(attrs={"rows": 4, "class": "code", "spellcheck": "false"})

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("max_length", 40_000)
        kwargs.setdefault("label", "Per-model prices")
        kwargs.setdefault(
            "help_text",
            "One model a line: name, input price, output price (USD per million tokens), e.g. "
            '"gpt-4o-mini 0.15 0.6"; "-" keeps the provider\'s price. They override the prices above.',
        )
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if isinstance(value, dict):
            return "\n".join(
                " ".join([model, *(_price_text(entry.get(key)) for key in ("input", "output"))])
                for model, entry in sorted(value.items())
            )
        return value

    def clean(self, value):
        prices: dict = {}
        for number, line in enumerate((super().clean(value) or "").splitlines(), start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 3:
                raise forms.ValidationError(f"Line {number}: write a model name and two prices.")
            model, *texts = parts
            entry = {}
            for key, text in zip(("input", "output"), texts, strict=True):
                if text == "-":
                    continue
                try:
                    entry[key] = float(Decimal(text))
                except ArithmeticError:
                    raise forms.ValidationError(f"Line {number}: {text} is not a number.") from None
            prices[model] = entry
        return prices


def _price_text(value) -> str:
    return "-" if value is None else format(Decimal(str(value)).normalize(), "f")


class ProviderForm(forms.Form):
    name = forms.CharField(max_length=100)
    kind = forms.ChoiceField(
        choices=LlmProviderKind.choices,
        help_text="openai: any OpenAI-compatible Chat Completions endpoint (OpenAI, Azure, vLLM, Ollama…).",
    )
    base_url = forms.CharField(
        max_length=2000, required=False, label="Base URL", help_text="Empty: the vendor's public endpoint."
    )
    api_key = forms.CharField(
        max_length=4096,
        required=False,
        widget=WRITE_ONLY,
        label="API key",
        help_text="Write-only: stored encrypted and never shown again.",
    )
    default_model = forms.CharField(max_length=200, label="Default model")
    input_price_per_million = forms.DecimalField(**PRICE, label="Input price (USD per million tokens)")
    output_price_per_million = forms.DecimalField(**PRICE, label="Output price (USD per million tokens)")
    model_prices = ModelPricesField()


class ProviderEditForm(ProviderForm):
    api_key = forms.CharField(
        max_length=4096,
        required=False,
        widget=WRITE_ONLY,
        label="New API key",
        help_text="Write-only. Empty: keep the stored key.",
    )
    remove_key = forms.BooleanField(required=False, label="Remove the stored key")


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100)
    provider_id = forms.ChoiceField(required=False, label="LLM provider")
    model = forms.CharField(max_length=200, required=False, help_text="Empty: the provider's default model.")
    system_prompt = forms.CharField(
        max_length=65_536,
        required=False,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 6}),
        label="System prompt",
    )
    temperature = forms.FloatField(
        required=False, min_value=0, max_value=2, help_text="Empty: the provider's default."
    )
    max_tokens = forms.IntegerField(required=False, min_value=1, max_value=200_000, label="Max tokens")
    description = forms.CharField(max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, providers=(), **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["provider_id"].choices = [("", "The organisation's first provider")] + [
            (provider.id, provider.name) for provider in providers
        ]


class SecretForm(forms.Form):
    name = forms.CharField(max_length=64, help_text="Used as {{ secrets.NAME }} in step templates.")
    value = forms.CharField(
        max_length=SECRET_VALUE_MAX_BYTES,
        strip=False,
        widget=WRITE_ONLY,
        help_text="Write-only: stored encrypted, never shown, and masked as *** in run traces.",
    )
    description = forms.CharField(max_length=500, required=False)


class SecretEditForm(SecretForm):
    value = forms.CharField(
        max_length=SECRET_VALUE_MAX_BYTES,
        strip=False,
        required=False,
        widget=WRITE_ONLY,
        label="New value",
        help_text="Write-only. Empty: keep the stored value.",
    )


# --- the collections ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Collection:
    """One settings area with a list, a create form and an edit page per object."""

    key: str  # URL names: settings-<key>, settings-<key>-item, settings-<key>-delete
    param: str  # the object id's name in the URL (the tenancy test makes an object per name)
    title: str
    noun: str
    form: type[forms.Form]
    edit_form: type[forms.Form]
    create_shape: Any
    update_shape: Any
    listing: Any
    get: Any
    create: Any
    update: Any
    delete: Any
    initial: Any
    empty: str

    def form_kwargs(self, organization) -> dict:
        if self.key == "agents":
            return {"providers": list(selectors.llm_providers_of(organization).only("id", "name"))}
        return {}


def _provider_data(cleaned: dict, *, creating: bool) -> dict:
    data = {key: _json(value) for key, value in cleaned.items() if key != "remove_key"}
    keep = ("api_key", "model_prices")
    data = {key: value for key, value in data.items() if value not in (None, "") or key in keep}
    if not creating:
        if cleaned.get("remove_key"):
            data["api_key"] = None
        elif not cleaned.get("api_key"):
            data.pop("api_key", None)
    elif not cleaned.get("api_key"):
        data.pop("api_key", None)
    return data


def _agent_data(cleaned: dict, *, creating: bool) -> dict:
    data = dict(cleaned)
    data["provider_id"] = data.get("provider_id") or None
    return data


def _secret_data(cleaned: dict, *, creating: bool) -> dict:
    data = dict(cleaned)
    if not creating and not data.get("value"):
        data.pop("value", None)
    return data


SHAPERS = {"llm-providers": _provider_data, "agents": _agent_data, "secrets": _secret_data}

COLLECTIONS = {
    "llm-providers": Collection(
        key="llm-providers",
        param="provider_id",
        title="LLM providers",
        noun="provider",
        form=ProviderForm,
        edit_form=ProviderEditForm,
        create_shape=llm_shapes.LlmProviderCreateSerializer,
        update_shape=llm_shapes.LlmProviderUpdateSerializer,
        listing=selectors.llm_providers_of,
        get=lambda organization, object_id: selectors.llm_provider_get(
            organization=organization, provider_id=object_id
        ),
        create=services.llm_provider_create,
        update=lambda obj, actor, data: services.llm_provider_update(provider=obj, actor=actor, **data),
        delete=lambda obj, actor: services.llm_provider_delete(provider=obj, actor=actor),
        initial=lambda p: {
            "name": p.name,
            "kind": p.kind,
            "base_url": p.base_url,
            "default_model": p.default_model,
            "input_price_per_million": p.input_price_per_million,
            "output_price_per_million": p.output_price_per_million,
            "model_prices": p.model_prices,
        },
        empty="No LLM provider yet: add one so agent steps can call a model.",
    ),
    "agents": Collection(
        key="agents",
        param="agent_id",
        title="Agents",
        noun="agent",
        form=AgentForm,
        edit_form=AgentForm,
        create_shape=llm_shapes.AgentWriteSerializer,
        update_shape=llm_shapes.AgentUpdateSerializer,
        listing=lambda organization: selectors.agents_of(organization).select_related("provider"),
        get=lambda organization, object_id: selectors.agent_get(
            organization=organization, agent_id=object_id
        ),
        create=services.agent_create,
        update=lambda obj, actor, data: services.agent_update(agent=obj, actor=actor, **data),
        delete=lambda obj, actor: services.agent_delete(agent=obj, actor=actor),
        initial=lambda a: {
            "name": a.name,
            "provider_id": a.provider_id or "",
            "model": a.model,
            "system_prompt": a.system_prompt,
            "temperature": a.temperature,
            "max_tokens": a.max_tokens,
            "description": a.description,
        },
        empty="No agent yet: create one to name a model, provider and system prompt for agent steps.",
    ),
    "secrets": Collection(
        key="secrets",
        param="secret_id",
        title="Secrets",
        noun="secret",
        form=SecretForm,
        edit_form=SecretEditForm,
        create_shape=security_shapes.SecretCreateSerializer,
        update_shape=security_shapes.SecretUpdateSerializer,
        listing=selectors.secrets_of,
        get=lambda organization, object_id: selectors.secret_get(
            organization=organization, secret_id=object_id
        ),
        create=services.secret_create,
        update=lambda obj, actor, data: services.secret_update(secret=obj, actor=actor, **data),
        delete=lambda obj, actor: services.secret_delete(secret=obj, actor=actor),
        initial=lambda s: {"name": s.name, "description": s.description},
        empty="No secret yet: store tokens and passwords here; steps use them as {{ secrets.NAME }}.",
    ),
}


@dashboard_page(role=Role.ADMIN)
def collection_list(request, key: str):
    """The area's objects and a form for a new one (the API's create serializer and service)."""
    area, organization = COLLECTIONS[key], request.principal.organization
    form = area.form(request.POST if request.method == "POST" else None, **area.form_kwargs(organization))
    status = 200
    if request.method == "POST":
        data = (
            api_validated(area.create_shape, SHAPERS[key](form.cleaned_data, creating=True), form)
            if form.is_valid()
            else None
        )
        if data is not None:
            try:
                created = area.create(organization=organization, actor=request.principal, **data)
            except ApplicationError as exc:
                status = service_refused(form, exc)
            else:
                messages.success(request, f"{area.noun.capitalize()} {created.name} created.")
                return redirect(f"dashboard:settings-{key}")
        else:
            status = 400
    context = {
        "nav_active": "settings",
        "area": area,
        "settings_page": key,
        "form": form,
        "objects": list(area.listing(organization)),
    }
    return render(request, f"settings/{key.replace('-', '_')}.html", context, status=status)


@dashboard_page(role=Role.ADMIN)
def collection_item(request, key: str, **ids):
    """Edit one object (the API's update serializer and service); write-only values stay empty."""
    area, organization = COLLECTIONS[key], request.principal.organization
    obj = area.get(organization, ids[area.param])
    form = area.edit_form(
        request.POST if request.method == "POST" else None,
        initial=area.initial(obj),
        **area.form_kwargs(organization),
    )
    status = 200
    if request.method == "POST":
        data = (
            api_validated(area.update_shape, SHAPERS[key](form.cleaned_data, creating=False), form)
            if form.is_valid()
            else None
        )
        if data is not None:
            try:
                area.update(obj, request.principal, data)
            except ApplicationError as exc:
                status = service_refused(form, exc)
            else:
                messages.success(request, f"{area.noun.capitalize()} {obj.name} saved.")
                return redirect(f"dashboard:settings-{key}")
        else:
            status = 400
    context = {"nav_active": "settings", "area": area, "settings_page": key, "form": form, "object": obj}
    return render(request, "settings/item.html", context, status=status)


@require_POST
@dashboard_page(role=Role.ADMIN)
def collection_delete(request, key: str, **ids):
    area = COLLECTIONS[key]
    obj = area.get(request.principal.organization, ids[area.param])
    area.delete(obj, request.principal)
    messages.success(request, f"{area.noun.capitalize()} {obj.name} deleted.")
    return redirect(f"dashboard:settings-{key}")


def collection_urls(path) -> list:
    """The three routes of every collection (for config/dashboard_urls.py)."""
    routes = []
    for key, area in COLLECTIONS.items():
        item = f"settings/{key}/<str:{area.param}>/"
        routes += [
            path(f"settings/{key}/", collection_list, {"key": key}, name=f"settings-{key}"),
            path(item, collection_item, {"key": key}, name=f"settings-{key}-item"),
            path(
                f"{item}delete/",
                collection_delete,
                {"key": key},
                name=f"settings-{key}-delete",
            ),
        ]
    return routes


# --- security policy and the signing secret ------------------------------------------------------------


class PolicyForm(forms.Form):
    allow_script_steps = forms.BooleanField(required=False, label="Allow script steps")
    block_private_networks = forms.BooleanField(required=False, label="Block private networks")
    http_allowlist = forms.CharField(
        required=False, widget=LINES, label="HTTP allowlist (one per line)", max_length=40_000
    )
    max_run_duration_seconds = forms.IntegerField(label="Max run duration (seconds)")
    max_steps_per_run = forms.IntegerField(label="Max steps per run")
    max_tokens_per_run = forms.IntegerField(required=False, label="Max LLM tokens per run")
    require_approval_for_envs = forms.CharField(
        required=False,
        widget=LINES,
        label="Environments that need an approval (one per line)",
        max_length=2_000,
    )
    redact_patterns = forms.CharField(
        required=False,
        widget=LINES,
        label="Redaction patterns (one RE2 expression per line)",
        max_length=30_000,
    )

    LIST_FIELDS = ("http_allowlist", "require_approval_for_envs", "redact_patterns")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            field.help_text = security_shapes.POLICY_HELP.get(name, "")

    def data_for_api(self) -> dict:
        data = dict(self.cleaned_data)
        for name in self.LIST_FIELDS:
            data[name] = [line.strip() for line in (data.get(name) or "").splitlines() if line.strip()]
        return data


class RotateForm(forms.Form):
    grace_seconds = forms.IntegerField(
        min_value=0,
        max_value=MAX_SIGNING_GRACE_SECONDS,
        initial=DEFAULT_SIGNING_GRACE_SECONDS,
        label="Keep signing with the previous secret for (seconds)",
        help_text="0 stops the previous secret at once.",
    )


def _policy_initial(organization) -> dict:
    document = services.security_policy_document(services.security_policy_get(organization=organization))
    for name in PolicyForm.LIST_FIELDS:
        document[name] = "\n".join(document.get(name) or [])
    return document


@dashboard_page(role=Role.ADMIN)
def security_settings(request):
    """The security policy (through the API's serializer and security_policy_update) and the webhook signing
    secret with its rotation (signing_secret_rotate, grace period for the previous one)."""
    organization = request.principal.organization
    form = PolicyForm(
        request.POST if request.method == "POST" else None, initial=_policy_initial(organization)
    )
    status = 200
    if request.method == "POST":
        data = (
            api_validated(security_shapes.SecurityPolicyUpdateSerializer, form.data_for_api(), form)
            if form.is_valid()
            else None
        )
        if data is not None:
            services.security_policy_update(organization=organization, actor=request.principal, changes=data)
            messages.success(request, "Security policy saved.")
            return redirect("dashboard:settings-security")
        status = 400
    row = services.signing_secret_get(organization_id=organization.id)
    context = {
        "nav_active": "settings",
        "settings_page": "security",
        "form": form,
        "rotate_form": RotateForm(),
        "signing": security_shapes.signing_secret_data(row),
    }
    return render(request, "settings/security.html", context, status=status)


@require_POST
@dashboard_page(role=Role.ADMIN)
def signing_secret_rotate(request):
    form = RotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, " ".join(form.errors.get("grace_seconds") or ["Not accepted."]))
        return redirect(reverse("dashboard:settings-security") + "#signing-heading")
    services.signing_secret_rotate(
        organization=request.principal.organization,
        actor=request.principal,
        grace_seconds=form.cleaned_data["grace_seconds"],
    )
    messages.success(request, "Signing secret rotated: give receivers the new one.")
    return redirect(reverse("dashboard:settings-security") + "#signing-heading")
