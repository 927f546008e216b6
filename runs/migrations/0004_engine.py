# Owned by the engine-control work (see docs in the team brief): edit this file in place; keep its name and dependencies.
"""Concurrency limits (runs/concurrency.py): counting a workflow key's active runs by
(workflow, concurrency_key, status). Admission's FIFO scan of an organisation's queued runs uses the existing
(organization, status, -created_at) index."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [('runs', '0003_api')]

    operations = [
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['workflow', 'concurrency_key', 'status'], name='run_wf_concurrency'),
        ),
    ]
