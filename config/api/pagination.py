"""limit/offset pagination with `total`, strict about out-of-range values (400, never clamped).

`total` is exact up to EXACT_TOTAL_LIMIT matches (API.md "Pagination"); beyond that, on PostgreSQL, it is
the planner's estimate of the count (never below EXACT_TOTAL_LIMIT + 1) and the page carries
`"total_estimated": true`, so a list of millions of runs does not count them all on every page.
Elsewhere (SQLite, the embedded setup) the count stays exact."""

import json
from collections import OrderedDict

from django.db import connections
from django.db.models import QuerySet, Value
from rest_framework import pagination
from rest_framework.response import Response

from config.api.parsing import parse_bounded_int

EXACT_TOTAL_LIMIT = 10_000


def bounded_count(queryset) -> tuple[int, bool]:
    """(total, estimated): the exact count up to EXACT_TOTAL_LIMIT, else PostgreSQL's estimate."""
    if not isinstance(queryset, QuerySet):
        return len(queryset), False
    connection = connections[queryset.db]
    if connection.vendor == "postgresql":
        # Counted rows select no column (PostgreSQL allows an empty select list): the count reads only the
        # index its filter uses (an index-only scan), where selecting the key would fetch each row.
        keys = queryset.order_by().values(one=Value(1))
    else:
        keys = queryset.order_by().values("pk")  # SQLite refuses an empty select list
    counted = keys[: EXACT_TOTAL_LIMIT + 1].count()
    if counted <= EXACT_TOTAL_LIMIT:
        return counted, False
    if connection.vendor != "postgresql":
        return keys.count(), False
    sql, params = keys.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        plan = cursor.fetchone()[0]
    plan = json.loads(plan) if isinstance(plan, str) else plan
    return max(EXACT_TOTAL_LIMIT + 1, int(plan[0]["Plan"]["Plan Rows"])), True


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
        self.count, self.estimated = bounded_count(queryset)
        self.request = request
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data):
        body = OrderedDict(
            [(self.results_key, data), ("total", self.count), ("limit", self.limit), ("offset", self.offset)]
        )
        if getattr(self, "estimated", False):
            body["total_estimated"] = True
        return Response(body)

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
                "total_estimated": {
                    "type": "boolean",
                    "enum": [True],
                    "description": f"Present (true) when `total` is the database's estimate: beyond "
                    f"{EXACT_TOTAL_LIMIT:,} matches.",
                },
            },
        }

    def get_schema_operation_parameters(self, view):
        max_limit = getattr(view, "max_limit", self.max_limit)
        limit = {"type": "integer", "minimum": 1, "maximum": max_limit, "default": self.default_limit}
        offset = {"type": "integer", "minimum": 0, "maximum": self.max_offset, "default": 0}
        return [
            # Empty (`?limit=`) is the default (config.api.parsing.parse_bounded_int).
            {"name": "limit", "required": False, "in": "query", "schema": limit, "allowEmptyValue": True,
             "description": f"Page size: 1 to {max_limit} (default {self.default_limit}), else 400."},
            {"name": "offset", "required": False, "in": "query", "schema": offset, "allowEmptyValue": True,
             "description": "Number of items to skip."},
        ]  # fmt: skip
