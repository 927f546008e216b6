"""The three ways to authenticate: API key (Bearer or X-API-Key), user JWT, dashboard session.

Each returns (user, Principal); views read the Principal from `request.auth`."""

from datetime import timedelta

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication, CSRFCheck, SessionAuthentication
from rest_framework.exceptions import AuthenticationFailed, PermissionDenied
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError

from accounts import fastpaths, keys
from accounts.models import ApiKey, Membership
from accounts.principal import Principal
from accounts.twofactor import two_factor_enabled, two_factor_required
from config.api.browser import api_key_in
from config.errors import Forbidden

ORG_CLAIM = "org"


class TwoFactorRequired(Forbidden, PermissionDenied):
    """403 `two_factor_required`: the envelope's code (an ApplicationError) raised where DRF expects an
    APIException, so the refused request is left unauthenticated like any other authentication failure."""

    default_code = "two_factor_required"


def person_principal(user, membership: Membership) -> Principal:
    """A person's Principal in `membership`'s organisation; refused (403 two_factor_required) while the
    organisation requires two-factor sign-in of their role and they have not turned it on."""
    if two_factor_required(membership) and not two_factor_enabled(user):
        raise TwoFactorRequired(
            "two_factor_required",
            f"{membership.organization.name} requires two-factor sign-in of your role: turn it on in "
            "your dashboard profile (/profile/two-factor/), then sign in again.",
        )
    return Principal(organization=membership.organization, user=user, role=membership.role)


class KeyUser:
    """Stands in for `request.user` when an API key authenticates."""

    is_authenticated = True
    is_active = True
    is_anonymous = False
    is_staff = False
    is_superuser = False

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.pk = self.id = api_key.id

    def __str__(self):
        return f"API key {self.api_key.id}"


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request):
        raw = api_key_in(request.META)
        if raw is None:
            return None
        raw = raw.strip()
        if not keys.is_well_formed(raw):
            raise AuthenticationFailed("The API key is malformed.")
        api_key = fastpaths.api_key_by_hashes(keys.candidate_hashes(raw))
        now = timezone.now()
        if api_key is None:
            raise AuthenticationFailed("The API key is not valid.")
        if api_key.revoked_at is not None:
            raise AuthenticationFailed("The API key has been revoked.")
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise AuthenticationFailed("The API key has expired.")
        if api_key.last_used_at is None or now - api_key.last_used_at > timedelta(seconds=60):
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        principal = Principal(
            organization=api_key.organization, api_key=api_key, scopes=frozenset(api_key.scopes)
        )
        return KeyUser(api_key), principal

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class OrgJWTAuthentication(JWTAuthentication):
    def authenticate(self, request):
        header = self.get_header(request)
        if header is None:
            return None
        raw_token = self.get_raw_token(header)
        if raw_token is None or raw_token.startswith(b"bt_"):
            return None
        try:
            validated = self.get_validated_token(raw_token)
        except (InvalidToken, TokenError):
            raise AuthenticationFailed("The access token is invalid or expired.") from None
        user = self.get_user(validated)
        membership = (
            Membership.objects.select_related("organization")
            .filter(user=user, organization_id=validated.get(ORG_CLAIM))
            .first()
        )
        if membership is None:
            raise AuthenticationFailed("The token's organisation membership no longer exists.")
        return user, person_principal(user, membership)

    def get_user(self, validated_token):
        try:
            return super().get_user(validated_token)
        except (InvalidToken, AuthenticationFailed):
            raise AuthenticationFailed("The token's user is unknown or inactive.") from None


SESSION_ORG_KEY = "baton_org_id"


def session_membership(request, user) -> Membership | None:
    """The membership for the session's current organisation (falling back to the first one)."""
    memberships = Membership.objects.select_related("organization").filter(user=user)
    chosen = request.session.get(SESSION_ORG_KEY)
    return (chosen and memberships.filter(organization_id=chosen).first()) or memberships.order_by(
        "created_at"
    ).first()


class OrgSessionAuthentication(SessionAuthentication):
    def authenticate(self, request):
        user = getattr(request._request, "user", None)
        if not user or not user.is_active or not user.is_authenticated:
            return None
        self.enforce_csrf(request)
        membership = session_membership(request._request, user)
        if membership is None:
            return None
        return user, person_principal(user, membership)

    def enforce_csrf(self, request):
        def dummy_get_response(request):
            return None

        check = CSRFCheck(dummy_get_response)
        check.process_request(request)
        reason = check.process_view(request, None, (), {})
        if reason:
            raise PermissionDenied(f"CSRF failed: {reason}")
