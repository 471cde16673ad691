"""Is this a JSON schema? A structural check of the keywords a schema for structured output may use.

The engine compiles a ``json_schema`` into a grammar; a value that is not a
schema (``{"type": "banana"}``, ``properties`` that is a list) would fail
there, as an engine error. Checked here first, it is the client's mistake,
named: the first problem found, with its path inside the schema.
"""

from __future__ import annotations

from typing import Any

TYPES = frozenset({"string", "number", "integer", "boolean", "object", "array", "null"})
SCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
SCHEMA_LISTS = ("anyOf", "oneOf", "allOf", "prefixItems")
SCHEMAS = ("items", "additionalProperties", "not", "contains", "if", "then", "else", "propertyNames",
           "unevaluatedProperties", "unevaluatedItems", "additionalItems")
COUNTS = ("minLength", "maxLength", "minItems", "maxItems", "minProperties", "maxProperties", "minContains",
          "maxContains")
NUMBERS = ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf")
MAX_DEPTH = 64


def schema_problem(schema: Any, path: str = "schema", depth: int = 0) -> str | None:
    """What makes ``schema`` not a JSON schema (``"schema.properties.age.type: 'years' is not a type"``), or None."""
    if isinstance(schema, bool):
        return None
    if not isinstance(schema, dict):
        return f"{path}: a schema is an object (or true / false), not {type(schema).__name__}"
    if depth > MAX_DEPTH:
        return f"{path}: nested more than {MAX_DEPTH} levels deep"
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not kinds or not all(isinstance(k, str) and k in TYPES for k in kinds):
            return f"{path}.type: {kind!r} is not a JSON type (one of {', '.join(sorted(TYPES))})"
    for name in SCHEMA_MAPS:
        if name in schema:
            value = schema[name]
            if not isinstance(value, dict):
                return f"{path}.{name}: must be an object mapping names to schemas"
            for key, sub in value.items():
                problem = schema_problem(sub, f"{path}.{name}.{key}", depth + 1)
                if problem:
                    return problem
    for name in SCHEMA_LISTS:
        if name in schema:
            value = schema[name]
            if not isinstance(value, list) or not value:
                return f"{path}.{name}: must be a non-empty array of schemas"
            for index, sub in enumerate(value):
                problem = schema_problem(sub, f"{path}.{name}[{index}]", depth + 1)
                if problem:
                    return problem
    for name in SCHEMAS:
        if name in schema:
            problem = schema_problem(schema[name], f"{path}.{name}", depth + 1)
            if problem:
                return problem
    required = schema.get("required")
    if required is not None and not (isinstance(required, list) and all(isinstance(r, str) for r in required)):
        return f"{path}.required: must be an array of property names"
    enum = schema.get("enum")
    if enum is not None and not (isinstance(enum, list) and enum):
        return f"{path}.enum: must be a non-empty array"
    for name in COUNTS:
        value = schema.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            return f"{path}.{name}: must be a non-negative integer"
    for name in NUMBERS:
        value = schema.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            return f"{path}.{name}: must be a number"
    for name in ("pattern", "format", "$ref", "title", "description"):
        value = schema.get(name)
        if value is not None and not isinstance(value, str):
            return f"{path}.{name}: must be a string"
    return None
