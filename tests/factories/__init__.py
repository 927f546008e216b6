"""factory-boy factories. Each makes its object through the real service where one exists (limits, audit
events, versions and step runs as the API makes them), so a test states only what it is about."""

from tests.factories.accounts import (
    OrganizationFactory,
    ProjectFactory,
    UserFactory,
    add_member,
    make_org,
    owner_of,
)
from tests.factories.runs import RunFactory, StepRunFactory
from tests.factories.workflows import WorkflowFactory, WorkflowVersionFactory, transform

__all__ = [
    "OrganizationFactory",
    "ProjectFactory",
    "RunFactory",
    "StepRunFactory",
    "UserFactory",
    "WorkflowFactory",
    "WorkflowVersionFactory",
    "add_member",
    "make_org",
    "owner_of",
    "transform",
]
