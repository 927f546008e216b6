"""DATABASE_URL → Django's DATABASES entry (config/env.py)."""

import pytest
from django.core.exceptions import ImproperlyConfigured

from config.env import database_from_url


def test_a_url_becomes_a_postgresql_entry_with_its_query_as_options():
    entry = database_from_url("postgres://baton:s%40cret@db.internal:6543/baton?sslmode=require")
    assert entry["ENGINE"] == "config.postgresql"
    assert (entry["NAME"], entry["USER"], entry["PASSWORD"]) == ("baton", "baton", "s@cret")
    assert (entry["HOST"], entry["PORT"]) == ("db.internal", "6543")
    assert entry["CONN_MAX_AGE"] == 0  # web processes: no persistent connections under ASGI
    assert entry["OPTIONS"] == {"sslmode": "require"}


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://root@127.0.0.1/baton", "must be a postgres:// URL"),
        ("postgres://postgres@127.0.0.1/", "name a database"),
    ],
)
def test_other_urls_are_refused(url, message):
    with pytest.raises(ImproperlyConfigured, match=message):
        database_from_url(url)
