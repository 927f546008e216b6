
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
