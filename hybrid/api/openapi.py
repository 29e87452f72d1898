"""``/openapi.json`` as hybrid answers: errors in the API's own shape, never FastAPI's 422.

FastAPI documents a ``422 Validation Error`` with its own body for every route that takes a
body; hybrid answers an invalid request with a 400 in OpenAI's shape (Anthropic's on
``/v1/messages``), see :mod:`hybrid.api.errors`.  The document is rewritten to match.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from hybrid.api.errors import shape_for_path

_NULLABLE_STRING = {"anyOf": [{"type": "string"}, {"type": "null"}]}
_SCHEMAS: dict[str, dict[str, Any]] = {
    "OpenAIError": {
        "title": "OpenAIError",
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message", "type", "param", "code"],
                "properties": {
                    "message": {"type": "string", "description": "What happened, what to do."},
                    "type": {"type": "string", "examples": ["invalid_request_error"]},
                    "param": {**_NULLABLE_STRING, "description": "The field at fault."},
                    "code": {**_NULLABLE_STRING, "examples": ["invalid_value"]},
                },
            }
        },
    },
    "AnthropicError": {
        "title": "AnthropicError",
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {
                    "type": {"type": "string", "examples": ["invalid_request_error"]},
                    "message": {"type": "string", "description": "What happened, what to do."},
                },
            },
        },
    },
}
_BODY_ERRORS = {
    "400": "Invalid request: the body is not JSON, a field is missing or of the wrong type, or "
    "a value is out of range or cannot be honoured.",
    "415": "The body was not sent as JSON (Content-Type: application/json).",
}


def document_errors(app: FastAPI) -> None:
    """Make ``app`` serve an OpenAPI document whose error responses are the ones it sends."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = with_hybrid_errors(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_hybrid_errors(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with each 422 dropped and each POST's 400 and 415 in the API's shape."""
    for path, operations in document.get("paths", {}).items():
        shape = "AnthropicError" if shape_for_path(path) == "anthropic" else "OpenAIError"
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            validated = responses.pop("422", None) is not None
            if not validated and method != "post":
                continue
            for status, description in _BODY_ERRORS.items():
                responses[status] = {
                    "description": description,
                    "content": {
                        "application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}
                    },
                }
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_SCHEMAS)
    return document
