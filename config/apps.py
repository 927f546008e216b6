from django.apps import AppConfig
from django.conf import LazySettings, settings


class _Settings(LazySettings):
    """`django.conf.settings` with plain attribute reads. A setting read once is kept in the object's own dict
    (LazySettings does that); LazyObject's `__getattribute__` then asked every value read for a
    `_mask_wrapped` attribute, which a bool, a string or a number does not have: an AttributeError made and
    dropped at every read (about 60 in a trigger, 2 % of its instructions; docs/performance.md). That check
    only matters for the proxy methods of lazy objects that wrap other types, not for settings. Swapping the
    wrapped settings (override_settings) clears the kept values as before."""

    __getattribute__ = object.__getattribute__


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
        if type(settings) is LazySettings:
            # The object's real class (LazyObject's `__class__` property answers with the wrapped one's).
            object.__dict__["__class__"].__set__(settings, _Settings)
