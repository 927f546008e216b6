# Owned by the sub-workflow work: edit this file in place; keep its name and dependencies.
"""Sub-workflows (docs/engine.md "Sub-workflows"): a child run points at the parent's `sub_workflow` step
run that started it; the one-to-one (unique) link makes starting a child idempotent per step run."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("runs", "0004_engine")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="parent_step_run",
            field=models.OneToOneField(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="child_run",
                to="runs.steprun",
            ),
        ),
    ]
