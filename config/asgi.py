import gc
import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
django.setup(set_prefix=False)

from config.asgi_handler import PooledASGIHandler  # noqa: E402  (after Django is set up)

application = PooledASGIHandler()

# What Django, the apps and their modules made at start lasts as long as the process: out of the collector's
# reach, a full collection no longer walks it (docs/performance.md "The web tier, third session").
gc.collect()
gc.freeze()
