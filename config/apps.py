from django.apps import AppConfig


class ConfigConfig(AppConfig):
    name = "config"
    label = "config"
    verbose_name = "Baton"

    def ready(self):
        import logging

        from config.api import schema_extensions  # noqa: F401  (registers the OpenAPI auth schemes)
        from config.redaction import HookTokenFilter

        # uvicorn's access log has its own handler (not settings.LOGGING's): the filter goes on its logger.
        logging.getLogger("uvicorn.access").addFilter(HookTokenFilter())
