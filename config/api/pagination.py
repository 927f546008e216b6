"""limit/offset pagination with `total`, strict about out-of-range values (400, never clamped)."""

from collections import OrderedDict

from rest_framework import pagination
from rest_framework.response import Response

from config.api.parsing import parse_bounded_int


class LimitOffsetPagination(pagination.LimitOffsetPagination):
    """Views set `results_key` (e.g. "workflows") and may set `max_limit` (default 200)."""

    default_limit = 20
    max_limit = 200
    max_offset = 1_000_000

    def paginate_queryset(self, queryset, request, view=None):
        self.results_key = getattr(view, "results_key", "results")
        max_limit = getattr(view, "max_limit", self.max_limit)
        self.limit = parse_bounded_int(
            request.query_params, "limit", self.default_limit, minimum=1, maximum=max_limit
        )
        self.offset = parse_bounded_int(request.query_params, "offset", 0, minimum=0, maximum=self.max_offset)
        self.count = self.get_count(queryset)
        self.request = request
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data):
        return Response(
            OrderedDict(
                [
                    (self.results_key, data),
                    ("total", self.count),
                    ("limit", self.limit),
                    ("offset", self.offset),
                ]
            )
        )

    def get_paginated_response_schema(self, schema):
        # The schema generator sets `results_key` from the view (config.api.schema.AutoSchema).
        results_key = getattr(self, "results_key", "results")
        return {
            "type": "object",
            "required": [results_key, "total", "limit", "offset"],
            "properties": {
                results_key: schema,
                "total": {"type": "integer", "example": 42},
                "limit": {"type": "integer", "example": 20},
                "offset": {"type": "integer", "example": 0},
            },
        }

    def get_schema_operation_parameters(self, view):
        max_limit = getattr(view, "max_limit", self.max_limit)
        limit = {"type": "integer", "minimum": 1, "maximum": max_limit, "default": self.default_limit}
        offset = {"type": "integer", "minimum": 0, "maximum": self.max_offset, "default": 0}
        return [
            {"name": "limit", "required": False, "in": "query", "schema": limit,
             "description": f"Page size: 1 to {max_limit} (default {self.default_limit}), else 400."},
            {"name": "offset", "required": False, "in": "query", "schema": offset,
             "description": "Number of items to skip."},
        ]  # fmt: skip
