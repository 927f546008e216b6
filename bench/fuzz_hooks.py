"""schemathesis hooks of `bench/fuzz.py` (loaded through SCHEMATHESIS_HOOKS).

A correct client sends a fresh Idempotency-Key with each new request: the fuzzer, left alone, sends
the same few well-formed keys ("0", "00", …) with different bodies, which the API rightly answers
422 idempotency_key_reused — a contract rule tests/config/test_idempotency.py covers, not a finding.
Well-formed generated keys are therefore made unique; malformed ones are sent as generated (they must
be refused with 400).

The fuzzer reads ids from responses and uses them in paths: left alone, it revokes the API key it
authenticates with (DELETE /api-keys/{id}) or removes the organisation's owner, and every later
request is a 401. Those two ids (FUZZ_KEY_ID, FUZZ_OWNER_ID, set by bench/fuzz.py) are swapped for an
unknown id in writes, which the API answers 404 like any other unknown id."""

import os
import re
import uuid

import schemathesis

_WELL_FORMED = re.compile(r"[ -~]{1,255}")


_PROTECTED = {"/api/v1/api-keys/{id}": "FUZZ_KEY_ID", "/api/v1/members/{user_id}": "FUZZ_OWNER_ID"}


def _property_names(node) -> None:
    """OpenAPI 3.0 has no `propertyNames`; the schema states it as `x-propertyNames` (runs/api/schema.py)."""
    if isinstance(node, dict):
        if "x-propertyNames" in node:
            node["propertyNames"] = node.pop("x-propertyNames")
        for value in node.values():
            _property_names(value)
    elif isinstance(node, list):
        for value in node:
            _property_names(value)


@schemathesis.hook
def before_load_schema(context, raw_schema):
    _property_names(raw_schema)


@schemathesis.hook
def before_call(context, case, kwargs):
    variable = _PROTECTED.get(case.path)
    if variable and case.method.upper() != "GET" and case.path_parameters:
        for name, value in case.path_parameters.items():
            if str(value) == os.environ.get(variable):
                case.path_parameters[name] = "fuzz_protected_unknown"
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            value = headers[name]
            if isinstance(value, str) and _WELL_FORMED.fullmatch(value):
                headers[name] = f"fuzz-{uuid.uuid4().hex}"


_METADATA_NAME = re.compile(r"^metadata\.[A-Za-z0-9_.:\-]{1,64}$")


@schemathesis.hook
def filter_query(context, query):
    """Keep the `metadata.<key>` family to its names. Its parameter is a free-form object (style form,
    explode) whose `propertyNames` pattern schemathesis' fuzzing phase does not apply: it sends `?t=…&false=`
    as members of it and expects such a "schema-valid" request to be accepted, where the API rightly answers
    400 unknown filter. Generated queries with such names are dropped (both modes: the refusal of unknown
    filters is tested in tests/runs); an empty name (`?=x`) names no parameter on any operation."""
    if not isinstance(query, dict):
        return True
    operation = getattr(context, "operation", None)
    declared = {parameter.name for parameter in operation.query} if operation is not None else set()
    if "metadata" not in declared:
        return "" not in query
    return all(name in declared or _METADATA_NAME.match(name) for name in query)
