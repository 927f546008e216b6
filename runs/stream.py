"""GET /api/v1/runs/{id}/stream: a run's events as Server-Sent Events (docs/streaming.md).

The URL maps to `run_stream`, an async Django view. It runs the request through `RunStreamView`, a
DRF APIView like every other endpoint (the same authentication classes, `RoleScopePermission` with
RUNS_READ, the organisation rate limit, the error envelope, the OpenAPI schema), in the request's
thread; the view looks the run up org-scoped (404 run_not_found) and answers a StreamingHttpResponse
whose body is an async generator. Under ASGI (uvicorn) the generator is consumed on the event loop and
holds no thread while it waits.

The generator polls RunEvent by (run, seq > last): one indexed query per poll, run on one thread that
all of the process's streams share (`POLLER`), after which that thread's connection is released the
way Django does it between requests (closed, or kept per CONN_MAX_AGE for the next poll). However many
streams are open, polling uses at most one database connection per process.
The request's own thread closes its connections before streaming starts, so an open stream holds no
database connection and no transaction between polls. A client disconnect cancels the generator.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.http import StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.utils.encoders import JSONEncoder
from rest_framework.views import APIView

from accounts.permissions import RUNS_READ
from config.api.schema import error_response
from config.errors import InvalidRequest
from runs import selectors
from runs.choices import RUN_TERMINAL_EVENTS
from runs.models import RunEvent

logger = logging.getLogger("baton.stream")

TERMINAL_EVENT_TYPES = frozenset(str(value) for value in RUN_TERMINAL_EVENTS.values())
BATCH = 500  # events per query; a fuller backlog is read in several queries without sleeping
RETRY_MS = 3000  # the reconnection delay suggested to EventSource clients (`retry:`)
QUERY_PARAMS = {"last_event_id"}

# Streams currently open in this process (observability and tests: a disconnect must bring it down).
ACTIVE_STREAMS = 0


def _json(value) -> str:
    # Compact, one line (JSON escapes newlines inside strings), DRF's encoder for dates and decimals.
    return json.dumps(value, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":"))


def sse_message(event: str, data, event_id: int | None = None) -> str:
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}")
    lines.append(f"event: {event}")
    lines.append(f"data: {_json(data)}")
    return "\n".join(lines) + "\n\n"


def _event_payload(row: RunEvent) -> dict:
    from runs.api.serializers import RunEventSerializer

    return RunEventSerializer(row).data


def parse_last_event_id(request) -> int | None:
    """The `Last-Event-ID` header (what EventSource sends on reconnect), else the `last_event_id` query
    parameter (for clients that cannot set headers on the first request); None when neither is given."""
    raw = request.META.get("HTTP_LAST_EVENT_ID")
    source = "Last-Event-ID"
    if raw is None or not raw.strip():
        raw = request.GET.get("last_event_id")
        source = "last_event_id"
    if raw is None:
        return None
    raw = raw.strip()
    if not raw.isascii() or not raw.isdigit() or len(raw) > 10:
        raise InvalidRequest(
            "invalid_request",
            f"{source} must be a non-negative integer (an event's sequence number).",
            details={"fields": {source: ["Must be a non-negative integer."]}},
        )
    return int(raw)


def release_connections(*, force: bool) -> None:
    """Give back this thread's database connections, never touching one inside a transaction: `force`
    closes them (a thread that will stay idle for the whole stream); otherwise Django's end-of-request
    rule applies (close when unusable or older than CONN_MAX_AGE, else keep for the next use)."""
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue
        if force:
            conn.close()
        else:
            conn.close_if_unusable_or_obsolete()


# One thread for every stream's polls: each poll is one short indexed query, so a single thread keeps
# up with thousands of streams, and the process never holds more than one connection for them.
POLLER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="baton-sse-poll")


async def on_poller(function, *args):
    return await asyncio.get_running_loop().run_in_executor(POLLER, functools.partial(function, *args))


def fetch_events(run_id: str, after: int, limit: int = BATCH) -> list[RunEvent]:
    """One indexed query (the unique (run, seq) index): the run's events after `after`, in order."""
    try:
        return list(RunEvent.objects.filter(run_id=run_id, seq__gt=after).order_by("seq")[:limit])
    finally:
        release_connections(force=False)


def last_terminal_event(run_id: str) -> RunEvent | None:
    try:
        return RunEvent.objects.filter(run_id=run_id, type__in=TERMINAL_EVENT_TYPES).order_by("-seq").first()
    finally:
        release_connections(force=False)


