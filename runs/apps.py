from django.apps import AppConfig


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self):
        from django_q.signals import post_spawn

        post_spawn.connect(_start_reconciler, dispatch_uid="baton-reconciler")


def _start_reconciler(sender, proc_name=None, **kwargs):
    """Each django-q2 worker process (`manage.py qcluster`, also under `serve`) runs a reconciler thread."""
    from runs.engine.reconciler import start_reconciler_thread

    start_reconciler_thread()
