"""OpenAPI generation (drf-spectacular): every operation documents the error envelope for the errors
it can answer, the request-id and rate-limit headers, Idempotency-Key where the handler is
@idempotent, and no security for PUBLIC endpoints.

Views add operation-specific errors with
`@extend_schema(responses={200: Out, 409: error_response("The run is not cancellable.")})`;
the conventional ones (below) are added to whatever a view declares."""

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.plumbing import get_doc
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers

from config.api.permissions import PUBLIC, declared_access
from config.api.serializers import StrictSerializer


class ErrorBodySerializer(serializers.Serializer):
    code = serializers.CharField(help_text="Machine-readable code, e.g. `run_not_found`.")
    message = serializers.CharField(help_text="A sentence for people; do not parse it.")
    status = serializers.IntegerField(help_text="The HTTP status, repeated.")
    request_id = serializers.CharField(help_text="The request's id (also the X-Request-Id header).")
    details = serializers.DictField(
        required=False,
        help_text="Optional structured details; field errors are in `details.fields` ({field: [messages]}).",
    )

    class Meta:
        ref_name = "ErrorBody"


class ErrorSerializer(serializers.Serializer):
    """The one envelope of every 4xx/5xx response."""

    error = ErrorBodySerializer()

    class Meta:
        ref_name = "Error"


def error_response(description: str) -> OpenApiResponse:
    """An error response documented with the Error envelope, for @extend_schema(responses=...)."""
    return OpenApiResponse(ErrorSerializer, description=description)


ERROR_DESCRIPTIONS = {
    400: "`invalid_request`: malformed JSON, invalid or missing fields (`details.fields`) or query values.",
    401: "`unauthorized`: missing, malformed, unknown, expired or revoked credentials.",
    403: "`forbidden` (role), `insufficient_scope` (API key scope) or `two_factor_required` (a person's "
    "session or JWT while the organisation requires two-factor sign-in and they have not turned it on).",
    404: "`not_found` or `<type>_not_found`: absent, or in another organisation.",
    409: "`conflict` or a specific state conflict; `idempotency_request_in_progress`.",
    413: "`payload_too_large`: the body is over the size limit.",
    415: "`unsupported_media_type`: send `application/json`.",
    422: "`idempotency_key_reused` (same Idempotency-Key, different request) or a validation failure.",
    429: "`rate_limited`: the organisation's limit is used up; see `Retry-After`.",
    500: "`internal_error`: unexpected; quote the request id.",
}

_RATE_HEADERS = [
    ("X-RateLimit-Limit", OpenApiTypes.INT, "Requests allowed in the most restrictive window."),
    ("X-RateLimit-Remaining", OpenApiTypes.INT, "Requests left in that window."),
    ("X-RateLimit-Reset", OpenApiTypes.INT, "Unix time (seconds) when that window resets."),
    ("RateLimit", OpenApiTypes.STR, "IETF draft: `limit=60, remaining=59, reset=41` (reset in seconds)."),
    ("RateLimit-Policy", OpenApiTypes.STR, "IETF draft: every window, e.g. `60;w=60, 5000;w=86400`."),
]


# config.api.idempotency._valid_key: 1 to 255 printable ASCII characters.
# A boolean query parameter as config.api.parsing.strict_bool reads it (any case, blanks around it; empty or
# blank: the default).
BOOLEAN_QUERY_SCHEMA = {
    "type": "string",
    "pattern": r"^\s*([Tt][Rr][Uu][Ee]|[Ff][Aa][Ll][Ss][Ee]|[Yy][Ee][Ss]|[Nn][Oo]|1|0)?\s*$",
    "description": "true/false (also 1/0, yes/no, any case).",
}
# A workflow version as workflows.selectors.parse_version_spec reads it (empty or blank: the default).
VERSION_SPEC_SCHEMA = {
    "type": "string",
    "pattern": r"^\s*(latest|published|0*[1-9][0-9]*)?\s*$",
}
IDEMPOTENCY_KEY_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[ -~]{1,255}$"}

# Rate-limit headers are documented on success responses and 429 (they are on every authenticated
# response; repeating them under every error code would only bloat the document).
_RATE_HEADER_CODES = [200, 201, 202, 204, 429]


