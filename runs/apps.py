from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save

# Seconds a django-q2 worker process keeps a database connection (its threads are long-lived, unlike a
# web request's; see config/env.py). Without it, every task and every reconciler pass would connect anew.
WORKER_CONN_MAX_AGE = 60


class RunsConfig(AppConfig):
    name = "runs"
    verbose_name = "Runs"

    def ready(self):
        from django_q.signals import post_spawn

        from accounts.models import Secret, SecurityPolicy
        from runs.engine import cluster_locks
        from runs.engine.steps import register_step_types

        register_step_types()
        cluster_locks.install()  # a SIGKILLed worker leaves no lock of its cluster held
        post_spawn.connect(_start_reconciler, dispatch_uid="baton-reconciler")
        for model in (SecurityPolicy, Secret):
            uid = f"baton-security-{model.__name__}"
            post_save.connect(_security_changed, sender=model, dispatch_uid=uid)
            post_delete.connect(_security_changed, sender=model, dispatch_uid=f"{uid}-deleted")


def _security_changed(sender, instance, **kwargs):
    """A policy or secret changed: the engine drops this process's cached copy (runs/engine/secrets.py)."""
    from runs.engine.secrets import invalidate

    invalidate(instance.organization_id)


def _start_reconciler(sender, proc_name=None, **kwargs):
    """Each django-q2 worker process (`manage.py qcluster`, also under `serve`) runs a reconciler thread
    and a scheduler thread, and keeps its database connections between tasks."""
    from django.db import connections

    from runs.engine import slots
    from runs.engine.reconciler import start_reconciler_thread
    from runs.scheduling import start_scheduler_thread

    # A connection's settings dict is shared by every thread's connection to that alias. No health check
    # before each task (a round trip each): a connection the server dropped fails its first statement
    # instead, and runs.tasks retries the step once on a new connection.
    for alias in connections:
        connections[alias].settings_dict["CONN_MAX_AGE"] = WORKER_CONN_MAX_AGE
        connections[alias].settings_dict["CONN_HEALTH_CHECKS"] = False
    start_reconciler_thread()
    slots.enable()  # many I/O-bound steps at once; drained on SIGTERM and before the process exits
    start_scheduler_thread()  # fires schedules on time (runs/scheduling.py)
