"""Workflow definition validation. Interface (being filled in by the definition helper):

validate_definition(definition) -> list[str]   every problem as a plain sentence; [] when valid
input_schema(definition) -> dict               the definition's `inputs` JSON Schema (or {"type": "object"})
"""


def validate_definition(definition) -> list[str]:
    if not isinstance(definition, dict):
        return ["The definition must be a JSON object."]
    return []


def input_schema(definition: dict) -> dict:
    return definition.get("inputs") or {"type": "object", "properties": {}}
