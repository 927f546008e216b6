"""GET /runs?metadata.<key>=<value> on PostgreSQL: a GIN index (jsonb_path_ops) serving
`metadata @> '{"key": "value"}'`. Other databases get nothing: SQLite filters with JSON key functions over
the organisation's rows (docs/runs-api.md). Built CONCURRENTLY so adding it to a large runs table does not
block writes, hence atomic = False."""

from django.db import migrations

INDEX = "run_metadata_gin"


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    table = schema_editor.quote_name(apps.get_model("runs", "Run")._meta.db_table)
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {INDEX} ON {table} USING gin (metadata jsonb_path_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("runs", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index, elidable=False)]
