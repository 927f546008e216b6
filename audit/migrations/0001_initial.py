
import config.ids
import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('accounts', '0001_initial'),
    ]

    operations = [
        migrations.CreateModel(
            name='AuditChainHead',
            fields=[
                ('organization', models.OneToOneField(on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='accounts.organization')),
                ('seq', models.PositiveBigIntegerField(default=0)),
                ('hash', models.CharField(default='0000000000000000000000000000000000000000000000000000000000000000', max_length=64)),
            ],
        ),
        migrations.CreateModel(
            name='AuditCheckpoint',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('seq', models.PositiveBigIntegerField()),
                ('hash', models.CharField(max_length=64)),
                ('signed_at', models.DateTimeField()),
                ('previous', models.CharField(blank=True, max_length=64, null=True)),
                ('key_id', models.CharField(max_length=16)),
                ('signature', models.CharField(max_length=88)),
                ('organization', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.organization')),
            ],
            options={
                'ordering': ['organization', 'id'],
                'indexes': [models.Index(fields=['organization', 'id'], name='audit_checkpoint_org')],
            },
        ),
        migrations.CreateModel(
            name='AuditEvent',
            fields=[
                ('id', models.CharField(default=config.ids.IdFactory('evt'), editable=False, max_length=40, primary_key=True, serialize=False)),
                ('seq', models.PositiveBigIntegerField()),
                ('event', models.CharField(max_length=64)),
                ('actor', models.CharField(max_length=64)),
                ('actor_type', models.CharField(max_length=10)),
                ('target_type', models.CharField(blank=True, max_length=32)),
                ('target_id', models.CharField(blank=True, max_length=64)),
                ('run_id', models.CharField(blank=True, max_length=40, null=True)),
                ('note', models.TextField(blank=True, null=True)),
                ('data', models.JSONField(default=dict)),
                ('ip', models.CharField(blank=True, max_length=45, null=True)),
                ('request_id', models.CharField(blank=True, max_length=128, null=True)),
                ('timestamp', models.DateTimeField()),
                ('prev_hash', models.CharField(max_length=64)),
                ('hash', models.CharField(max_length=64)),
                ('organization', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='accounts.organization')),
            ],
            options={
                'ordering': ['organization', 'seq'],
                'indexes': [models.Index(fields=['organization', 'event', 'seq'], name='audit_org_event'), models.Index(fields=['organization', 'actor', 'seq'], name='audit_org_actor'), models.Index(fields=['organization', 'target_id', 'seq'], name='audit_org_target'), models.Index(fields=['organization', 'timestamp'], name='audit_org_time')],
                'constraints': [models.UniqueConstraint(fields=('organization', 'seq'), name='audit_org_seq_unique')],
            },
        ),
    ]
