"""Drop the `*_like` index PostgreSQL's backend adds beside the event id (config/pattern_indexes.py)."""

from django.db import migrations

from config.pattern_indexes import drop_like_indexes


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_initial")]

    operations = [drop_like_indexes(("audit", "auditevent", "id"))]
