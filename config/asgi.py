import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.asgi_handler import PooledASGIHandler  # noqa: E402  (after Django is set up)

application = PooledASGIHandler()
