"""accounts/fastpaths.py returns what its ORM form returns."""

from datetime import timedelta

import pytest
from django.db.models import Model
from django.test import override_settings
from django.utils import timezone

from accounts import fastpaths, keys
from accounts.models import ApiKey
from accounts.principal import SYSTEM
from accounts.services import api_key_create, api_key_revoke

pytestmark = pytest.mark.django_db


def _values(instance: Model) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


def _orm(hashes):
    return ApiKey.objects.select_related("organization").filter(key_hash__in=hashes).first()


def test_api_key_lookup_returns_the_orm_rows(org, other_org):
    created = api_key_create(organization=org, actor=SYSTEM, name="ci", scopes=["runs:read"])
    api_key_create(organization=other_org, actor=SYSTEM, name="other")
    api_key_revoke(api_key=created.api_key, actor=SYSTEM)
    hashes = keys.candidate_hashes(created.key)
    fast, orm = fastpaths.api_key_by_hashes(hashes), _orm(hashes)
    assert fast is not None and fast.revoked_at is not None
    assert _values(fast) == _values(orm)
    assert _values(fast.organization) == _values(orm.organization)
    assert fast.organization.limits == orm.organization.limits
    assert fastpaths.api_key_by_hashes(keys.candidate_hashes(keys.generate_key())) is None


def test_api_key_lookup_tries_every_pepper(org, settings):
    expires_at = timezone.now() + timedelta(days=1)
    created = api_key_create(organization=org, actor=SYSTEM, name="old", expires_at=expires_at)
    rotated = {"p2": "n" * 40, **settings.API_KEY_PEPPERS}
    with override_settings(API_KEY_PEPPERS=rotated, API_KEY_CURRENT_PEPPER="p2"):
        hashes = keys.candidate_hashes(created.key)
        assert len(hashes) == 2
        fast = fastpaths.api_key_by_hashes(hashes)
        assert _values(fast) == _values(_orm(hashes))
        assert fast.id == created.api_key.id
