"""The common access declarations, so endpoints read the same everywhere. A person needs the role; an
API key needs the scope (the `admin` scope grants every scope, as the admin role does, and a key can
never act as owner). The check itself is config/api/permissions.py's."""

from accounts.choices import Role, Scope
from config.api.permissions import PUBLIC, Access

WORKFLOWS_READ = Access(Role.VIEWER, Scope.WORKFLOWS_READ)
WORKFLOWS_WRITE = Access(Role.MEMBER, Scope.WORKFLOWS_WRITE)
RUNS_READ = Access(Role.VIEWER, Scope.RUNS_READ)
RUNS_WRITE = Access(Role.MEMBER, Scope.RUNS_WRITE)
RUNS_APPROVE = Access(Role.MEMBER, Scope.RUNS_APPROVE)
AUDIT_READ = Access(Role.ADMIN, Scope.AUDIT_READ)
ADMIN = Access(Role.ADMIN, Scope.ADMIN)
OWNER = Access(Role.OWNER, Scope.ADMIN, keys=False)
ANY_MEMBER = Access(Role.VIEWER, None)

__all__ = [
    "ADMIN",
    "ANY_MEMBER",
    "AUDIT_READ",
    "OWNER",
    "PUBLIC",
    "RUNS_APPROVE",
    "RUNS_READ",
    "RUNS_WRITE",
    "WORKFLOWS_READ",
    "WORKFLOWS_WRITE",
    "Access",
]
