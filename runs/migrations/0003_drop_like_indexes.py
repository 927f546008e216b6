"""Drop the `*_like` indexes PostgreSQL's backend adds beside indexed varchar ids (config/pattern_indexes.py)."""

from django.db import migrations

from config.pattern_indexes import drop_like_indexes


class Migration(migrations.Migration):
    dependencies = [("runs", "0002_run_metadata_index")]

    operations = [
        drop_like_indexes(
            ("runs", "run", "id"),
            ("runs", "run", "parent_run"),
            ("runs", "run", "parent_step_run"),
            ("runs", "run", "workflow_version"),
            ("runs", "steprun", "id"),
            ("runs", "steprun", "run"),
            ("runs", "steprun", "parent"),
        )
    ]
