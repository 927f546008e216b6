"""Per-request context (request id, client IP) that services and the audit log read without the
HTTP layer passing it down. Set by config.api.middleware.RequestIdMiddleware."""

from contextvars import ContextVar

from django.conf import settings

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)


def client_ip(request) -> str | None:
    """The client address, trusting X-Forwarded-For only as far as BATON_TRUSTED_PROXIES allows."""
    hops = settings.BATON_TRUSTED_PROXIES
    if hops:
        forwarded = [
            part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()
        ]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")
