
import config.ids
import django.db.models.deletion
import django.utils.timezone
from decimal import Decimal
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
        ('workflows', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Run',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('run'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('definition_hash', models.CharField(blank=True, default='', max_length=64)),
                ('status', models.CharField(choices=[('queued', 'Queued'), ('running', 'Running'), ('awaiting_approval', 'Awaiting approval'), ('awaiting_input', 'Awaiting input'), ('paused', 'Paused'), ('completed', 'Completed'), ('failed', 'Failed'), ('cancelled', 'Cancelled')], default='queued', max_length=20)),
                ('trigger', models.CharField(choices=[('api', 'API'), ('webhook', 'Webhook'), ('schedule', 'Schedule'), ('manual', 'Manual'), ('rerun', 'Rerun'), ('sub_workflow', 'Sub-workflow')], default='api', max_length=20)),
                ('input_data', models.JSONField(blank=True, default=dict)),
                ('metadata', models.JSONField(blank=True, default=dict)),
                ('env', models.CharField(blank=True, max_length=100, null=True)),
                ('dry_run', models.BooleanField(default=False)),
                ('model', models.CharField(blank=True, default='', max_length=200)),
                ('concurrency_key', models.CharField(blank=True, max_length=255, null=True)),
                ('result', models.JSONField(blank=True, null=True)),
                ('error', models.JSONField(blank=True, null=True)),
                ('pinned', models.BooleanField(default=False)),
                ('pause_signal', models.JSONField(blank=True, null=True)),
                ('triggered_by', models.CharField(blank=True, default='', max_length=40)),
                ('triggered_by_type', models.CharField(blank=True, default='', max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('completed_at', models.DateTimeField(blank=True, null=True)),
                ('cancel_requested_at', models.DateTimeField(blank=True, null=True)),
                ('terminate_requested_at', models.DateTimeField(blank=True, null=True)),
                ('pause_requested_at', models.DateTimeField(blank=True, null=True)),
                ('deadline_at', models.DateTimeField(blank=True, null=True)),
                ('total_tokens', models.BigIntegerField(default=0)),
                ('cost_usd', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=14)),
                ('event_seq', models.PositiveIntegerField(default=0)),
                ('organization', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='accounts.organization')),
                ('parent_run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='child_runs', to='runs.run')),
                ('workflow', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='workflows.workflow')),
                ('workflow_version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='runs', to='workflows.workflowversion')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='RunFile',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('file'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=255)),
                ('size', models.PositiveBigIntegerField(default=0)),
                ('content_type', models.CharField(blank=True, default='', max_length=255)),
                ('sha256', models.CharField(max_length=64)),
                ('storage_path', models.CharField(max_length=500)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='run_files', to='accounts.organization')),
                ('run', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='files', to='runs.run')),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='StepRun',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('sr'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('step_id', models.CharField(max_length=64)),
                ('type', models.CharField(max_length=32)),
                ('name', models.CharField(blank=True, default='', max_length=200)),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('queued', 'Queued'), ('running', 'Running'), ('waiting', 'Waiting'), ('awaiting_approval', 'Awaiting approval'), ('awaiting_input', 'Awaiting input'), ('completed', 'Completed'), ('failed', 'Failed'), ('skipped', 'Skipped'), ('cancelled', 'Cancelled')], default='pending', max_length=20)),
                ('iteration', models.PositiveIntegerField(blank=True, null=True)),
                ('attempt', models.PositiveIntegerField(default=0)),
                ('attempts', models.JSONField(blank=True, default=list)),
                ('input_data', models.JSONField(blank=True, null=True)),
                ('output_data', models.JSONField(blank=True, null=True)),
                ('error', models.JSONField(blank=True, null=True)),
                ('skip_reason', models.CharField(blank=True, default='', max_length=40)),
                ('state', models.JSONField(blank=True, default=dict)),
                ('queued_at', models.DateTimeField(blank=True, null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('completed_at', models.DateTimeField(blank=True, null=True)),
                ('lease_owner', models.CharField(blank=True, default='', max_length=64)),
                ('lease_expires_at', models.DateTimeField(blank=True, null=True)),
                ('wake_at', models.DateTimeField(blank=True, null=True)),
                ('dispatched_at', models.DateTimeField(blank=True, null=True)),
                ('tokens', models.JSONField(blank=True, default=dict)),
                ('cost_usd', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=14)),
                ('parent', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='iterations', to='runs.steprun')),
                ('run', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='runs.run')),
            ],
            options={
                'ordering': ['run', 'queued_at', 'id'],
            },
        ),
        migrations.AddField(
            model_name='run',
            name='parent_step_run',
            field=models.OneToOneField(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='child_run', to='runs.steprun'),
        ),
        migrations.CreateModel(
            name='RunEvent',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.PositiveIntegerField()),
                ('type', models.CharField(choices=[('run_queued', 'Run Queued'), ('run_started', 'Run Started'), ('step_started', 'Step Started'), ('step_completed', 'Step Completed'), ('step_failed', 'Step Failed'), ('step_retrying', 'Step Retrying'), ('step_skipped', 'Step Skipped'), ('run_paused', 'Run Paused'), ('run_awaiting_approval', 'Run Awaiting Approval'), ('run_awaiting_input', 'Run Awaiting Input'), ('run_completed', 'Run Completed'), ('run_failed', 'Run Failed'), ('run_cancelled', 'Run Cancelled')], max_length=32)),
                ('step_id', models.CharField(blank=True, default='', max_length=64)),
                ('data', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('run', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='events', to='runs.run')),
            ],
            options={
                'ordering': ['run', 'seq'],
                'constraints': [models.UniqueConstraint(fields=('run', 'seq'), name='run_event_seq_unique')],
            },
        ),
        migrations.AddIndex(
            model_name='steprun',
            index=models.Index(condition=models.Q(('status', 'running')), fields=['status', 'lease_expires_at'], name='step_status_lease'),
        ),
        migrations.AddIndex(
            model_name='steprun',
            index=models.Index(fields=['status', 'wake_at'], name='step_status_wake'),
        ),
        migrations.AddIndex(
            model_name='steprun',
            index=models.Index(condition=models.Q(('status', 'queued')), fields=['status', 'dispatched_at'], name='step_status_dispatched'),
        ),
        migrations.AddConstraint(
            model_name='steprun',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['pending', 'queued', 'running', 'waiting', 'awaiting_approval', 'awaiting_input', 'completed', 'failed', 'skipped', 'cancelled'])), name='step_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='steprun',
            constraint=models.UniqueConstraint(condition=models.Q(('parent__isnull', True)), fields=('run', 'step_id'), name='step_run_unique'),
        ),
        migrations.AddConstraint(
            model_name='steprun',
            constraint=models.UniqueConstraint(condition=models.Q(('parent__isnull', False)), fields=('parent', 'iteration'), name='step_iteration_unique'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['organization', '-created_at'], name='run_org_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['organization', 'status', '-created_at'], name='run_org_status'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['workflow', '-created_at'], name='run_workflow_created'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['status', 'deadline_at'], name='run_status_deadline'),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['workflow', 'concurrency_key', 'status'], name='run_wf_concurrency'),
        ),
        migrations.AddConstraint(
            model_name='run',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['queued', 'running', 'awaiting_approval', 'awaiting_input', 'paused', 'completed', 'failed', 'cancelled'])), name='run_status_valid'),
        ),
    ]
