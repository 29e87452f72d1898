"""The check a tool's argument schema gets before it goes to a model or a provider.

Both APIs describe a tool's arguments with a JSON Schema whose root is an object.  A schema that
names a type JSON Schema does not have (``{"type": "banana"}``) would reach the local grammar
builder or the provider, which fail on it in their own ways; it is refused at the edge instead,
with the path of the bad keyword.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
"""The type names JSON Schema defines."""

# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE = ("items", "additionalProperties", "additionalItems", "not", "if", "then", "else")
_ONE_MORE = ("contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_MAP = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")


def check_tool_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Return ``schema`` if it is a usable argument schema.

    Args:
        schema: A tool's ``parameters`` (OpenAI) or ``input_schema`` (Anthropic).

    Returns:
        The schema, unchanged.

    Raises:
        ValueError: The root's ``type`` is not ``object``, or a ``type`` anywhere names no JSON
            Schema type; the message names the keyword's path.
    """
    root = schema.get("type", "object")
    if root != "object":
        raise ValueError("the schema of a tool's arguments must be of type 'object'")
    for path, kind in _types(schema, "#"):
        names = kind if isinstance(kind, list) else [kind]
        bad = [name for name in names if not isinstance(name, str) or name not in TYPES]
        if bad or not names:
            raise ValueError(
                f"{path}/type is {kind!r}; JSON Schema types are {', '.join(sorted(TYPES))}"
            )
    return schema


def _types(schema: object, path: str) -> Iterator[tuple[str, object]]:
    """Each ``type`` keyword of a schema and its subschemas, with its JSON pointer."""
    if not isinstance(schema, dict):
        return
    if "type" in schema:
        yield path, schema["type"]
    for key in (*_ONE, *_ONE_MORE):
        value = schema.get(key)
        if isinstance(value, list):  # items as a list: draft 4's tuple form
            for index, item in enumerate(value):
                yield from _types(item, f"{path}/{key}/{index}")
        else:
            yield from _types(value, f"{path}/{key}")
    for key in _LIST:
        value = schema.get(key)
        if isinstance(value, list):
            for index, item in enumerate(value):
                yield from _types(item, f"{path}/{key}/{index}")
    for key in _MAP:
        value = schema.get(key)
        if isinstance(value, dict):
            for name, item in value.items():
                yield from _types(item, f"{path}/{key}/{name}")
