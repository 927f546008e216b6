
import config.ids
import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='Project',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('proj'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=200)),
                ('description', models.TextField(blank=True, max_length=2000)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='projects', to='accounts.organization')),
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='Schedule',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('sched'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('cron_expression', models.CharField(max_length=120)),
                ('timezone', models.CharField(default='UTC', max_length=64)),
                ('input_data', models.JSONField(blank=True, default=dict)),
                ('enabled', models.BooleanField(default=True)),
                ('catchup', models.CharField(choices=[('none', 'None'), ('last', 'The last one'), ('all', 'All of them')], default='none', max_length=8)),
                ('catchup_window_seconds', models.PositiveIntegerField(default=3600)),
                ('overlap', models.CharField(choices=[('skip', 'Skip'), ('queue', 'Queue (at most one waiting)'), ('allow', 'Allow')], default='skip', max_length=8)),
                ('next_run_at', models.DateTimeField(blank=True, null=True)),
                ('last_run_at', models.DateTimeField(blank=True, null=True)),
                ('last_run_id', models.CharField(blank=True, default='', max_length=40)),
                ('created_by', models.CharField(blank=True, default='', max_length=40)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='schedules', to='accounts.organization')),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='ScheduleFire',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('fire_time', models.DateTimeField()),
                ('outcome', models.CharField(choices=[('started', 'A run was started'), ('waiting', 'Waiting for the previous run (overlap: queue)'), ('skipped_overlap', 'Skipped: the previous run was still active'), ('skipped_paused', 'Skipped: the workflow was paused'), ('missed', 'Missed (catch-up policy)'), ('failed', 'The run could not be created')], max_length=16)),
                ('run_id', models.CharField(blank=True, default='', max_length=40)),
                ('backfill', models.BooleanField(default=False)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('schedule', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='fires', to='workflows.schedule')),
            ],
            options={
                'ordering': ['schedule', 'fire_time'],
            },
        ),
        migrations.CreateModel(
            name='Workflow',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('wf'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=200)),
                ('slug', models.SlugField(max_length=100)),
                ('description', models.TextField(blank=True, default='')),
                ('status', models.CharField(choices=[('draft', 'Draft'), ('active', 'Active'), ('paused', 'Paused'), ('archived', 'Archived')], default='draft', max_length=10)),
                ('trigger_type', models.CharField(choices=[('api', 'API'), ('webhook', 'Webhook'), ('schedule', 'Schedule'), ('manual', 'Manual')], default='api', max_length=10)),
                ('tags', models.JSONField(blank=True, default=list)),
                ('concurrency', models.JSONField(blank=True, null=True)),
                ('retention_days', models.PositiveIntegerField(blank=True, null=True)),
                ('webhook_enabled', models.BooleanField(default=False)),
                ('webhook_secret', models.CharField(max_length=64)),
                ('current_version', models.PositiveIntegerField(default=0)),
                ('published_version', models.PositiveIntegerField(blank=True, null=True)),
                ('created_by', models.CharField(blank=True, default='', max_length=40)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('archived_at', models.DateTimeField(blank=True, null=True)),
                ('last_run_at', models.DateTimeField(blank=True, null=True)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='workflows', to='accounts.organization')),
                ('project', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='workflows', to='workflows.project')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
            },
        ),
        migrations.CreateModel(
            name='WebhookDelivery',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('key', models.CharField(max_length=300)),
                ('run_id', models.CharField(blank=True, default='', max_length=40)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='webhook_deliveries', to='workflows.workflow')),
            ],
        ),
        migrations.AddField(
            model_name='schedule',
            name='workflow',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='schedules', to='workflows.workflow'),
        ),
        migrations.CreateModel(
            name='WorkflowTag',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=50)),
                ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='tag_rows', to='workflows.workflow')),
            ],
        ),
        migrations.CreateModel(
            name='WorkflowTemplate',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('tpl'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=200)),
                ('description', models.TextField(blank=True, default='')),
                ('category', models.CharField(blank=True, default='', max_length=50)),
                ('definition', models.JSONField()),
                ('is_builtin', models.BooleanField(default=False)),
                ('source_workflow_id', models.CharField(blank=True, default='', max_length=40)),
                ('created_by', models.CharField(blank=True, default='', max_length=40)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('organization', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.CASCADE, related_name='workflow_templates', to='accounts.organization')),
            ],
            options={
                'ordering': ['-is_builtin', 'category', 'name', 'id'],
            },
        ),
        migrations.CreateModel(
            name='WorkflowVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveIntegerField()),
                ('definition', models.JSONField()),
                ('change_summary', models.CharField(blank=True, default='', max_length=500)),
                ('created_by', models.CharField(blank=True, default='', max_length=40)),
                ('content_hash', models.CharField(max_length=64)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('workflow', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='workflows.workflow')),
            ],
            options={
                'ordering': ['workflow', '-number'],
            },
        ),
        migrations.AddConstraint(
            model_name='project',
            constraint=models.UniqueConstraint(fields=('organization', 'name'), name='project_name_unique'),
        ),
        migrations.AddIndex(
            model_name='schedulefire',
            index=models.Index(condition=models.Q(('outcome', 'waiting')), fields=['schedule', 'fire_time'], name='schedule_fire_waiting'),
        ),
        migrations.AddConstraint(
            model_name='schedulefire',
            constraint=models.UniqueConstraint(fields=('schedule', 'fire_time'), name='schedule_fire_unique'),
        ),
        migrations.AddIndex(
            model_name='workflow',
            index=models.Index(fields=['organization', 'status', '-created_at'], name='workflow_org_status'),
        ),
        migrations.AddConstraint(
            model_name='workflow',
            constraint=models.UniqueConstraint(fields=('organization', 'slug'), name='workflow_org_slug_unique'),
        ),
        migrations.AddConstraint(
            model_name='workflow',
            constraint=models.CheckConstraint(condition=models.Q(('status__in', ['draft', 'active', 'paused', 'archived'])), name='workflow_status_valid'),
        ),
        migrations.AddConstraint(
            model_name='workflow',
            constraint=models.CheckConstraint(condition=models.Q(('retention_days__isnull', True), ('retention_days__gte', 1), _connector='OR'), name='workflow_retention_positive'),
        ),
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(fields=['created_at'], name='webhook_delivery_created'),
        ),
        migrations.AddConstraint(
            model_name='webhookdelivery',
            constraint=models.UniqueConstraint(fields=('workflow', 'key'), name='webhook_delivery_unique'),
        ),
        migrations.AddIndex(
            model_name='schedule',
            index=models.Index(condition=models.Q(('next_run_at__isnull', False)), fields=['next_run_at'], name='schedule_due'),
        ),
        migrations.AddIndex(
            model_name='schedule',
            index=models.Index(fields=['organization', 'created_at'], name='schedule_org_created'),
        ),
        migrations.AddConstraint(
            model_name='schedule',
            constraint=models.CheckConstraint(condition=models.Q(('catchup__in', ['none', 'last', 'all'])), name='schedule_catchup_valid'),
        ),
        migrations.AddConstraint(
            model_name='schedule',
            constraint=models.CheckConstraint(condition=models.Q(('overlap__in', ['skip', 'queue', 'allow'])), name='schedule_overlap_valid'),
        ),
        migrations.AddIndex(
            model_name='workflowtag',
            index=models.Index(fields=['name'], name='workflow_tag_name'),
        ),
        migrations.AddConstraint(
            model_name='workflowtag',
            constraint=models.UniqueConstraint(fields=('workflow', 'name'), name='workflow_tag_unique'),
        ),
        migrations.AddIndex(
            model_name='workflowtemplate',
            index=models.Index(fields=['organization', 'category'], name='template_org_category'),
        ),
        migrations.AddConstraint(
            model_name='workflowtemplate',
            constraint=models.CheckConstraint(condition=models.Q(models.Q(('is_builtin', True), ('organization__isnull', True)), models.Q(('is_builtin', False), ('organization__isnull', False)), _connector='OR'), name='template_builtin_xor_org'),
        ),
        migrations.AddConstraint(
            model_name='workflowversion',
            constraint=models.UniqueConstraint(fields=('workflow', 'number'), name='workflow_version_unique'),
        ),
        migrations.AddConstraint(
            model_name='workflowversion',
            constraint=models.CheckConstraint(condition=models.Q(('number__gte', 1)), name='workflow_version_positive'),
        ),
    ]
