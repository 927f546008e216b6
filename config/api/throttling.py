"""The DRF throttle that counts each authenticated request against its organisation's rate limits
(config/ratelimit.py holds the counters; docs/api-conventions.md)."""

from rest_framework.authentication import SessionAuthentication
from rest_framework.throttling import BaseThrottle

from config.dashboard import session_limit_hit
from config.errors import RateLimited
from config.ratelimit import MINUTE, RateLimitState, organization_hit


def ensure_rate_limit_state(request) -> RateLimitState | None:
    """Count an authenticated DRF request once (idempotent per request) and leave the state on the
    Django request for RateLimitHeadersMiddleware. None for unauthenticated requests."""
    django_request = getattr(request, "_request", request)
    state = getattr(django_request, "rate_limit_state", None)
    if state is not None:
        return state
    principal = request.__dict__.get("_auth")
    organization = getattr(principal, "organization", None)
    if organization is None or not hasattr(principal, "has_scope") or _by_session(request):
        return None
    state = organization_hit(organization)
    django_request.rate_limit_state = state
    return state


def _by_session(request) -> bool:
    """A dashboard session calling the API (the live run page's event stream, the audit export): it is
    limited as a session (config/dashboard.py), never against the organisation's API rate limit."""
    return isinstance(getattr(request, "_authenticator", None), SessionAuthentication)


class OrganizationRateThrottle(BaseThrottle):
    """DRF throttle: each authenticated request counts against its organisation's per-minute and
    per-day limits; over either one the request is refused with 429 rate_limited and Retry-After."""

    def allow_request(self, request, view):
        if _by_session(request):
            retry = session_limit_hit(request._request.session.session_key or "")
            if retry:
                raise RateLimited(
                    "rate_limited",
                    f"Too many requests in this session: retry in {retry} seconds.",
                    retry_after=retry,
                )
            return True
        state = ensure_rate_limit_state(request)
        if state is not None and state.exceeded:
            window = max((w for w in state.windows if w.exceeded), key=lambda w: w.reset_at)
            per = "minute" if window.seconds == MINUTE else "day"
            raise RateLimited(
                "rate_limited",
                f"The organisation's limit of {window.limit} requests per {per} is used up. "
                f"Retry in {state.retry_after} seconds.",
                retry_after=state.retry_after,
                details={"limit": window.limit, "window_seconds": window.seconds, "reset": window.reset_at},
            )
        return True
