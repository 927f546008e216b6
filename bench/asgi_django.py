"""Django's own ASGI handler on the benchmark's settings (a thread per request): what `serve` ran before
config/asgi_handler.py, kept for the API benchmark's comparison."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
application = get_asgi_application()
