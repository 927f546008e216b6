"""GET /runs?trigger=… and ?env=… on PostgreSQL (docs/reliability.md, "Scale"): an organisation's runs by
trigger or by environment, newest first, so a page and its count (exact up to 10,000 matches,
config/api/pagination.py) read index entries in order instead of filtering every run of the organisation.
The environment's index leaves out runs without one (most of them).

`run_org_queued` holds only queued runs: "has this organisation a queued run?" (runs/concurrency.py, asked
after most finished runs and by every trigger's admission) was a sequential scan of the whole table at
200,000 runs (422 ms; the planner's estimate for a status no row has came from its other statuses'
frequencies), and is an index probe with it (0.03 ms). Built CONCURRENTLY so adding them to a
large runs table does not block writes, hence atomic = False; other databases get nothing (the embedded
SQLite setup is not for millions of runs)."""

from django.db import migrations

INDEXES = {
    "run_org_trigger_created": "(organization_id, trigger, created_at DESC)",
    "run_org_env_created": "(organization_id, env, created_at DESC) WHERE env IS NOT NULL",
    "run_org_queued": "(organization_id) WHERE status = 'queued'",
}


def create_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("runs", "Run")._meta.db_table)
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON {table} {definition}")


def drop_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("runs", "0003_drop_like_indexes")]

    operations = [migrations.RunPython(create_indexes, drop_indexes, elidable=False)]
