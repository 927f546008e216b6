"""The API key lookup of every request authenticated by a key, written once (config/sql.py): the ORM's query
with `select_related` cost more Python to build than everything else a bare authenticated request does
(docs/performance.md, issue 20). Returns what its ORM form returns; tests/accounts/test_fastpaths.py runs
both and compares."""

from __future__ import annotations

from accounts.models import ApiKey, Organization
from config import sql

_KEY_BY_HASH = sql.Select(ApiKey, None, "{key_hash} = %s", limit=1)
_ORGANIZATION = sql.Select(Organization, None, "{pk} = %s")


def api_key_by_hashes(hashes: list[str]) -> ApiKey | None:
    """The key whose hash is one of `hashes` (the first found, in their order) with its organisation loaded,
    as `ApiKey.objects.select_related("organization").filter(key_hash__in=hashes).first()` would return
    it; None when there is none."""
    for key_hash in hashes:
        api_key = _KEY_BY_HASH.first(key_hash)
        if api_key is not None:
            api_key.organization = _ORGANIZATION.first(api_key.organization_id)
            return api_key
    return None
