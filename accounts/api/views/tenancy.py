"""Identity and organisation endpoints: sign-in tokens, /me, /organization, members, API keys.
Thin: parse with a serializer, call one service or selector, render."""

from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import selectors, services
from accounts.api import schema
from accounts.api import serializers as s
from accounts.authentication import ORG_CLAIM, person_principal
from accounts.links import invitation_email, invitation_url
from accounts.models import Membership
from accounts.permissions import ADMIN, ANY_MEMBER
from accounts.twofactor import two_factor_check, two_factor_enabled
from config.api.permissions import PUBLIC
from config.api.serializers import validated
from config.api.viewsets import (
    CreateMixin,
    DestroyMixin,
    ListMixin,
    OrganizationViewSet,
    Resource,
    UpdateMixin,
)
from config.errors import InvalidRequest, Unauthorized


def organization_data(organization) -> dict:
    return s.OrganizationSerializer(organization).data


# --- sign-in --------------------------------------------------------------------------------


def _token_lifetime_seconds() -> int:
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds())


class _SignInView(APIView):
    # Sign-in endpoints: no credentials yet, so no authentication and no rate limit by organisation.
    authentication_classes: list = []
    access = {"post": PUBLIC}


@schema.TOKEN
class TokenView(_SignInView):
    """Exchange email + password (+ organisation) for an access and a refresh token."""

    def post(self, request):
        data = validated(s.TokenRequestSerializer, request.data)
        user = services.auth_sign_in(request=request, email=data["email"], password=data["password"])
        if two_factor_enabled(user):
            if not data.get("otp"):
                raise Unauthorized("otp_required", "Two-factor sign-in is on: send a current code as 'otp'.")
            two_factor_check(request=request, user=user, code=data["otp"])

        memberships = list(selectors.memberships_of_user(user))
        wanted = data.get("organization")
        if wanted:
            membership = next((m for m in memberships if m.organization_id == wanted), None)
            if membership is None:
                raise Unauthorized("unauthorized", "You are not a member of that organisation.")
        elif not memberships:
            raise Unauthorized("unauthorized", "This account does not belong to any organisation.")
        elif len(memberships) > 1:
            raise InvalidRequest(
                "organization_required",
                "You belong to several organisations: say which one with 'organization'.",
                details={
                    "organizations": [
                        {"id": m.organization_id, "name": m.organization.name} for m in memberships
                    ]
                },
            )
        else:
            membership = memberships[0]
        # A token its organisation would refuse on every request (403 two_factor_required) is not issued.
        person_principal(user, membership)

        refresh = RefreshToken.for_user(user)
        refresh[ORG_CLAIM] = membership.organization_id
        return Response(
            {
                "access": str(refresh.access_token),
                "refresh": str(refresh),
                "token_type": "Bearer",
                "expires_in": _token_lifetime_seconds(),
                "organization": organization_data(membership.organization),
                "user": s.UserSerializer(user).data,
            }
        )


@schema.TOKEN_REFRESH
class TokenRefreshView(_SignInView):
    """A fresh access token for a refresh token, while the person is still a member."""

    def post(self, request):
        data = validated(s.RefreshRequestSerializer, request.data)
        try:
            refresh = RefreshToken(data["refresh"])
        except TokenError:
            raise Unauthorized("unauthorized", "The refresh token is invalid or expired.") from None
        membership = (
            Membership.objects.select_related("organization", "user")
            .filter(
                user_id=refresh.get(jwt_settings.USER_ID_CLAIM),
                organization_id=refresh.get(ORG_CLAIM),
                user__is_active=True,
            )
            .first()
        )
        if membership is None:
            raise Unauthorized("unauthorized", "The token's organisation membership no longer exists.")
        person_principal(membership.user, membership)
        return Response(
            {
                "access": str(refresh.access_token),
                "token_type": "Bearer",
                "expires_in": _token_lifetime_seconds(),
                "organization": organization_data(membership.organization),
            }
        )


# --- who am I, organisation, usage ----------------------------------------------------------


@schema.ME
class MeView(APIView):
    access = {"get": ANY_MEMBER}

    def get(self, request):
        principal = request.auth
        is_key = principal.api_key is not None
        organizations = []
        if not is_key:
            organizations = [
                {"id": m.organization_id, "name": m.organization.name, "role": m.role}
                for m in selectors.memberships_of_user(principal.user)
            ]
        return Response(
            {
                "actor_type": principal.actor_type,
                "user": None if is_key else s.UserSerializer(principal.user).data,
                "api_key": s.ApiKeySerializer(principal.api_key).data if is_key else None,
                "organization": organization_data(principal.organization),
                "role": principal.effective_role,
                "scopes": sorted(principal.scopes) if is_key else None,
                "organizations": organizations,
            }
        )


@schema.ORGANIZATION
class OrganizationView(APIView):
    access = {"get": ANY_MEMBER, "patch": ADMIN}

    def get(self, request):
        return Response(organization_data(request.auth.organization))

    def patch(self, request):
        data = validated(s.OrganizationUpdateSerializer, request.data)
        organization = services.organization_update(
            organization=request.auth.organization, actor=request.auth, **data
        )
        return Response(organization_data(organization))


# --- members, API keys ------------------------------------------------------------


@schema.MEMBERS
class MemberViewSet(ListMixin, CreateMixin, UpdateMixin, DestroyMixin, OrganizationViewSet):
    lookup_field = "user_id"
    resource = Resource(
        "member", list=selectors.memberships_of, get=selectors.membership_get, create=services.member_add
    )
    serializer_class = s.MemberSerializer
    input_serializers = {"create": s.MemberCreateSerializer, "partial_update": s.MemberUpdateSerializer}
    results_key = "members"
    access = {"list": ADMIN, "create": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}
    # The invitation link works like a password: not kept for an Idempotency-Key replay (which answers null).
    idempotency_replay_omit = ("invitation_url",)

    def get_serializer_class(self):
        return s.MemberCreatedSerializer if self.action == "create" else s.MemberSerializer

    def perform_create(self, data):
        membership = super().perform_create(data)
        user = membership.user
        membership.invitation_url = None if user.has_usable_password() else invitation_url(user, self.request)
        if membership.invitation_url:
            invitation_email(membership, membership.invitation_url)
        return membership

    def perform_update(self, membership, data):
        return services.member_change_role(
            organization=self.organization, actor=self.actor, user_id=membership.user_id, role=data["role"]
        )

    def perform_destroy(self, membership):
        services.member_remove(organization=self.organization, actor=self.actor, user_id=membership.user_id)


@schema.API_KEYS
class ApiKeyViewSet(ListMixin, CreateMixin, DestroyMixin, OrganizationViewSet):
    resource = Resource(
        "api_key",
        list=selectors.api_keys_of,
        get=selectors.api_key_get,
        lookup="key_id",
        destroy=services.api_key_revoke,
    )
    serializer_class = s.ApiKeySerializer
    input_serializers = {"create": s.ApiKeyCreateSerializer}
    results_key = "api_keys"
    # The secret is never stored, not even for an Idempotency-Key replay (which answers "key": null).
    idempotency_replay_omit = ("key",)
    access = {"list": ADMIN, "create": ADMIN, "destroy": ADMIN}

    def get_serializer_class(self):
        # Only the creation's response shows the key.
        return s.ApiKeyCreatedSerializer if self.action == "create" else s.ApiKeySerializer

    def perform_create(self, data):
        created = services.api_key_create(
            organization=self.organization,
            actor=self.actor,
            name=data["name"],
            scopes=data.get("scopes"),
            expires_at=data.get("expires_at"),
        )
        created.api_key.key = created.key
        return created.api_key
