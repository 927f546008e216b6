"""Plumbing shared by every dashboard page (docs/dashboard.md): security headers and the session limit.

The dashboard is server-rendered HTML; its pages get a strict Content-Security-Policy (scripts, styles
and connections from this origin only, no inline code, no framing). The API's JSON and its bundled
documentation viewers (Swagger UI and ReDoc need inline bootstrapping) and the Django admin keep their own
headers. Dashboard requests are limited per signed-in session, never against the organisation's API
rate limit: a person clicking around must not use up what the integrations are allowed.
"""

import time

from django.conf import settings

from config.ratelimit import MINUTE, counters

# Everything the dashboard loads comes from this origin; `data:` images for the browser's own icons.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "font-src 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "object-src 'none'",
    ]
)
# The API (JSON, and its documentation pages with their inline bootstrapping) and the admin are not
# dashboard pages.
NOT_DASHBOARD = ("/api/", "/admin/", "/static/", "/healthz", "/readyz")


def is_dashboard_path(path: str) -> bool:
    return not path.startswith(NOT_DASHBOARD)


class DashboardSecurityMiddleware:
    """Adds the Content-Security-Policy to every dashboard response (X-Frame-Options DENY comes from
    Django's clickjacking middleware, for every response)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if is_dashboard_path(request.path):
            response.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        return response


def session_limit_hit(session_key: str, now: float | None = None) -> int:
    """Count one dashboard request of a session in the current minute; return 0 when it is allowed, else the
    seconds until the window resets. The shared rate-limit counters (config/ratelimit.py) hold the count, so
    the limit holds across processes."""
    limit = settings.BATON_DASHBOARD_REQUESTS_PER_MINUTE
    now = time.time() if now is None else now
    window = int(now // MINUTE)
    count, _ = counters().hit(f"dash:{session_key}", MINUTE, now, with_previous=False)
    if count <= limit:
        return 0
    return max(1, (window + 1) * MINUTE - int(now))
