"""Who may call what: every view declares, in one dict, the `Access` each action needs:

    access = {"list": RUNS_READ, "create": RUNS_WRITE}

Keys are viewset action names, or lower-case HTTP methods for plain APIViews. An undeclared action is
refused, so nothing is reachable by accident. The roles and scopes themselves, and the common
declarations (`RUNS_READ`, …), belong to accounts (accounts/permissions.py); this module only checks
them against whatever principal authentication put on `request.auth` (see `ActingPrincipal`)."""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

from config.errors import Forbidden


@dataclass(frozen=True)
class Access:
    """What an action needs: a person needs `role` (or higher), an API key needs `scope`. With
    `keys=False` no API key may do it, whatever its scopes."""

    role: str
    scope: str | None = None
    keys: bool = True


PUBLIC = Access(role="public")


@runtime_checkable
class ActingPrincipal(Protocol):
    """What the permission check reads from `request.auth`: a person or an API key of one organisation."""

    api_key: object | None

    def has_role(self, minimum: str) -> bool: ...

    def has_scope(self, scope: str | None) -> bool: ...


def is_acting(principal) -> bool:
    """`isinstance(principal, ActingPrincipal)`, without typing's walk of the protocol's members on every
    call (Python 3.11): the attribute is there, and the methods are there and not None."""
    return hasattr(principal, "api_key") and all(
        getattr(principal, name, None) is not None for name in ("has_role", "has_scope")
    )


def declared_access(view, method: str) -> Access | None:
    """The view's declaration for its current action, else for the HTTP method."""
    table = getattr(view, "access", None) or {}
    action = getattr(view, "action", None)
    if action and action in table:
        return table[action]
    return table.get(method.lower())


def require_access(principal: ActingPrincipal, access: Access) -> None:
    """Raise 403 (`forbidden` or `insufficient_scope`) unless the principal may act with `access`."""
    if principal.api_key is not None and not access.keys:
        raise Forbidden("forbidden", f"Only an organisation {access.role} may do this; API keys cannot.")
    if not principal.has_scope(access.scope):
        raise Forbidden(
            "insufficient_scope",
            f"This API key lacks the '{access.scope}' scope.",
            details={"required_scope": access.scope},
        )
    if principal.api_key is None and not principal.has_role(access.role):
        raise Forbidden(
            "forbidden",
            f"This requires the {access.role} role or higher.",
            details={"required_role": access.role},
        )


class RoleScopePermission(BasePermission):
    def has_permission(self, request, view):
        if getattr(view, request.method.lower(), None) is None:
            return True  # the view lacks this method: let DRF answer 405 method_not_allowed
        access = declared_access(view, request.method)
        if access is PUBLIC:
            return True
        principal = request.auth
        if not is_acting(principal):
            raise NotAuthenticated()
        if access is None:
            raise Forbidden("forbidden", "This operation is not available.")
        require_access(principal, access)
        return True
