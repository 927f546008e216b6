"""Request ids, the error envelope for anything outside DRF, and rate-limit headers."""

import json
import logging
import re

from django.conf import settings

from config.context import client_ip, client_ip_var, request_id_var
from config.ids import new_id

logger = logging.getLogger("baton.request")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")


def is_valid_request_id(value: str) -> bool:
    """True for an incoming X-Request-Id we are willing to echo (1-128 of `A-Za-z0-9._:-`)."""
    return bool(_REQUEST_ID_RE.match(value))


class RequestIdMiddleware:
    """Gives every request an id (echoing a well-formed incoming X-Request-Id) and the response the header."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.META.get("HTTP_X_REQUEST_ID", "")
        request.request_id = incoming if is_valid_request_id(incoming) else new_id("req")
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


# Codes for error responses that reach the middleware without our envelope (Django's own 404/405/
# CSRF pages, a view returning a bare HttpResponse...). Unlisted 4xx are `invalid_request`, 5xx
# `internal_error`.
STATUS_CODES = {
    400: ("invalid_request", "The request is malformed."),
    401: ("unauthorized", "Authentication credentials are missing or not valid."),
    402: ("quota_exceeded", "The organisation's quota is used up."),
    403: ("forbidden", "You are not allowed to do this."),
    404: ("not_found", "The requested resource was not found."),
    405: ("method_not_allowed", "This method is not allowed here."),
    406: ("not_acceptable", "The requested response format is not available."),
    409: ("conflict", "The resource's state does not allow this."),
    413: ("payload_too_large", "The request body is larger than this endpoint accepts."),
    415: ("unsupported_media_type", "The request's content type is not supported here."),
    422: ("invalid_input", "The request could not be processed."),
    429: ("rate_limited", "Too many requests."),
    503: ("service_unavailable", "The service is temporarily unavailable."),
}
INTERNAL_ERROR_MESSAGE = "An unexpected error occurred. Quote the request id when reporting it."
# Headers of a replaced error response that are about the error itself, not about its old body.
_DROPPED_HEADERS = {"content-type", "content-length", "content-encoding", "content-language", "etag"}


def _has_envelope(response) -> bool:
    if response.get("Content-Type", "").split(";")[0].strip() != "application/json":
        return False
    try:
        body = json.loads(response.content)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(body, dict) and isinstance(body.get("error"), dict) and "code" in body["error"]


def envelope_for_status(response):
    """A JSON envelope replacing a non-envelope error response, keeping its other headers."""
    from django.http import JsonResponse

    from config.api.exceptions import error_body

    status = response.status_code
    if status >= 500 and status != 503:
        code, message = "internal_error", INTERNAL_ERROR_MESSAGE
    else:
        code, message = STATUS_CODES.get(status, ("invalid_request", "The request failed."))
    if status == 404:
        message = "No endpoint or resource at this address."
    replacement = JsonResponse(error_body(status, code, message), status=status)
    for name, value in response.items():
        if name.lower() not in _DROPPED_HEADERS:
            replacement[name] = value
    for cookie in response.cookies.values():
        replacement.cookies[cookie.key] = cookie
    return replacement


class ApiErrorMiddleware:
    """Under /api/: refuses oversized bodies up front (413), turns exceptions that escape a view into the
    envelope, and replaces any error response that is not the envelope (HTML 404/405/500 pages, CSRF
    pages, bare responses) so that a client never sees HTML or a traceback — with DEBUG on as well."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if not is_api_request(request):
            return self.get_response(request)
        too_large = self._refuse_oversized(request)
        if too_large is not None:
            return too_large
        response = self.get_response(request)
        if (
            response.status_code >= 400
            and not getattr(response, "streaming", False)
            and not _has_envelope(response)
        ):
            response = envelope_for_status(response)
        return response

    def process_exception(self, request, exception):
        if not is_api_request(request):
            return None
        from config.api.exceptions import envelope_for_exception

        return envelope_for_exception(exception, request)

    @staticmethod
    def _refuse_oversized(request):
        """DRF's JSON parser reads the raw stream, bypassing DATA_UPLOAD_MAX_MEMORY_SIZE: check the
        declared length here. Multipart bodies may also carry an upload of BATON_MAX_UPLOAD_BYTES."""
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        if limit is None:
            return None
        if request.META.get("CONTENT_TYPE", "").lower().startswith("multipart/"):
            limit += settings.BATON_MAX_UPLOAD_BYTES
        if length <= limit:
            return None
        from django.core.exceptions import RequestDataTooBig

        from config.api.exceptions import envelope_for_exception

        return envelope_for_exception(RequestDataTooBig(), request)


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
