from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self):
        from accounts.models_security import Secret, SecurityPolicy

        for model in (SecurityPolicy, Secret):
            uid = f"baton-security-{model.__name__}"
            post_save.connect(_security_changed, sender=model, dispatch_uid=uid)
            post_delete.connect(_security_changed, sender=model, dispatch_uid=f"{uid}-deleted")


def _security_changed(sender, instance, **kwargs):
    """A policy or secret changed: the engine drops this process's cached copy (runs/engine/secrets.py)."""
    from runs.engine.secrets import invalidate

    invalidate(instance.organization_id)
