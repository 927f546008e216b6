"""Pause (docs/runs-api.md "Pause, resume and rerun"): when a person asked the run to pause."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("runs", "0005_sub_workflow")]

    operations = [
        migrations.AddField(
            model_name="run",
            name="pause_requested_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]
