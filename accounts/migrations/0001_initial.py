
import accounts.models.security
import accounts.models.tenancy
import config.ids
import django.db.models.deletion
import django.utils.timezone
from decimal import Decimal
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('auth', '0012_alter_user_first_name_max_length'),
    ]

    operations = [
        migrations.CreateModel(
            name='LlmProvider',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('llm'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('kind', models.CharField(choices=[('openai', 'OpenAI-compatible Chat Completions'), ('anthropic', 'Anthropic Messages')], max_length=20)),
                ('base_url', models.CharField(max_length=2000)),
                ('api_key_encrypted', models.TextField(blank=True, default='')),
                ('api_key_last4', models.CharField(blank=True, default='', max_length=4)),
                ('default_model', models.CharField(max_length=200)),
                ('input_price_per_million', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=12)),
                ('output_price_per_million', models.DecimalField(decimal_places=6, default=Decimal('0'), max_digits=12)),
                ('model_prices', models.JSONField(blank=True, default=dict)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='Organization',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('org'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=200)),
                ('plan', models.CharField(choices=[('starter', 'Starter'), ('growth', 'Growth'), ('enterprise', 'Enterprise')], default='starter', max_length=20)),
                ('rate_per_minute', models.PositiveIntegerField(blank=True, null=True)),
                ('rate_per_day', models.PositiveIntegerField(blank=True, null=True)),
                ('monthly_run_limit', models.PositiveIntegerField(blank=True, null=True)),
                ('monthly_token_quota', models.PositiveBigIntegerField(blank=True, null=True)),
                ('max_concurrent_runs', models.PositiveIntegerField(blank=True, null=True)),
                ('retention_days', models.PositiveIntegerField(default=90)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
            ],
            options={
                'ordering': ['name'],
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
            ],
            options={
                'ordering': ['name'],
            },
        ),
        migrations.CreateModel(
            name='User',
            fields=[
                ('password', models.CharField(max_length=128, verbose_name='password')),
                ('last_login', models.DateTimeField(blank=True, null=True, verbose_name='last login')),
                ('is_superuser', models.BooleanField(default=False, help_text='Designates that this user has all permissions without explicitly assigning them.', verbose_name='superuser status')),
                ('id', models.CharField(default=config.ids.IdFactory('usr'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('email', models.EmailField(max_length=254, unique=True)),
                ('name', models.CharField(blank=True, max_length=150)),
                ('is_active', models.BooleanField(default=True)),
                ('is_staff', models.BooleanField(default=False)),
                ('date_joined', models.DateTimeField(default=django.utils.timezone.now)),
                ('groups', models.ManyToManyField(blank=True, help_text='The groups this user belongs to. A user will get all permissions granted to each of their groups.', related_name='user_set', related_query_name='user', to='auth.group', verbose_name='groups')),
                ('user_permissions', models.ManyToManyField(blank=True, help_text='Specific permissions for this user.', related_name='user_set', related_query_name='user', to='auth.permission', verbose_name='user permissions')),
            ],
            options={
                'ordering': ['email'],
            },
            managers=[
                ('objects', accounts.models.tenancy.UserManager()),
            ],
        ),
        migrations.CreateModel(
            name='ApiKey',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('key'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('prefix', models.CharField(max_length=16)),
                ('last4', models.CharField(max_length=4)),
                ('key_hash', models.CharField(max_length=64, unique=True)),
                ('pepper_id', models.CharField(max_length=16)),
                ('scopes', models.JSONField(default=list)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('expires_at', models.DateTimeField(blank=True, null=True)),
                ('last_used_at', models.DateTimeField(blank=True, null=True)),
                ('revoked_at', models.DateTimeField(blank=True, null=True)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('revoked_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['-created_at'],
            },
        ),
        migrations.CreateModel(
            name='Agent',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('agent'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('name', models.CharField(max_length=100)),
                ('kind', models.CharField(choices=[('built-in', 'Built-in'), ('custom', 'Custom')], default='custom', max_length=10)),
                ('builtin_key', models.CharField(blank=True, default='', max_length=40)),
                ('description', models.TextField(blank=True, default='', max_length=2000)),
                ('model', models.CharField(blank=True, default='', max_length=200)),
                ('system_prompt', models.TextField(blank=True, default='', max_length=65536)),
                ('temperature', models.FloatField(blank=True, null=True)),
                ('max_tokens', models.PositiveIntegerField(blank=True, null=True)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('provider', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='agents', to='accounts.llmprovider')),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
        ),
        migrations.CreateModel(
            name='Membership',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('role', models.CharField(choices=[('owner', 'Owner'), ('admin', 'Admin'), ('member', 'Member'), ('viewer', 'Viewer')], default='member', max_length=10)),
                ('created_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['created_at'],
            },
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
                ('require_approval_for_envs', models.JSONField(blank=True, default=accounts.models.security.default_approval_envs)),
                ('redact_patterns', models.JSONField(blank=True, default=list)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('updated_by', models.CharField(blank=True, default='', max_length=40)),
            ],
        ),
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
        migrations.AddConstraint(
            model_name='organization',
            constraint=models.CheckConstraint(condition=models.Q(('retention_days__gte', 1)), name='org_retention_positive'),
        ),
        migrations.AddField(
            model_name='membership',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='memberships', to='accounts.organization'),
        ),
        migrations.AddField(
            model_name='llmprovider',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='llm_providers', to='accounts.organization'),
        ),
        migrations.AddField(
            model_name='apikey',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_keys', to='accounts.organization'),
        ),
        migrations.AddField(
            model_name='agent',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='agents', to='accounts.organization'),
        ),
        migrations.AddField(
            model_name='secret',
            name='organization',
            field=models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='secrets', to='accounts.organization'),
        ),
        migrations.AddConstraint(
            model_name='securitypolicy',
            constraint=models.CheckConstraint(condition=models.Q(('max_run_duration_seconds__gte', 1), ('max_run_duration_seconds__lte', 2592000)), name='policy_run_duration_range'),
        ),
        migrations.AddConstraint(
            model_name='securitypolicy',
            constraint=models.CheckConstraint(condition=models.Q(('max_steps_per_run__gte', 1), ('max_steps_per_run__lte', 1000000)), name='policy_max_steps_range'),
        ),
        migrations.AddConstraint(
            model_name='membership',
            constraint=models.UniqueConstraint(fields=('organization', 'user'), name='membership_unique'),
        ),
        migrations.AddConstraint(
            model_name='llmprovider',
            constraint=models.UniqueConstraint(fields=('organization', 'name'), name='llm_provider_name_unique'),
        ),
        migrations.AddConstraint(
            model_name='agent',
            constraint=models.UniqueConstraint(fields=('organization', 'name'), name='agent_name_unique'),
        ),
        migrations.AddConstraint(
            model_name='agent',
            constraint=models.UniqueConstraint(condition=models.Q(('builtin_key', ''), _negated=True), fields=('organization', 'builtin_key'), name='agent_builtin_key_unique'),
        ),
        migrations.AddConstraint(
            model_name='secret',
            constraint=models.UniqueConstraint(fields=('organization', 'name'), name='secret_name_unique'),
        ),
    ]
