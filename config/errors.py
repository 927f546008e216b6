"""Typed application errors. Services raise them; the API's exception handler turns them into the
error envelope. They carry an HTTP status but import nothing from the HTTP layer, so the engine
may raise them too."""


class ApplicationError(Exception):
    status = 400
    default_code = "invalid_request"

    def __init__(self, code: str | None = None, message: str = "", *, details: dict | None = None):
        self.code = code or self.default_code
        self.message = message or self.code.replace("_", " ").capitalize() + "."
        self.details = details
        super().__init__(self.message)


class InvalidRequest(ApplicationError):
    status = 400
    default_code = "invalid_request"


class Unauthorized(ApplicationError):
    status = 401
    default_code = "unauthorized"


class QuotaExceeded(ApplicationError):
    status = 402
    default_code = "quota_exceeded"


class Forbidden(ApplicationError):
    status = 403
    default_code = "forbidden"


class NotFound(ApplicationError):
    status = 404
    default_code = "not_found"


class Conflict(ApplicationError):
    status = 409
    default_code = "conflict"


class PayloadTooLarge(ApplicationError):
    status = 413
    default_code = "payload_too_large"


class Unprocessable(ApplicationError):
    status = 422
    default_code = "invalid_input"


class RateLimited(ApplicationError):
    status = 429
    default_code = "rate_limited"

    def __init__(self, code=None, message="", *, retry_after: int = 1, details=None):
        super().__init__(code, message, details=details)
        self.retry_after = retry_after


def not_found(type_name: str, ident: str) -> NotFound:
    """The uniform 404 for a resource that is absent or belongs to another organisation."""
    label = type_name.replace("_", " ").capitalize()
    return NotFound(f"{type_name}_not_found", f"{label} {ident} was not found.")
