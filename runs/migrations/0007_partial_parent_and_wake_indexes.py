"""Fewer index entries per run and step row (docs/performance.md "The web tier, seventh session"): a run's parent
and a step's loop parent are indexed only where set (a step's by `step_iteration_unique`, on (parent,
iteration) where the parent is set, which the lookups by parent use; the foreign keys' own indexes go first,
so that dropping them by their column cannot take the new partial one), and the wake-up scan's index holds only
the rows with a time to wake at: the status changes of the other rows (nearly all) no longer move an entry
in it.

As in 0006: CONCURRENTLY on PostgreSQL (hence atomic = False), and the foreign keys' own indexes dropped by
name rather than by AlterField, which would copy both tables on SQLite."""

import importlib

from django.db import migrations, models

_concurrent = importlib.import_module("runs.migrations.0006_run_workflow_version_indexes")

# (model, column) of the foreign keys whose own index goes.
FOREIGN_KEYS = (("Run", "parent_run_id"), ("StepRun", "parent_id"))


def drop_parent_fk_indexes(apps, schema_editor):
    for model_name, column in FOREIGN_KEYS:
        model = apps.get_model("runs", model_name)
        for name in schema_editor._constraint_names(model, [column], index=True):
            if schema_editor.connection.vendor == "postgresql":
                schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(name)}")
            else:
                schema_editor.execute(schema_editor._delete_index_sql(model, name))


def create_parent_fk_indexes(apps, schema_editor):
    for model_name, column in FOREIGN_KEYS:
        model = apps.get_model("runs", model_name)
        field = next(f for f in model._meta.concrete_fields if f.column == column)
        schema_editor.execute(schema_editor._create_index_sql(model, fields=[field]))


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("runs", "0006_run_workflow_version_indexes")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="run",
                    name="parent_run",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.SET_NULL,
                        related_name="child_runs",
                        to="runs.run",
                    ),
                ),
                migrations.AlterField(
                    model_name="steprun",
                    name="parent",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=models.deletion.CASCADE,
                        related_name="iterations",
                        to="runs.steprun",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(drop_parent_fk_indexes, create_parent_fk_indexes, elidable=False)
            ],
        ),
        _concurrent.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("parent_run__isnull", False)), fields=["parent_run"], name="run_parent"
            ),
        ),
        _concurrent.RemoveIndex(model_name="steprun", name="step_status_wake"),
        _concurrent.AddIndex(
            model_name="steprun",
            index=models.Index(
                condition=models.Q(("wake_at__isnull", False)), fields=["status", "wake_at"], name="step_status_wake"
            ),
        ),
    ]
