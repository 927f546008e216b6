"""Django's session, authentication and messages middleware, left out for API requests that carry an API
key (settings.MIDDLEWARE lists these subclasses in their places). Such a request is authenticated by its
key or refused (401), never by the session, so none of them has anything to do for it; a browser's request,
and any API request without a key (a session or a JWT), goes through them as before. Django's CSRF
middleware stays as it is for every request (`check --deploy` asks for it by name; for a DRF view, which is
CSRF-exempt, it costs little)."""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware


def api_key_in(meta) -> str | None:
    """The API key a request carries, unchecked: the X-API-Key header, else an `Authorization: Bearer`
    token that starts with `bt_` (a JWT never does); None when there is none. What accounts' API key
    authentication reads, and what tells a request the browser middleware leaves alone."""
    raw = meta.get("HTTP_X_API_KEY")
    if raw is not None:
        return raw
    scheme, _, token = meta.get("HTTP_AUTHORIZATION", "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token.startswith("bt_"):
        return None
    return token


# API pages a browser renders (their templates read the CSRF token, kept in the session when it is there):
# the browser middleware stays on for them.
_API_BROWSER_PAGES = ("/api/v1/docs", "/api/v1/redoc")


def carries_api_key(request) -> bool:
    """An API request with an API key (not one of the API's pages for a browser)."""
    path = request.path_info
    return (
        path.startswith("/api/")
        and not path.startswith(_API_BROWSER_PAGES)
        and api_key_in(request.META) is not None
    )


class _SkippedWithApiKey:
    """Django's middleware as it is, but for a request that carries an API key, which it hands on untouched
    (no session object, lazy user or message storage made for it, none of their response work)."""

    def __call__(self, request):
        if carries_api_key(request):
            return self.get_response(request)
        return super().__call__(request)


class ApiSessionMiddleware(_SkippedWithApiKey, SessionMiddleware):
    pass


class ApiAuthenticationMiddleware(_SkippedWithApiKey, AuthenticationMiddleware):
    pass


class ApiMessageMiddleware(_SkippedWithApiKey, MessageMiddleware):
    pass
