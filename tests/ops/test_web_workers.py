"""`serve`'s web processes: one on SQLite, one per core (up to 4) on PostgreSQL, or BATON_WEB_WORKERS."""

import os

from django.db import connection

from config.management.commands.serve import WEB_WORKERS_MAX_AUTO, web_workers_default


def test_the_default_follows_the_database_and_the_cores(settings):
    settings.BATON_WEB_WORKERS = 0
    if connection.vendor == "sqlite":
        assert web_workers_default() == 1
    else:
        assert web_workers_default() == min(len(os.sched_getaffinity(0)), WEB_WORKERS_MAX_AUTO)


def test_baton_web_workers_overrides_it(settings):
    settings.BATON_WEB_WORKERS = 3
    assert web_workers_default() == 3
