"""Request ids, the error envelope for anything outside DRF, and rate-limit headers."""

import logging
import re

from django.conf import settings

from config.context import client_ip_var, request_id_var
from config.ids import new_id

logger = logging.getLogger("baton.request")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def client_ip(request) -> str | None:
    """The client address, trusting X-Forwarded-For only as far as BATON_TRUSTED_PROXIES allows."""
    hops = settings.BATON_TRUSTED_PROXIES
    if hops:
        forwarded = [part.strip() for part in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if part.strip()]
        if len(forwarded) >= hops:
            return forwarded[-hops]
    return request.META.get("REMOTE_ADDR")


class RequestIdMiddleware:
    """Gives every request an id (echoing a well-formed incoming X-Request-Id) and the response the header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = incoming if _REQUEST_ID_RE.match(incoming) else new_id("req")
        rid_token = request_id_var.set(request.request_id)
        ip_token = client_ip_var.set(client_ip(request))
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(rid_token)
            client_ip_var.reset(ip_token)
        response["X-Request-Id"] = request.request_id
        return response


class RequestIdLogFilter(logging.Filter):
    def filter(self, record):
        record.request_id = request_id_var.get() or "-"
        return True


def is_api_request(request) -> bool:
    return request.path.startswith("/api/")


class ApiErrorMiddleware:
    """Turns anything that escapes a view under /api/ into the JSON error envelope (never HTML)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None
        from config.api.exceptions import envelope_for_exception

        return envelope_for_exception(exception, request)


class RateLimitHeadersMiddleware:
    """Copies the rate-limit state the throttle left on the request into the response headers."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        state = getattr(request, "rate_limit_state", None)
        if state is not None:
            for name, value in state.headers().items():
                response[name] = value
        return response
