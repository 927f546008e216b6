# Owned by the security policy and secrets work (see docs in the team brief): edit this file in place; keep its name and dependencies.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import accounts.models_security
import config.ids


class Migration(migrations.Migration):
    dependencies = [('accounts', '0001_initial')]

    operations = [
        migrations.CreateModel(
            name='SigningSecret',
            fields=[
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='signing_secret', serialize=False, to='accounts.organization')),
                ('secret_encrypted', models.TextField()),
                ('previous_secret_encrypted', models.TextField(blank=True, default='')),
                ('previous_expires_at', models.DateTimeField(blank=True, null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('rotated_at', models.DateTimeField(blank=True, null=True)),
            ],
        ),
        migrations.CreateModel(
            name='SecurityPolicy',
            fields=[
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='security_policy', serialize=False, to='accounts.organization')),
                ('allow_script_steps', models.BooleanField(default=True)),
                ('block_private_networks', models.BooleanField(default=True)),
                ('http_allowlist', models.JSONField(blank=True, default=list)),
                ('max_run_duration_seconds', models.PositiveIntegerField(default=3600)),
                ('max_steps_per_run', models.PositiveIntegerField(default=1000)),
                ('max_tokens_per_run', models.PositiveBigIntegerField(blank=True, null=True)),
                ('require_approval_for_envs', models.JSONField(blank=True, default=accounts.models_security.default_approval_envs)),
                ('redact_patterns', models.JSONField(blank=True, default=list)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('updated_by', models.CharField(blank=True, default='', max_length=40)),
            ],
            options={
                'constraints': [models.CheckConstraint(condition=models.Q(('max_run_duration_seconds__gte', 1), ('max_run_duration_seconds__lte', 2592000)), name='policy_run_duration_range'), models.CheckConstraint(condition=models.Q(('max_steps_per_run__gte', 1), ('max_steps_per_run__lte', 1000000)), name='policy_max_steps_range')],
            },
        ),
        migrations.CreateModel(
            name='Secret',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('sec'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=64)),
                ('description', models.CharField(blank=True, default='', max_length=500)),
                ('value_encrypted', models.TextField()),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('created_by', models.CharField(blank=True, default='', max_length=40)),
                ('updated_by', models.CharField(blank=True, default='', max_length=40)),
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='secrets', to='accounts.organization')),
            ],
            options={
                'ordering': ['name'],
                'constraints': [models.UniqueConstraint(fields=('organization', 'name'), name='secret_name_unique')],
            },
        ),
    ]
