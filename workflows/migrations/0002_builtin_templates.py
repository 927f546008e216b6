from django.db import migrations


def load_builtin_templates(apps, schema_editor):
    from workflows.templates_loader import templates_sync_builtin

    templates_sync_builtin(apps.get_model("workflows", "WorkflowTemplate"))


class Migration(migrations.Migration):
    dependencies = [("workflows", "0001_initial")]

    operations = [migrations.RunPython(load_builtin_templates, migrations.RunPython.noop)]
