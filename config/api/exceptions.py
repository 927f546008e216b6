"""One envelope for every API error:
{"error": {"code", "message", "status", "request_id", "details"?}} — never HTML, never a traceback."""

import logging

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response
from rest_framework.views import set_rollback

from config.api.middleware import INTERNAL_ERROR_MESSAGE, STATUS_CODES
from config.context import request_id_var
from config.errors import ApplicationError, RateLimited

logger = logging.getLogger("baton.api")

_DRF_CODES = {
    drf.ParseError: (400, "invalid_request"),
    drf.ValidationError: (400, "invalid_request"),
    drf.AuthenticationFailed: (401, "unauthorized"),
    drf.NotAuthenticated: (401, "unauthorized"),
    drf.PermissionDenied: (403, "forbidden"),
    drf.NotFound: (404, "not_found"),
    drf.MethodNotAllowed: (405, "method_not_allowed"),
    drf.NotAcceptable: (406, "not_acceptable"),
    drf.UnsupportedMediaType: (415, "unsupported_media_type"),
    drf.Throttled: (429, "rate_limited"),
}


def error_body(status: int, code: str, message: str, details: dict | None = None) -> dict:
    error = {"code": code, "message": message, "status": status, "request_id": request_id_var.get()}
    if details:
        error["details"] = details
    return {"error": error}


def _field_errors(detail) -> dict:
    if isinstance(detail, dict):
        return {key: _field_errors(value) if isinstance(value, dict) else [str(v) for v in _as_list(value)]
                for key, value in detail.items()}  # fmt: skip
    return {"non_field_errors": [str(v) for v in _as_list(detail)]}


def _as_list(value):
    if isinstance(value, list):
        out = []
        for item in value:
            out.extend(_as_list(item) if isinstance(item, list) else [item])
        return out
    return [value]


def _first_message(fields: dict) -> str:
    for key, value in fields.items():
        if isinstance(value, dict):
            return f"{key}.{_first_message(value)}"
        if value:
            return f"{key}: {value[0]}" if key != "non_field_errors" else value[0]
    return "The request is invalid."


def describe(exc) -> tuple[int, str, str, dict | None, dict]:
    """Return (status, code, message, details, extra headers) for any exception we know."""
    headers: dict = {}
    if isinstance(exc, ApplicationError):
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after)
        return exc.status, exc.code, exc.message, exc.details, headers
    if isinstance(exc, drf.ValidationError):
        fields = _field_errors(exc.detail)
        return 400, "invalid_request", _first_message(fields), {"fields": fields}, headers
    if isinstance(exc, drf.APIException):
        fallback = STATUS_CODES.get(
            exc.status_code, ("internal_error" if exc.status_code >= 500 else "invalid_request",)
        )
        status, code = next(
            ((s, c) for cls, (s, c) in _DRF_CODES.items() if isinstance(exc, cls)),
            (exc.status_code, fallback[0]),
        )
        message = str(exc.detail) if not isinstance(exc.detail, list | dict) else "The request failed."
        if isinstance(exc, drf.Throttled):
            wait = int(exc.wait or 1)
            headers["Retry-After"] = str(max(wait, 1))
            message = f"Rate limit exceeded. Retry in {max(wait, 1)} seconds."
        if isinstance(exc, drf.PermissionDenied) and message.startswith("CSRF"):
            code = "csrf_failed"
        if isinstance(exc, drf.MethodNotAllowed):
            message = "This method is not allowed here."
        if isinstance(exc, drf.ParseError):
            message = f"The request body could not be parsed: {message}"
        return status, code, message, None, headers
    if isinstance(exc, Http404):
        return 404, "not_found", "The requested resource was not found.", None, headers
    if isinstance(exc, RequestDataTooBig):
        details = {"max_bytes": settings.DATA_UPLOAD_MAX_MEMORY_SIZE}
        return (
            413,
            "payload_too_large",
            "The request body is larger than this endpoint accepts.",
            details,
            headers,
        )
    if isinstance(exc, DjangoPermissionDenied):
        return 403, "forbidden", "You are not allowed to do this.", None, headers
    if isinstance(exc, DjangoValidationError):
        return 400, "invalid_request", "; ".join(exc.messages), None, headers
    if isinstance(exc, SuspiciousOperation):
        return 400, "invalid_request", "The request was refused as malformed.", None, headers
    return 500, "internal_error", INTERNAL_ERROR_MESSAGE, None, headers


def exception_handler(exc, context):
    """DRF's EXCEPTION_HANDLER: every exception becomes the envelope (unknown ones a logged 500)."""
    status, code, message, details, headers = describe(exc)
    if status >= 500:
        logger.error("Unhandled error in %s", context.get("view").__class__.__name__, exc_info=exc)
    if isinstance(exc, drf.APIException):
        auth_header = getattr(exc, "auth_header", None)
        if auth_header:
            headers["WWW-Authenticate"] = auth_header
    if status == 401 and "WWW-Authenticate" not in headers:
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    request = context.get("request")
    if request is not None and status == 403:
        # Authenticated requests refused by the permission check (before the throttle ran) still
        # count and still carry the rate-limit headers.
        from config.api.throttling import ensure_rate_limit_state

        try:
            ensure_rate_limit_state(request)
        except Exception:
            logger.exception("Could not count a refused request against its organisation's rate limit")
    # As DRF's own handler does: an error rolls back an enclosing atomic block (ATOMIC_REQUESTS).
    set_rollback()
    return Response(error_body(status, code, message, details), status=status, headers=headers)


def envelope_for_exception(exc, request) -> JsonResponse:
    """For exceptions raised outside DRF's handling (middleware, plain Django views) under /api/."""
    status, code, message, details, headers = describe(exc)
    if status >= 500:
        logger.error("Unhandled error on %s", request.path, exc_info=exc)
    response = JsonResponse(error_body(status, code, message, details), status=status)
    for name, value in headers.items():
        response[name] = value
    return response


def _is_api(request) -> bool:
    return request.path.startswith("/api/")


def _page_or_envelope(request, status, code, message, fallback):
    if _is_api(request):
        return JsonResponse(error_body(status, code, message), status=status)
    return fallback


def handler400(request, exception=None):
    from django.views.defaults import bad_request

    return _page_or_envelope(request, 400, "invalid_request", "The request is malformed.",
                             bad_request(request, exception))  # fmt: skip


def handler403(request, exception=None):
    from django.views.defaults import permission_denied

    return _page_or_envelope(request, 403, "forbidden", "You are not allowed to do this.",
                             permission_denied(request, exception))  # fmt: skip


def handler404(request, exception=None):
    from django.views.defaults import page_not_found

    if _is_api(request):
        return JsonResponse(error_body(404, "not_found", f"No endpoint at {request.path}."), status=404)
    return page_not_found(request, exception)


def handler500(request):
    from django.views.defaults import server_error

    return _page_or_envelope(request, 500, "internal_error",
                             "An unexpected error occurred. Quote the request id when reporting it.",
                             server_error(request))  # fmt: skip
