"""Per-request context (request id, client IP) that services and the audit log read without the
HTTP layer passing it down. Set by config.api.middleware.RequestIdMiddleware."""

from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)
client_ip_var: ContextVar[str | None] = ContextVar("client_ip", default=None)
