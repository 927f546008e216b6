"""The OpenAPI description of the accounts endpoints, apart from the views: one `extend_schema_view`
per view, applied as its class decorator (`@schema.PROJECTS`)."""

from drf_spectacular.plumbing import build_mock_request as spectacular_mock_request
from drf_spectacular.utils import extend_schema, extend_schema_view

from accounts.api import serializers as s
from accounts.choices import Role
from accounts.models import Organization, User
from accounts.principal import Principal
from config.api.schema import error_response, resource_schema

# --- sign-in, /me, /organization ------------------------------------------------------------

TOKEN = extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_create",
        request=s.TokenRequestSerializer,
        responses={
            200: s.TokenPairSerializer,
            400: error_response("invalid_request, organization_required"),
            401: error_response(
                "unauthorized: wrong email or password; otp_required, invalid_code: two-factor is on"
            ),
            403: error_response(
                "two_factor_required: the organisation requires two-factor sign-in of your role and it is off"
            ),
            429: error_response("rate_limited: too many sign-in attempts"),
        },
        auth=[],
    )
)
TOKEN_REFRESH = extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_refresh",
        request=s.RefreshRequestSerializer,
        responses={
            200: s.AccessTokenSerializer,
            401: error_response("unauthorized"),
            403: error_response(
                "two_factor_required: the organisation requires two-factor sign-in of your role and it is off"
            ),
        },
        auth=[],
    )
)
ME = extend_schema_view(get=extend_schema(operation_id="me_retrieve", responses={200: s.MeSerializer}))
ORGANIZATION = extend_schema_view(
    get=extend_schema(operation_id="organization_retrieve", responses={200: s.OrganizationSerializer}),
    patch=extend_schema(
        operation_id="organization_update",
        request=s.OrganizationUpdateSerializer,
        responses={
            200: s.OrganizationSerializer,
            400: error_response("invalid_request"),
            403: error_response("forbidden: plan, limits and retention_days are owner-only"),
        },
    ),
)

# --- members, API keys --------------------------------------------------------------------

MEMBERS = resource_schema(
    s.MemberSerializer,
    verbs=("list", "create", "partial_update", "destroy"),
    create=s.MemberCreateSerializer,
    created=s.MemberCreatedSerializer,
    update=s.MemberUpdateSerializer,
    errors={
        "create": {403: "forbidden: only owners add owners", 409: "member_exists"},
        "partial_update": {404: "member_not_found", 409: "last_owner"},
        "destroy": {404: "member_not_found", 409: "last_owner"},
    },
)
API_KEYS = resource_schema(
    s.ApiKeySerializer,
    verbs=("list", "create", "destroy"),
    create=s.ApiKeyCreateSerializer,
    created=s.ApiKeyCreatedSerializer,
    errors={
        "create": {400: "invalid_request", 403: "forbidden / insufficient_scope"},
        "destroy": {404: "api_key_not_found"},
    },
)
# --- LLM providers and agents (docs/llm.md) ---------------------------------------------------------

LLM_PROVIDERS = resource_schema(
    s.LlmProviderSerializer,
    create=s.LlmProviderCreateSerializer,
    update=s.LlmProviderUpdateSerializer,
    summary={
        "list": "List LLM providers",
        "create": "Add an LLM provider",
        "retrieve": "An LLM provider",
        "partial_update": "Change an LLM provider",
        "destroy": "Delete an LLM provider",
    },
    errors={
        "create": {409: "llm_provider_name_taken"},
        "retrieve": {404: "llm_provider_not_found"},
        "partial_update": {404: "llm_provider_not_found", 409: "llm_provider_name_taken"},
        "destroy": {
            404: "llm_provider_not_found",
            409: "llm_provider_in_use: agents use it (`details.agent_ids`)",
        },
    },
)
AGENTS = resource_schema(
    s.AgentSerializer,
    create=s.AgentWriteSerializer,
    update=s.AgentUpdateSerializer,
    summary={
        "list": "List agents",
        "create": "Create a custom agent",
        "retrieve": "An agent",
        "partial_update": "Change an agent",
        "destroy": "Delete a custom agent",
    },
    description={
        "partial_update": "Built-in agents may be tuned (model, provider, prompt, sampling) but not renamed."
    },
    errors={
        "create": {409: "agent_name_taken"},
        "retrieve": {404: "agent_not_found"},
        "partial_update": {
            404: "agent_not_found",
            409: "agent_name_taken; agent_builtin (renaming a built-in agent)",
        },
        "destroy": {404: "agent_not_found", 409: "agent_builtin: built-in agents cannot be deleted"},
    },
)

# --- security policy, signing secret, secrets (docs/security.md) -----------------------------------

SECURITY_POLICY = extend_schema_view(
    get=extend_schema(
        operation_id="security_policy_retrieve",
        summary="The organisation's security policy",
        responses={200: s.SecurityPolicySerializer},
    ),
    put=extend_schema(
        operation_id="security_policy_update",
        summary="Change the security policy",
        description="Fields left out keep their values; unknown fields are a 400. Audited as "
        "`policy.updated` with each changed field's before and after.",
        request=s.SecurityPolicyUpdateSerializer,
        responses={
            200: s.SecurityPolicySerializer,
            400: error_response("invalid_request (`details.fields`)"),
        },
    ),
)
SIGNING_SECRET = extend_schema_view(
    get=extend_schema(
        operation_id="security_signing_secret_retrieve",
        summary="The webhook signing secret",
        description="Webhook steps sign deliveries with it (X-Baton-Signature: t=…,v1=…). Created on first "
        "use.",
        responses={200: s.SigningSecretSerializer},
    )
)
SIGNING_SECRET_ROTATE = extend_schema_view(
    post=extend_schema(
        operation_id="security_signing_secret_rotate",
        summary="Rotate the webhook signing secret",
        description="A new random secret signs from now on; the previous one also signs (a second v1= entry) "
        "for `grace_seconds`. Audited as `signing_secret.rotated`.",
        request=s.SigningSecretRotateSerializer,
        responses={200: s.SigningSecretSerializer, 400: error_response("invalid_request")},
    )
)
SECRETS = resource_schema(
    s.SecretSerializer,
    create=s.SecretCreateSerializer,
    update=s.SecretUpdateSerializer,
    summary={
        "list": "List secrets (names only)",
        "create": "Create a secret",
        "retrieve": "A secret (never its value)",
        "partial_update": "Rename, describe or replace the value of a secret",
        "destroy": "Delete a secret",
    },
    errors={
        "create": {409: "secret_name_taken"},
        "retrieve": {404: "secret_not_found"},
        "partial_update": {404: "secret_not_found", 409: "secret_name_taken"},
        "destroy": {404: "secret_not_found"},
    },
)


def build_mock_request(method, path, view, original_request, **kwargs):
    """drf-spectacular's mock request (SPECTACULAR_SETTINGS["GET_MOCK_REQUEST"]), authenticated as an
    (unsaved) owner of an (unsaved) organisation, so views' get_queryset() that scope by
    request.auth.organization work during schema generation without special cases."""
    request = spectacular_mock_request(method, path, view, original_request, **kwargs)
    organization = Organization(pk="org_schema", name="Schema")
    user = User(pk="usr_schema", email="schema@example.com")
    request.user = user
    request.auth = Principal(organization=organization, user=user, role=Role.OWNER)
    return request
