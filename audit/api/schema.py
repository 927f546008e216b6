"""The OpenAPI description of the audit endpoints, apart from the views."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view

from audit.api.serializers import (
    AuditLogPageSerializer,
    AuditLogQuerySerializer,
    AuditPublicKeysSerializer,
    AuditVerifyQuerySerializer,
    AuditVerifySerializer,
)

_ERRORS = {
    400: OpenApiResponse(description="invalid_request"),
    401: OpenApiResponse(description="unauthorized"),
    403: OpenApiResponse(description="forbidden / insufficient_scope"),
}

AUDIT = extend_schema_view(
    list=extend_schema(
        operation_id="audit_logs_list",
        parameters=[AuditLogQuerySerializer],
        responses={200: AuditLogPageSerializer, **_ERRORS},
        description="Events newest first (by `seq`, descending). `next_cursor` is null on the last page; "
        "pages stay stable while new events are appended (they appear on a fresh first page).",
    ),
    verify=extend_schema(
        operation_id="audit_verify",
        parameters=[AuditVerifyQuerySerializer],
        responses={200: AuditVerifySerializer, **_ERRORS},
        description="Checks the signed checkpoints (linked, none deleted, signed by a published key) and the "
        "chain's agreement with every one, then walks what was appended since the last checkpoint the chain "
        "agrees with (`full=true`: the whole chain), and names the first bad event (edited, missing, out of "
        "order, a cut tail, or a recomputed chain). `head` is the last link verified; `checkpoint` the last "
        "checkpoint verified.",
    ),
    export=extend_schema(
        operation_id="audit_export",
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **_ERRORS},
        description="The chain as JSON Lines, one event per line in seq order, up to the head recorded when "
        "the export began (sent as `X-Audit-Head-Seq` / `X-Audit-Head-Hash`), each signed checkpoint as a "
        'line `{"type": "checkpoint", ...}` after the event it states (the export signs one of the head '
        "first). Check it offline with `manage.py audit_verify FILE --public-key KEY`.",
    ),
)

PUBLIC_KEYS = extend_schema(
    operation_id="audit_public_keys", responses={200: AuditPublicKeysSerializer}, auth=[]
)
