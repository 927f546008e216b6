"""The preparation steps `serve` runs before starting the processes."""

from django.contrib.auth import authenticate

from accounts.models import Membership, Organization
from audit.models import AuditEvent
from config.management.commands.serve import create_demo_organization, load_builtin_templates


def test_demo_organisation_is_created_once_on_an_empty_database(db):
    created = create_demo_organization()
    assert created is not None
    assert len(created.password) >= 20
    user = authenticate(username=created.email, password=created.password)
    assert user is not None
    membership = Membership.objects.get(user=user)
    assert membership.organization == created.organization and membership.role == "owner"
    assert AuditEvent.objects.filter(organization=created.organization, event="organization.created").exists()
    assert create_demo_organization() is None
    assert Organization.objects.count() == 1


def test_demo_organisation_gets_the_default_plan_without_caps(db, settings):
    org = create_demo_organization().organization
    assert org.plan == "self_hosted"
    assert org.limits == dict.fromkeys(org.limits)  # every limit null: unlimited


def test_demo_organisation_follows_baton_default_plan(db, settings):
    settings.BATON_DEFAULT_PLAN = "starter"
    assert create_demo_organization().organization.plan == "starter"


def test_no_demo_organisation_when_organisations_exist(org):
    assert create_demo_organization() is None
    assert list(Organization.objects.values_list("name", flat=True)) == ["Acme"]


def test_demo_organisation_can_be_disabled(db, settings):
    settings.BATON_DEMO_ORG = False
    assert create_demo_organization() is None
    assert not Organization.objects.exists()


def test_builtin_template_hook_is_idempotent(db):
    load_builtin_templates()
    assert load_builtin_templates() == 0
