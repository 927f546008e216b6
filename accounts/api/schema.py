"""The OpenAPI description of the accounts endpoints, apart from the views: one `extend_schema_view`
per view, applied as its class decorator (`@schema.PROJECTS`)."""

from drf_spectacular.plumbing import build_mock_request as spectacular_mock_request
from drf_spectacular.utils import extend_schema, extend_schema_view

from accounts.api import serializers as s
from accounts.choices import Role
from accounts.models import Organization, User
from accounts.principal import Principal
from config.api.schema import error_response

# --- sign-in, /me, /organization ------------------------------------------------------------

TOKEN = extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_create",
        request=s.TokenRequestSerializer,
        responses={
            200: s.TokenPairSerializer,
            400: error_response("invalid_request, organization_required"),
            401: error_response("unauthorized: wrong email or password"),
            429: error_response("rate_limited: too many sign-in attempts"),
        },
        auth=[],
    )
)
TOKEN_REFRESH = extend_schema_view(
    post=extend_schema(
        operation_id="auth_token_refresh",
        request=s.RefreshRequestSerializer,
        responses={200: s.AccessTokenSerializer, 401: error_response("unauthorized")},
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

MEMBERS = extend_schema_view(
    list=extend_schema(responses={200: s.MemberSerializer(many=True)}),
    create=extend_schema(
        request=s.MemberCreateSerializer,
        responses={
            201: s.MemberSerializer,
            403: error_response("forbidden: only owners add owners"),
            409: error_response("member_exists"),
        },
    ),
    partial_update=extend_schema(
        request=s.MemberUpdateSerializer,
        responses={
            200: s.MemberSerializer,
            404: error_response("member_not_found"),
            409: error_response("last_owner"),
        },
    ),
    destroy=extend_schema(
        responses={
            204: None,
            404: error_response("member_not_found"),
            409: error_response("last_owner"),
        },
    ),
)
API_KEYS = extend_schema_view(
    list=extend_schema(responses={200: s.ApiKeySerializer(many=True)}),
    create=extend_schema(
        request=s.ApiKeyCreateSerializer,
        responses={
            201: s.ApiKeyCreatedSerializer,
            400: error_response("invalid_request"),
            403: error_response("forbidden / insufficient_scope"),
        },
    ),
    destroy=extend_schema(responses={204: None, 404: error_response("api_key_not_found")}),
)
# --- LLM providers and agents (docs/llm.md) ---------------------------------------------------------

LLM_PROVIDERS = extend_schema_view(
    list=extend_schema(summary="List LLM providers", responses={200: s.LlmProviderSerializer(many=True)}),
    create=extend_schema(
        summary="Add an LLM provider",
        request=s.LlmProviderCreateSerializer,
        responses={201: s.LlmProviderSerializer, 409: error_response("llm_provider_name_taken")},
    ),
    retrieve=extend_schema(
        summary="An LLM provider",
        responses={200: s.LlmProviderSerializer, 404: error_response("llm_provider_not_found")},
    ),
    partial_update=extend_schema(
        summary="Change an LLM provider",
        request=s.LlmProviderUpdateSerializer,
        responses={
            200: s.LlmProviderSerializer,
            404: error_response("llm_provider_not_found"),
            409: error_response("llm_provider_name_taken"),
        },
    ),
    destroy=extend_schema(
        summary="Delete an LLM provider",
        responses={
            204: None,
            404: error_response("llm_provider_not_found"),
            409: error_response("llm_provider_in_use: agents use it (`details.agent_ids`)"),
        },
    ),
)
AGENTS = extend_schema_view(
    list=extend_schema(summary="List agents", responses={200: s.AgentSerializer(many=True)}),
    create=extend_schema(
        summary="Create a custom agent",
        request=s.AgentWriteSerializer,
        responses={201: s.AgentSerializer, 409: error_response("agent_name_taken")},
    ),
    retrieve=extend_schema(
        summary="An agent", responses={200: s.AgentSerializer, 404: error_response("agent_not_found")}
    ),
    partial_update=extend_schema(
        summary="Change an agent",
        description="Built-in agents may be tuned (model, provider, prompt, sampling) but not renamed.",
        request=s.AgentUpdateSerializer,
        responses={
            200: s.AgentSerializer,
            404: error_response("agent_not_found"),
            409: error_response("agent_name_taken; agent_builtin (renaming a built-in agent)"),
        },
    ),
    destroy=extend_schema(
        summary="Delete a custom agent",
        responses={
            204: None,
            404: error_response("agent_not_found"),
            409: error_response("agent_builtin: built-in agents cannot be deleted"),
        },
    ),
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
SECRETS = extend_schema_view(
    list=extend_schema(summary="List secrets (names only)", responses={200: s.SecretSerializer(many=True)}),
    create=extend_schema(
        summary="Create a secret",
        request=s.SecretCreateSerializer,
        responses={201: s.SecretSerializer, 409: error_response("secret_name_taken")},
    ),
    retrieve=extend_schema(
        summary="A secret (never its value)",
        responses={200: s.SecretSerializer, 404: error_response("secret_not_found")},
    ),
    partial_update=extend_schema(
        summary="Rename, describe or replace the value of a secret",
        request=s.SecretUpdateSerializer,
        responses={
            200: s.SecretSerializer,
            404: error_response("secret_not_found"),
            409: error_response("secret_name_taken"),
        },
    ),
    destroy=extend_schema(
        summary="Delete a secret", responses={204: None, 404: error_response("secret_not_found")}
    ),
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
