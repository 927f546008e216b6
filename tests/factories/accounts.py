"""Users, organisations, members and projects."""

import os

import factory

from accounts.choices import Role
from accounts.models import Membership, Organization, User
from accounts.principal import Principal
from accounts.services import organization_create
from workflows.models import Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    name = factory.Faker("name")
    password = factory.PostGenerationMethodCall("set_password", "correct-horse-battery")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


# The plan of the organisations tests make: a hosted plan (limits counted, so triggers take the organisation
# lock) unless BATON_TEST_ORG_PLAN names another; `self_hosted` is what a default install's organisations get
# (README "Development").
TEST_ORG_PLAN = os.environ.get("BATON_TEST_ORG_PLAN", "starter")


class OrganizationFactory(factory.django.DjangoModelFactory):
    """An organisation made by organization_create (plan limits, audit chain, the owner's membership)."""

    class Meta:
        model = Organization

    name = factory.Sequence(lambda n: f"Org {n}")
    plan = TEST_ORG_PLAN
    owner = factory.SubFactory(UserFactory)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return organization_create(**kwargs)


def make_org(name="Acme", plan=TEST_ORG_PLAN, owner=None) -> Organization:
    """An organisation made through the real service (limits, audit chain, owner membership)."""
    return OrganizationFactory(name=name, plan=plan, owner=owner or UserFactory())


def owner_of(org: Organization) -> Principal:
    """The organisation's (first) owner as the actor of a service call."""
    membership = (
        Membership.objects.select_related("user")
        .filter(organization=org, role=Role.OWNER)
        .order_by("pk")
        .first()
    )
    return Principal(organization=org, user=membership.user, role=Role.OWNER)


def add_member(org: Organization, role: str = Role.MEMBER, user: User | None = None) -> User:
    user = user or UserFactory()
    Membership.objects.create(organization=org, user=user, role=role)
    return user


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
