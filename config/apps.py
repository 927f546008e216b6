from django.apps import AppConfig


class ConfigConfig(AppConfig):
    name = "config"
    label = "config"
    verbose_name = "Baton"

    def ready(self):
        from config.api import schema_extensions  # noqa: F401  (registers the OpenAPI auth schemes)
