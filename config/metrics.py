"""`GET /metrics` in Prometheus' text format, and the request latency histogram (docs/operations.md
"Metrics").

The endpoint exists only when BATON_METRICS_TOKEN is set (404 otherwise, like any unknown path) and answers
401 without `Authorization: Bearer <token>`. Request latencies are observed by `RequestMetricsMiddleware` in
each web process, into prometheus_client's registry: with PROMETHEUS_MULTIPROC_DIR set (`serve` sets it)
every process writes its samples to a file there and a scrape of any process adds them all up; without it a
scrape shows the answering process's own. What the database knows (runs, steps, the queue) is computed at
scrape time by the collectors the composition root hands to `metrics_view` (runs/metrics.py).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable

from django.conf import settings
from django.http import Http404, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

# Seconds; from a cached read (a few ms) to a slow trigger with `wait`.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

REQUEST_SECONDS = Histogram(
    "baton_http_request_duration_seconds",
    "Time from a request reaching Django to its response (a streamed body: to its first part), by method.",
    ["method"],
    buckets=LATENCY_BUCKETS,
)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_OBSERVERS = {method: REQUEST_SECONDS.labels(method).observe for method in _METHODS}
_OTHER = REQUEST_SECONDS.labels("other").observe


class RequestMetricsMiddleware:
    """Observes every request's latency (first in MIDDLEWARE, so it covers the others)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        try:
            return self.get_response(request)
        finally:
            _OBSERVERS.get(request.method, _OTHER)(time.perf_counter() - started)


def _authorized(request) -> bool:
    token = settings.BATON_METRICS_TOKEN
    scheme, _, given = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(collectors: Iterable[Callable[[], Iterable]] = ()):
    """The view; `collectors` are callables returning prometheus_client metric families, run per scrape."""

    class _Collected:
        def collect(self):
            for collector in collectors:
                yield from collector()

    @csrf_exempt
    @never_cache
    @require_safe
    def metrics(request):
        if not settings.BATON_METRICS_TOKEN:
            raise Http404
        if not _authorized(request):
            response = HttpResponse("Unauthorized: Authorization: Bearer <BATON_METRICS_TOKEN>\n", status=401)
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            response["Content-Type"] = "text/plain; charset=utf-8"
            return response
        registry = CollectorRegistry()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            MultiProcessCollector(registry)
        else:
            registry.register(_ThisProcess())
        registry.register(_Collected())
        return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)

    return metrics


class _ThisProcess:
    def collect(self):
        yield from REQUEST_SECONDS.collect()