class AutoSchema(SpectacularAutoSchema):
    def _is_public(self) -> bool:
        return declared_access(self.view, self.method) is PUBLIC or not self.view.get_authenticators()

    def _is_idempotent(self) -> bool:
        action = getattr(self.view, "action", None)
        handler = getattr(self.view, action, None) if action else None
        handler = handler or getattr(self.view, self.method.lower(), None)
        return bool(getattr(handler, "idempotent", False))

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        # A StrictSerializer refuses fields it does not know (400): say so, so clients and fuzzers
        # do not send extras the server will refuse.
        kind = serializer if isinstance(serializer, type) else type(serializer)
        if direction == "request" and issubclass(kind, StrictSerializer):
            schema["additionalProperties"] = False
        if schema.get("description") == get_doc(StrictSerializer):
            del schema["description"]  # the base class's docstring is no serializer's description
        return schema

    def _insert_field_validators(self, field, schema):
        super()._insert_field_validators(field, schema)
        # DRF refuses an empty list when allow_empty=False; drf-spectacular does not say so.
        refuses_empty = isinstance(field, serializers.ListField) and not field.allow_empty
        if refuses_empty and schema.get("type") == "array":
            schema["minItems"] = max(schema.get("minItems", 0), 1)

    def _get_request_for_media_type(self, serializer, direction="request"):
        # drf-spectacular reads a PATCH body as DRF's partial=True would (every field optional); our views
        # read a StrictSerializer as declared (config.api.serializers.validated, never partial), so its
        # required fields are required on PATCH as well.
        kind = serializer if isinstance(serializer, type) else type(serializer)
        if self.method != "PATCH" or not issubclass(kind, StrictSerializer):
            return super()._get_request_for_media_type(serializer, direction)
        self.method = "POST"
        try:
            return super()._get_request_for_media_type(serializer, direction)
        finally:
            self.method = "PATCH"

    def get_auth(self):
        if self._is_public():
            return []
        return super().get_auth()

    def _get_paginator(self):
        paginator = super()._get_paginator()
        if paginator is not None:
            paginator.results_key = getattr(self.view, "results_key", "results")
        return paginator

    def error_codes(self) -> list[int]:
        """The conventional errors this operation can answer."""
        codes = {500}
        if not self._is_public():
            codes |= {401, 403, 429}
        if self.method in ("POST", "PUT", "PATCH"):
            codes |= {400, 413, 415}
        if self.method == "GET" and self._is_list_view():
            codes.add(400)
        if "{" in self.path:
            codes.add(404)
        if self._is_idempotent():
            codes |= {400, 409, 422}
        return sorted(codes)

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        for code, response in responses.items():
            # A view may document an error by description only: give it the envelope's schema.
            if code.isdigit() and int(code) >= 400 and "content" not in response:
                response["content"] = self._get_response_for_code(
                    error_response(response.get("description") or ""), code, direction=direction
                )["content"]
        for code in self.error_codes():
            if str(code) not in responses:
                responses[str(code)] = self._get_response_for_code(
                    error_response(ERROR_DESCRIPTIONS[code]), str(code), direction=direction
                )
        return responses

    def get_override_parameters(self):
        params = [
            *super().get_override_parameters(),
            OpenApiParameter(
                "X-Request-Id",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                description="Optional client request id (1-128 of `A-Za-z0-9._:-`), echoed in the response.",
            ),
            OpenApiParameter(
                "X-Request-Id",
                OpenApiTypes.STR,
                OpenApiParameter.HEADER,
                response=True,
                description="The request's id (`req_…` unless the client sent a well-formed one).",
            ),
        ]
        if not self._is_public():
            params += [
                OpenApiParameter(
                    name, kind, OpenApiParameter.HEADER, response=_RATE_HEADER_CODES, description=text
                )
                for name, kind, text in _RATE_HEADERS
            ]
            params.append(
                OpenApiParameter(
                    "Retry-After",
                    OpenApiTypes.INT,
                    OpenApiParameter.HEADER,
                    response=[429],
                    description="Seconds to wait before retrying.",
                )
            )
        if self._is_idempotent():
            params += [
                OpenApiParameter(
                    "Idempotency-Key",
                    IDEMPOTENCY_KEY_SCHEMA,
                    OpenApiParameter.HEADER,
                    description="Up to 255 printable ASCII characters. The same key and body within 24 h "
                    "replays the first response instead of creating again.",
                ),
                OpenApiParameter(
                    "Idempotent-Replayed",
                    OpenApiTypes.STR,
                    OpenApiParameter.HEADER,
                    response=[200, 201, 202],
                    enum=["true"],
                    description="`true` when this response replays an earlier request with the same key.",
                ),
            ]
        return params


def resource_schema(
    output,
    *,
    verbs=("list", "create", "retrieve", "partial_update", "destroy"),
    create=None,
    update=None,
    created=None,
    summary: dict | None = None,
    description: dict | None = None,
    errors: dict | None = None,
):
    """The extend_schema_view of an OrganizationViewSet's standard verbs: `output` (the serializer
    responses show; `created` for the 201 when it differs), the `create` and `update` input
    serializers, and per verb its `summary`, `description` and `errors` ({409: "code: when"})."""
    summary, description, errors = summary or {}, description or {}, errors or {}
    shapes = {
        "list": (None, {200: output(many=True)}),
        "create": (create, {201: created or output}),
        "retrieve": (None, {200: output}),
        "partial_update": (update, {200: output}),
        "destroy": (None, {204: None}),
    }
    operations = {}
    for verb in verbs:
        request, responses = shapes[verb]
        responses = responses | {code: error_response(text) for code, text in errors.get(verb, {}).items()}
        options = {"request": request} if request is not None else {}
        operations[verb] = extend_schema(
            summary=summary.get(verb), description=description.get(verb), responses=responses, **options
        )
    return extend_schema_view(**operations)
