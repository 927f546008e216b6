# Owned by the LLM providers and agents work (see docs in the team brief): edit this file in place; keep its name and dependencies.

from decimal import Decimal

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import config.ids


def seed_builtin_agents(apps, schema_editor):
    """Give every existing organisation the built-in agents (new ones get them from organization_create)."""
    from accounts.builtin_agents import BUILTIN_AGENTS

    Organization = apps.get_model('accounts', 'Organization')
    Agent = apps.get_model('accounts', 'Agent')
    for org in Organization.objects.all().iterator():
        have = set(Agent.objects.filter(organization=org).values_list('builtin_key', flat=True))
        names = set(Agent.objects.filter(organization=org).values_list('name', flat=True))
        Agent.objects.bulk_create([
            Agent(organization=org, kind='built-in', **{**spec, 'name': spec['name'] if spec['name'] not in names
                  else f"{spec['name']} (built-in)"})
            for spec in BUILTIN_AGENTS if spec['builtin_key'] not in have
        ])


class Migration(migrations.Migration):
    dependencies = [('accounts', '0002_security')]

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
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='llm_providers', to='accounts.organization')),
            ],
            options={
                'ordering': ['created_at', 'id'],
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
                ('organization', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='agents', to='accounts.organization')),
                ('provider', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='agents', to='accounts.llmprovider')),
            ],
            options={
                'ordering': ['created_at', 'id'],
            },
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
        migrations.RunPython(seed_builtin_agents, migrations.RunPython.noop),
    ]
