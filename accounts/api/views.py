"""Identity and organisation endpoints: sign-in tokens, /me, /organization, members, API keys.
Thin: parse with a serializer, call one service or selector, render."""

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import RefreshToken

from accounts import selectors, services
from accounts.api import serializers as s
from accounts.authentication import ORG_CLAIM
from accounts.models import Membership
from accounts.permissions import ADMIN, ANY_MEMBER, PUBLIC
from config.api.idempotency import idempotent
from config.api.schema import error_response
from config.errors import InvalidRequest, Unauthorized


def parse(serializer_class, data, **kwargs) -> dict:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def organization_data(organization) -> dict:
    return s.OrganizationSerializer(organization).data


# --- sign-in --------------------------------------------------------------------------------


def _token_lifetime_seconds() -> int:
    return int(jwt_settings.ACCESS_TOKEN_LIFETIME.total_seconds())


class TokenView(APIView):
    """Exchange email + password (+ organisation) for an access and a refresh token."""

    authentication_classes: list = []
    access = {"post": PUBLIC}

    @extend_schema(
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
    def post(self, request):
        data = parse(s.TokenRequestSerializer, request.data)
        user = services.auth_sign_in(request=request, email=data["email"], password=data["password"])

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


class TokenRefreshView(APIView):
    """A fresh access token for a refresh token, while the person is still a member."""

    authentication_classes: list = []
    access = {"post": PUBLIC}

    @extend_schema(
        operation_id="auth_token_refresh",
        request=s.RefreshRequestSerializer,
        responses={200: s.AccessTokenSerializer, 401: error_response("unauthorized")},
        auth=[],
    )
    def post(self, request):
        data = parse(s.RefreshRequestSerializer, request.data)
        try:
            refresh = RefreshToken(data["refresh"])
        except TokenError:
            raise Unauthorized("unauthorized", "The refresh token is invalid or expired.") from None
        membership = (
            Membership.objects.select_related("organization")
            .filter(
                user_id=refresh.get(jwt_settings.USER_ID_CLAIM),
                organization_id=refresh.get(ORG_CLAIM),
                user__is_active=True,
            )
            .first()
        )
        if membership is None:
            raise Unauthorized("unauthorized", "The token's organisation membership no longer exists.")
        return Response(
            {
                "access": str(refresh.access_token),
                "token_type": "Bearer",
                "expires_in": _token_lifetime_seconds(),
                "organization": organization_data(membership.organization),
            }
        )


# --- who am I, organisation, usage ----------------------------------------------------------


class MeView(APIView):
    access = {"get": ANY_MEMBER}

    @extend_schema(operation_id="me_retrieve", responses={200: s.MeSerializer})
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


class OrganizationView(APIView):
    access = {"get": ANY_MEMBER, "patch": ADMIN}

    @extend_schema(operation_id="organization_retrieve", responses={200: s.OrganizationSerializer})
    def get(self, request):
        return Response(organization_data(request.auth.organization))

    @extend_schema(
        operation_id="organization_update",
        request=s.OrganizationUpdateSerializer,
        responses={
            200: s.OrganizationSerializer,
            400: error_response("invalid_request"),
            403: error_response("forbidden: plan, limits and retention_days are owner-only"),
        },
    )
    def patch(self, request):
        data = parse(s.OrganizationUpdateSerializer, request.data)
        organization = services.organization_update(
            organization=request.auth.organization, actor=request.auth, **data
        )
        return Response(organization_data(organization))


# --- members --------------------------------------------------------------------------------


@extend_schema_view(
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
class MemberViewSet(viewsets.GenericViewSet):
    serializer_class = s.MemberSerializer
    results_key = "members"
    lookup_field = "user_id"
    lookup_value_regex = r"[^/]+"
    access = {"list": ADMIN, "create": ADMIN, "partial_update": ADMIN, "destroy": ADMIN}

    def get_queryset(self):
        return selectors.memberships_of(self.request.auth.organization)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.MemberSerializer(page, many=True).data)

    @idempotent
    def create(self, request):
        data = parse(s.MemberCreateSerializer, request.data)
        membership = services.member_add(organization=request.auth.organization, actor=request.auth, **data)
        return Response(s.MemberSerializer(membership).data, status=status.HTTP_201_CREATED)

    def partial_update(self, request, user_id):
        selectors.membership_get(organization=request.auth.organization, user_id=user_id)  # 404 before 400
        data = parse(s.MemberUpdateSerializer, request.data)
        membership = services.member_change_role(
            organization=request.auth.organization, actor=request.auth, user_id=user_id, role=data["role"]
        )
        return Response(s.MemberSerializer(membership).data)

    def destroy(self, request, user_id):
        services.member_remove(organization=request.auth.organization, actor=request.auth, user_id=user_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- API keys -------------------------------------------------------------------------------


@extend_schema_view(
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
class ApiKeyViewSet(viewsets.GenericViewSet):
    serializer_class = s.ApiKeySerializer
    results_key = "api_keys"
    # The secret is never stored, not even for an Idempotency-Key replay (which answers "key": null).
    idempotency_replay_omit = ("key",)
    lookup_value_regex = r"[^/]+"
    access = {"list": ADMIN, "create": ADMIN, "destroy": ADMIN}

    def get_queryset(self):
        return selectors.api_keys_of(self.request.auth.organization)

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(s.ApiKeySerializer(page, many=True).data)

    @idempotent
    def create(self, request):
        data = parse(s.ApiKeyCreateSerializer, request.data)
        created = services.api_key_create(
            organization=request.auth.organization,
            actor=request.auth,
            name=data["name"],
            scopes=data.get("scopes"),
            expires_at=data.get("expires_at"),
        )
        body = s.ApiKeySerializer(created.api_key).data | {"key": created.key}
        return Response(body, status=status.HTTP_201_CREATED)

    def destroy(self, request, pk):
        api_key = selectors.api_key_get(organization=request.auth.organization, key_id=pk)
        services.api_key_revoke(api_key=api_key, actor=request.auth)
        return Response(status=status.HTTP_204_NO_CONTENT)
