"""Settings of the benchmark processes (bench/run.py, its qcluster and uvicorn children): Baton's own, plus a
bare DRF view for the API benchmark (bench/urls.py, never in production URLs) and, when the harness sets
BATON_BENCH_QUEUE, a django-q2 queue of the benchmark's own (a shared Redis keeps other work apart)."""

import os

from config.settings import *  # noqa: F403
from config.settings import Q_CLUSTER

ROOT_URLCONF = "bench.urls"
if os.environ.get("BATON_BENCH_QUEUE"):
    Q_CLUSTER = {**Q_CLUSTER, "name": os.environ["BATON_BENCH_QUEUE"]}
# django-q2 logs every enqueue at INFO: the benchmarks enqueue thousands.
LOGGING = {**LOGGING, "loggers": {**LOGGING["loggers"], "django-q": {"level": "WARNING"}}}  # noqa: F405
# The API benchmark's server may set CONN_MAX_AGE (docs/performance.md: persistent connections
# under ASGI leave one connection per request thread behind).
if os.environ.get("BATON_BENCH_CONN_MAX_AGE") is not None:
    DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ["BATON_BENCH_CONN_MAX_AGE"])  # noqa: F405
