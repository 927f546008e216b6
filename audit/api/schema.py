"""The OpenAPI description of the audit endpoints, apart from the views."""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view

from audit.api.serializers import AuditLogPageSerializer, AuditLogQuerySerializer, AuditVerifySerializer

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
        responses={200: AuditVerifySerializer, **_ERRORS},
        description="Walks the chain up to the recorded head and names the first bad event "
        "(edited, missing, out of order, or a cut tail). `head` is the last link verified.",
    ),
    export=extend_schema(
        operation_id="audit_export",
        responses={(200, "application/x-ndjson"): OpenApiTypes.STR, **_ERRORS},
        description="The chain as JSON Lines, one event per line in seq order, up to the head recorded when "
        "the export began (sent as `X-Audit-Head-Seq` / `X-Audit-Head-Hash`). "
        "Check it offline with `manage.py audit_verify FILE`.",
    ),
)
