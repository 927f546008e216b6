"""The audit log over HTTP: the filtered log (cursor pages), chain verification and JSON Lines export."""

from asgiref.sync import sync_to_async
from django.core.handlers.asgi import ASGIRequest
from django.http import StreamingHttpResponse
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.api import schema
from audit.api.cursor import encode_cursor
from audit.api.serializers import AuditLogQuerySerializer, AuditVerifyQuerySerializer
from audit.checkpoints import audit_checkpoint_create, public_keys_document
from audit.services import event_as_dict
from config.api.permissions import PUBLIC, Access
from config.api.viewsets import OrganizationViewSet, Resource

EXPORT_CHUNK = 2000
# accounts.permissions.AUDIT_READ, spelled out: audit sits below accounts (tests/test_layers.py), and
# tests/test_permissions_matrix.py checks that the two agree.
AUDIT_READ = Access(role="admin", scope="audit:read")
_FILTERS = ("since", "until", "actor", "event", "target", "target_type")


@schema.AUDIT
class AuditViewSet(OrganizationViewSet):
    """The caller's organisation's audit chain (admin role or the `audit:read` scope)."""

    resource = Resource("audit_event", list=selectors.audit_events)
    access = {"list": AUDIT_READ, "verify": AUDIT_READ, "export": AUDIT_READ}
    pagination_class = None  # keyset pages by cursor (audit/api/cursor.py)

    def list(self, request):
        params = self.validated_input(AuditLogQuerySerializer, request.query_params)
        filters = selectors.LogFilters(**{name: params.get(name) or None for name in _FILTERS})
        limit = params["limit"]
        rows = selectors.audit_log_page(
            organization=self.organization,
            filters=filters,
            before_seq=params.get("cursor") or None,
            limit=limit,
        )
        page = rows[:limit]
        next_cursor = encode_cursor(page[-1].seq) if len(rows) > limit else None
        return Response({"events": [event_as_dict(event) for event in page], "next_cursor": next_cursor})

    @action(detail=False, methods=["get"])
    def verify(self, request):
        params = self.validated_input(AuditVerifyQuerySerializer, request.query_params)
        return Response(
            selectors.audit_chain_verify(organization=self.organization, full=params["full"]).as_dict()
        )

    @action(detail=False, methods=["get"])
    def export(self, request):
        organization = self.organization
        audit_checkpoint_create(organization=organization)
        checkpoints = selectors.audit_checkpoints(organization=organization)
        head = selectors.audit_head(organization=organization)
        if isinstance(request._request, ASGIRequest):
            content = _export_async(organization.pk, head["seq"], checkpoints)
        else:
            content = _export_sync(organization.pk, head["seq"], checkpoints)
        response = StreamingHttpResponse(content, content_type="application/x-ndjson")
        response["Content-Disposition"] = (
            f'attachment; filename="audit-{organization.pk}-{head["seq"]}.jsonl"'
        )
        response["X-Audit-Head-Seq"] = str(head["seq"])
        response["X-Audit-Head-Hash"] = head["hash"]
        response["Cache-Control"] = "no-store"
        return response


class _CheckpointLines:
    """Each checkpoint's line after the event it states; those whose event the export did not meet, last."""

    def __init__(self, checkpoints: list[dict]):
        self.pending: dict[int, list[bytes]] = {}
        for checkpoint in sorted(checkpoints, key=lambda cp: cp["seq"]):
            self.pending.setdefault(checkpoint["seq"], []).append(selectors.event_line(checkpoint))

    def after(self, seq: int) -> bytes:
        return b"".join(self.pending.pop(seq, ()))

    def rest(self) -> bytes:
        return b"".join(b"".join(lines) for _, lines in sorted(self.pending.items()))


def _export_lines(
    org_id: str, after_seq: int, upto_seq: int, cps: _CheckpointLines
) -> tuple[bytes, int, bool]:
    """One chunk of JSON Lines; returns (bytes, last seq, finished)."""
    rows = selectors.audit_chain_chunk(organization=org_id, after_seq=after_seq, upto_seq=upto_seq,
                                       size=EXPORT_CHUNK)  # fmt: skip
    if not rows:
        return cps.rest(), after_seq, True
    line, after = selectors.export_event_line, cps.after
    lines = b"".join(
        line(body, prev_hash, hash_) + (after(body["seq"]) if cps.pending else b"")
        for body, prev_hash, hash_ in selectors.row_links(rows)
    )
    finished = len(rows) < EXPORT_CHUNK
    return lines + (cps.rest() if finished else b""), rows[-1][2], finished


def _export_sync(org_id: str, upto_seq: int, checkpoints: list[dict] = ()):
    cps = _CheckpointLines(checkpoints)
    after, finished = 0, upto_seq == 0
    while not finished:
        lines, after, finished = _export_lines(org_id, after, upto_seq, cps)
        if lines:
            yield lines
    if upto_seq == 0 and cps.pending:
        yield cps.rest()


async def _export_async(org_id: str, upto_seq: int, checkpoints: list[dict] = ()):
    # Under ASGI a sync iterator would be read whole into memory first; each chunk's query runs in
    # the thread Django keeps for this request's database work instead.
    cps = _CheckpointLines(checkpoints)
    fetch = sync_to_async(_export_lines, thread_sensitive=True)
    after, finished = 0, upto_seq == 0
    while not finished:
        lines, after, finished = await fetch(org_id, after, upto_seq, cps)
        if lines:
            yield lines
    if upto_seq == 0 and cps.pending:
        yield cps.rest()


class AuditPublicKeysView(APIView):
    """The public halves of the keys that sign audit checkpoints, for anyone verifying an export."""

    authentication_classes: list = []
    access = {"get": PUBLIC}

    @schema.PUBLIC_KEYS
    def get(self, request):
        return Response(public_keys_document())
