"""Migrations' helper: drop the `*_like` indexes Django's PostgreSQL backend adds beside each index of a
varchar column (`varchar_pattern_ops`, for `LIKE 'prefix%'`). Baton's ids are opaque and never searched by
prefix, and every index is one more entry to write whenever a row of these tables is written again
(docs/performance.md). The reverse recreates them as Django makes them."""

from django.db import migrations


def drop_like_indexes(*fields: tuple[str, str, str]) -> migrations.RunPython:
    """A RunPython operation for (app_label, model_name, field_name) triples; a no-op off PostgreSQL."""

    def forwards(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        with schema_editor.connection.cursor() as cursor:
            for app_label, model_name, field_name in fields:
                model = apps.get_model(app_label, model_name)
                column = model._meta.get_field(field_name).column
                cursor.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = current_schema() AND tablename = %s"
                    " AND indexname LIKE %s AND indexdef LIKE %s",
                    [model._meta.db_table, "%\\_like", f"%({column} varchar_pattern_ops)"],
                )
                for (name,) in cursor.fetchall():
                    schema_editor.execute(f"DROP INDEX IF EXISTS {schema_editor.quote_name(name)}")

    def backwards(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for app_label, model_name, field_name in fields:
            model = apps.get_model(app_label, model_name)
            statement = schema_editor._create_like_index_sql(model, model._meta.get_field(field_name))
            if statement is not None:
                schema_editor.execute(str(statement).replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS", 1))

    return migrations.RunPython(forwards, backwards, elidable=False)
