"""The checks both APIs' request fields share: tool argument schemas, JSON values passed on to a
provider, and the number of stop sequences.

Both APIs describe a tool's arguments with a JSON Schema whose root is an object.  A schema that
names a type JSON Schema does not have (``{"type": "banana"}``) would reach the local grammar
builder or the provider, which fail on it in their own ways; it is refused at the edge instead,
with the path of the bad keyword.

The JSON values a request carries on to a provider (tool schemas and arguments, a response
format's schema) must also be writable by the encoder on the way out, which holds integers to
64 bits: a larger one is refused at the edge too (:func:`fit_integers`).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict

TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
"""The type names JSON Schema defines."""

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
"""The integers a request may carry: what every encoder between hybrid and a provider writes."""

MAX_STOP_SEQUENCES = 16
"""The most stop sequences a request may set (OpenAI's ``stop``, Anthropic's ``stop_sequences``)."""


class OpenModel(BaseModel):
    """A request object that tolerates unknown fields and is strict about known ones."""

    model_config = ConfigDict(extra="allow", strict=True)


# Keywords whose value is one schema, a list of schemas, or a map of names to schemas.
_ONE = ("items", "additionalProperties", "additionalItems", "not", "if", "then", "else")
_ONE_MORE = ("contains", "propertyNames", "unevaluatedItems", "unevaluatedProperties")
_LIST = ("anyOf", "oneOf", "allOf", "prefixItems")
_Value = TypeVar("_Value")
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
    return fit_integers(schema)


def fit_integers(value: _Value) -> _Value:
    """Return ``value`` if every integer in it, at any depth, fits in 64 bits.

    Raises:
        ValueError: One does not; the message names its JSON pointer.
    """
    stack: list[tuple[str, object]] = [("#", value)]
    while stack:
        path, item = stack.pop()
        if isinstance(item, dict):
            stack.extend((f"{path}/{key}", child) for key, child in item.items())
        elif isinstance(item, list):
            stack.extend((f"{path}/{index}", child) for index, child in enumerate(item))
        elif isinstance(item, int) and not INT64_MIN <= item <= INT64_MAX:
            raise ValueError(f"{path} is an integer beyond 64 bits; no provider takes it")
    return value


# A JSON object passed on to a provider as it came.
JsonObject = Annotated[dict[str, Any], AfterValidator(fit_integers)]


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
