"""Who is acting: a person (with a role) or an API key (with scopes), inside one organisation."""

from dataclasses import dataclass, field

from accounts.choices import ROLE_RANK, Role, Scope, role_at_least


@dataclass(frozen=True)
class Principal:
    organization: "Organization"  # noqa: F821
    user: "User | None" = None  # noqa: F821
    api_key: "ApiKey | None" = None  # noqa: F821
    role: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)

    @property
    def actor_type(self) -> str:
        return "api_key" if self.api_key is not None else "user"

    @property
    def actor_id(self) -> str:
        return self.api_key.id if self.api_key is not None else self.user.id

    @property
    def effective_role(self) -> str:
        """A key's `admin` scope stands for the admin role; other keys act at member level at most."""
        if self.api_key is None:
            return self.role
        return Role.ADMIN if Scope.ADMIN in self.scopes else Role.MEMBER

    def has_role(self, minimum: str) -> bool:
        return role_at_least(self.effective_role, minimum)

    def has_scope(self, scope: str | None) -> bool:
        if self.api_key is None or scope is None:
            return True
        return scope in self.scopes or Scope.ADMIN in self.scopes


@dataclass(frozen=True)
class SystemActor:
    """The engine, the scheduler and management commands acting on their own."""

    organization: "Organization | None" = None  # noqa: F821
    actor_type: str = "system"
    actor_id: str = "system"
    user = None
    api_key = None


SYSTEM = SystemActor()

__all__ = ["ROLE_RANK", "SYSTEM", "Principal", "SystemActor"]
