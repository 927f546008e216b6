"""Objects for the tenancy test (tests/test_tenancy.py), one entry per API route with a path parameter.

tests/test_tenancy.py walks the URL configuration and calls every /api/v1 route that has a path
parameter, with every HTTP method its view allows, as a member of ANOTHER organisation, for an object
of the first organisation; every answer must be a 404. A route with no entry here makes that test fail,
so a new endpoint cannot forget to scope its queryset by organisation.

How to add your routes (e.g. in the workflows app):

    from tests.support.tenancy_registry import register

    @register("workflow-detail", "workflow-versions", "workflow-run")     # URL names (name=... / basename)
    def _workflow(org, owner):
        wf = make_workflow(org, owner)                                    # create a real object of `org`
        return {"ref": wf.id}                                             # the URL kwargs that address it

    @register("workflow-version-detail")
    def _workflow_version(org, owner):
        wf = make_workflow(org, owner)
        return {"ref": wf.id, "n": 1}

Keep the factories next to your app's tests if you like: put them in a module and import it from
REGISTRY_MODULES below. A route whose path parameter does not name an organisation's object (an inbound
webhook with a secret token, a built-in template shared by every organisation) goes in EXEMPT with the
reason. `sanity_get=False` skips the check that the organisation's own owner gets a non-404 on GET
(use it for endpoints whose GET never returns, such as an open event stream).
"""

from collections.abc import Callable
from dataclasses import dataclass
from importlib import import_module

from accounts.models import Organization, User
from accounts.services import api_key_create
from tests.conftest import owner_principal
from tests.factories import ProjectFactory, add_member


@dataclass(frozen=True)
class Entry:
    factory: Callable[[Organization, User], dict]
    sanity_get: bool = True


REGISTRY: dict[str, Entry] = {}

# Route name → why it is not organisation-scoped by its path parameter.
EXEMPT: dict[str, str] = {
    "hook-token": "inbound webhook: no API key, the token in the path is the credential "
    "(tests/runs/test_hooks.py: wrong token, other workflow, disabled hook → the same 404)",
    "hook-signed": "inbound webhook: no API key, the signature is the credential (tests/runs/test_hooks.py)",
}

# Modules that register more entries when imported (other apps' tenancy factories).
REGISTRY_MODULES: list[str] = [
    "tests.workflows.support.tenancy",
    "tests.runs.support.tenancy",
    "tests.runs.support.tenancy_stream",
    "tests.accounts.support.tenancy_security",
    "tests.accounts.support.tenancy_llm",
]


def register(*route_names: str, sanity_get: bool = True):
    def decorator(factory):
        for name in route_names:
            if name in REGISTRY:
                raise ValueError(f"Route {name!r} is registered twice in the tenancy registry.")
            REGISTRY[name] = Entry(factory=factory, sanity_get=sanity_get)
        return factory

    return decorator


def exempt(route_name: str, reason: str) -> None:
    EXEMPT[route_name] = reason


def load_all() -> dict[str, Entry]:
    for module in REGISTRY_MODULES:
        import_module(module)
    return REGISTRY


# --- accounts -------------------------------------------------------------------------------


@register("project-detail")
def _project(org, owner):
    return {"pk": ProjectFactory(organization=org).id}


@register("member-detail")
def _member(org, owner):
    return {"user_id": add_member(org).id}


@register("api-key-detail")
def _api_key(org, owner):
    return {
        "pk": api_key_create(organization=org, actor=owner_principal(org, owner), name="victim").api_key.id
    }