class EventStream:
    """The body of one stream. `snapshot` is the run object sent first (no Last-Event-ID), with
    `after` = the run's event_seq when it was read; otherwise `after` is the client's Last-Event-ID."""

    def __init__(self, run_id: str, *, after: int, snapshot: dict | None, finished: bool):
        self.run_id = run_id
        self.after = after
        self.snapshot = snapshot
        self.finished = finished
        self.poll = settings.BATON_SSE_POLL_MS / 1000
        self.keepalive = settings.BATON_SSE_KEEPALIVE_SECONDS
        self.max_seconds = settings.BATON_SSE_MAX_SECONDS

    async def __aiter__(self):
        global ACTIVE_STREAMS
        ACTIVE_STREAMS += 1
        try:
            # The request's thread (authentication, lookup, snapshot) stays idle while the stream is
            # open: close its connections now instead of when the response finishes.
            await sync_to_async(release_connections, thread_sensitive=True)(force=True)
            async for chunk in self._body():
                yield chunk
        finally:
            ACTIVE_STREAMS -= 1

    async def _body(self):
        started = last_write = time.monotonic()
        yield f"retry: {RETRY_MS}\n\n"
        if self.snapshot is not None:
            yield sse_message("snapshot", self.snapshot, self.after)
            if self.finished:
                # A finished run: the snapshot, then its terminal event at once, then the end.
                terminal = await on_poller(last_terminal_event, self.run_id)
                if terminal is not None:
                    yield sse_message(terminal.type, _event_payload(terminal), terminal.seq)
                return
        first = True
        while True:
            rows = await on_poller(fetch_events, self.run_id, self.after)
            if rows:
                for row in rows:
                    yield sse_message(row.type, _event_payload(row), row.seq)
                self.after = rows[-1].seq
                last_write = time.monotonic()
                if len(rows) < BATCH and rows[-1].type in TERMINAL_EVENT_TYPES:
                    return  # the run's terminal event, and nothing after it: the stream ends here
                if len(rows) == BATCH:
                    first = False
                    continue  # more backlog: read on without sleeping
            elif first and self.finished:
                # Resuming past the end of a finished run: repeat its terminal event so the client stops.
                terminal = await on_poller(last_terminal_event, self.run_id)
                if terminal is not None:
                    yield sse_message(terminal.type, _event_payload(terminal), terminal.seq)
                return
            first = False
            now = time.monotonic()
            if now - started >= self.max_seconds:
                yield ": stream time limit reached; reconnect with Last-Event-ID\n\n"
                return
            if now - last_write >= self.keepalive:
                yield ": keep-alive\n\n"
                last_write = now
            await asyncio.sleep(self.poll)


# parse_last_event_id: a non-negative integer of at most 10 digits.
_SEQ_SCHEMA = {"type": "integer", "minimum": 0, "maximum": 9_999_999_999}

STREAM_DESCRIPTION = """Server-Sent Events (`text/event-stream`). Without `Last-Event-ID` the first event is
`snapshot` (`data`: the run object, `id`: the run's last event sequence number), then every later event;
with `Last-Event-ID: N` (or `?last_event_id=N`) every event with sequence > N (0 = the whole history), no
snapshot. Each event: `id:` its sequence number, `event:` its type (`run_queued`, `step_started`, …),
`data:` `{"seq", "type", "step_id", "data", "created_at"}`. The stream ends right after the run's terminal
event (`run_completed`, `run_failed`, `run_cancelled`; at once when the run already finished). An idle
stream carries a `: keep-alive` comment every 15 s; after an hour the server closes it and the client
reconnects with `Last-Event-ID`, losing and repeating nothing. See docs/streaming.md."""


class RunStreamView(APIView):
    """Authentication, permission, rate limit and lookup of the stream, as in every other endpoint."""

    access = {"get": RUNS_READ}

    def perform_content_negotiation(self, request, force=False):
        # EventSource sends `Accept: text/event-stream`; errors are still the JSON envelope.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(
        operation_id="runs_stream",
        summary="Stream the run's events (Server-Sent Events)",
        description=STREAM_DESCRIPTION,
        parameters=[
            OpenApiParameter(
                "Last-Event-ID",
                _SEQ_SCHEMA,
                OpenApiParameter.HEADER,
                description="Resume after this event sequence number (what EventSource sends on reconnect).",
            ),
            OpenApiParameter(
                "last_event_id",
                _SEQ_SCHEMA,
                description="The same, for clients that cannot set headers; the header wins over it.",
            ),
        ],
        responses={
            (200, "text/event-stream"): OpenApiResponse(
                OpenApiTypes.STR, description="The event stream (see the description)."
            ),
            400: error_response("invalid_request: a malformed Last-Event-ID or an unknown query parameter"),
            404: error_response("run_not_found"),
        },
    )
    def get(self, request, run_id: str):
        unknown = sorted(set(request.query_params) - QUERY_PARAMS)
        if unknown:
            raise InvalidRequest(
                "invalid_request",
                f"'{unknown[0]}': Unknown parameter.",
                details={"fields": {name: ["Unknown parameter."] for name in unknown}},
            )
        after = parse_last_event_id(request)
        organization = request.auth.organization
        if after is None:
            from runs.api.serializers import run_detail_data

            run = selectors.run_get(organization=organization, run_id=run_id, for_detail=True)
            # The snapshot is read after event_seq, so it is at least as new as that sequence number; events
            # after it may already be reflected in it (apply them idempotently).
            snapshot = run_detail_data(run)
            stream = EventStream(run.pk, after=run.event_seq, snapshot=snapshot, finished=run.is_terminal)
        else:
            run = selectors.run_get(organization=organization, run_id=run_id)
            stream = EventStream(run.pk, after=after, snapshot=None, finished=run.is_terminal)
        response = StreamingHttpResponse(stream, content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # nginx: pass events through as they come
        return response


_drf_view = RunStreamView.as_view()


@csrf_exempt
async def run_stream(request, run_id: str):
    """The async view the URL maps to: the DRF part runs in the request's thread, the body on the loop."""
    return await sync_to_async(_drf_view)(request, run_id=run_id)


# drf-spectacular and the URL-walking tests read the view class from the callback, as with as_view().
run_stream.cls = RunStreamView
run_stream.initkwargs = {}
