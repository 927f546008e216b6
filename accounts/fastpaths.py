"""The API key lookup of every request authenticated by a key, written once (config/sql.py): the ORM's query
with `select_related` cost more Python to build than everything else a bare authenticated request does, and
two statements (the key, then its organisation) cost a second round trip and a second execution's client
work (docs/performance.md, issue 20). Returns what its ORM form returns; tests/accounts/test_fastpaths.py
runs both and compares."""

from __future__ import annotations

from functools import cache

from django.db import DEFAULT_DB_ALIAS, connections

from accounts.models import ApiKey, Organization
from config import sql


@cache
def _key_with_organization(vendor: str):
    """`SELECT <key's columns>, <organisation's columns> FROM key JOIN organisation … WHERE key_hash = %s`,
    each side's (attnames, converters) as config/sql.py's Select has them."""
    db = connections[DEFAULT_DB_ALIAS]
    quote = db.ops.quote_name
    sides, columns = [], []
    for alias, model in (("k", ApiKey), ("o", Organization)):
        fields = model._meta.concrete_fields
        converters = []
        for index, field in enumerate(fields):
            column = field.get_col(model._meta.db_table)
            found = db.ops.get_db_converters(column) + column.get_db_converters(db)
            if found:
                converters.append((index, found, column))
        sides.append((tuple(field.attname for field in fields), converters))
        columns += [f"{alias}.{quote(field.column)}" for field in fields]
    owner = quote(ApiKey._meta.get_field("organization").column)
    statement = (
        f"SELECT {', '.join(columns)} FROM {quote(ApiKey._meta.db_table)} k "
        f"JOIN {quote(Organization._meta.db_table)} o ON o.{quote(Organization._meta.pk.column)} = k.{owner} "
        f"WHERE k.{quote(ApiKey._meta.get_field('key_hash').column)} = %s LIMIT 1"
    )
    return statement, sides


def _instance(model, names, converters, values, db):
    values = list(values)
    for index, found, column in converters:
        value = values[index]
        for converter in found:
            value = converter(value, column, db)
        values[index] = value
    return model.from_db(DEFAULT_DB_ALIAS, names, values)


def api_key_by_hashes(hashes: list[str]) -> ApiKey | None:
    """The key whose hash is one of `hashes` (the first found, in their order) with its organisation loaded,
    as `ApiKey.objects.select_related("organization").filter(key_hash__in=hashes).first()` would return
    it; None when there is none. One statement per hash tried (usually one)."""
    db = connections[DEFAULT_DB_ALIAS]
    statement, ((key_names, key_converters), (org_names, org_converters)) = _key_with_organization(db.vendor)
    for key_hash in hashes:
        with sql.cursor(db) as cursor:
            cursor.execute(statement, [key_hash])
            row = cursor.fetchone()
        if row is not None:
            split = len(key_names)
            api_key = _instance(ApiKey, key_names, key_converters, row[:split], db)
            api_key.organization = _instance(Organization, org_names, org_converters, row[split:], db)
            return api_key
    return None
