import factory

from accounts.choices import Role
from accounts.models import Membership, Organization, User
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


def make_org(name="Acme", plan="starter", owner=None) -> Organization:
    """An organisation made through the real service (limits, audit chain, owner membership)."""
    return organization_create(name=name, owner=owner or UserFactory(), plan=plan)


def add_member(org: Organization, role: str = Role.MEMBER, user: User | None = None) -> User:
    user = user or UserFactory()
    Membership.objects.create(organization=org, user=user, role=role)
    return user


class ProjectFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Project

    name = factory.Sequence(lambda n: f"Project {n}")
