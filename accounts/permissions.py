"""Roles × scopes. Every view declares, in one dict, what each action needs:

    access = {"list": Access(Role.VIEWER, Scope.WORKFLOWS_READ), "create": Access(Role.MEMBER, ...)}

Keys are viewset action names, or lower-case HTTP methods for plain APIViews. A person needs the
role; an API key needs the scope (the `admin` scope grants every scope, as the admin role does, and a
key can never act as owner). An undeclared action is refused: nothing is reachable by accident."""

from dataclasses import dataclass

from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission

from accounts.choices import Role, Scope
from accounts.principal import Principal
from config.errors import Forbidden


@dataclass(frozen=True)
class Access:
    role: str
    scope: str | None = None


PUBLIC = Access(role="public")


def declared_access(view, request) -> Access | None:
    table = getattr(view, "access", None) or {}
    action = getattr(view, "action", None)
    if action and action in table:
        return table[action]
    return table.get(request.method.lower())


class RoleScopePermission(BasePermission):
    def has_permission(self, request, view):
        if getattr(view, request.method.lower(), None) is None:
            return True  # the view lacks this method: let DRF answer 405 method_not_allowed
        access = declared_access(view, request)
        if access is PUBLIC:
            return True
        principal = request.auth
        if not isinstance(principal, Principal):
            raise NotAuthenticated()
        if access is None:
            raise Forbidden("forbidden", "This operation is not available.")
        if access.role == Role.OWNER and principal.api_key is not None:
            raise Forbidden("forbidden", "Only an organisation owner may do this; API keys cannot.")
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
        return True


# Common declarations, so endpoints read the same everywhere.
WORKFLOWS_READ = Access(Role.VIEWER, Scope.WORKFLOWS_READ)
WORKFLOWS_WRITE = Access(Role.MEMBER, Scope.WORKFLOWS_WRITE)
RUNS_READ = Access(Role.VIEWER, Scope.RUNS_READ)
RUNS_WRITE = Access(Role.MEMBER, Scope.RUNS_WRITE)
RUNS_APPROVE = Access(Role.MEMBER, Scope.RUNS_APPROVE)
AUDIT_READ = Access(Role.ADMIN, Scope.AUDIT_READ)
ADMIN = Access(Role.ADMIN, Scope.ADMIN)
OWNER = Access(Role.OWNER, Scope.ADMIN)
ANY_MEMBER = Access(Role.VIEWER, None)
