"""``/openapi.json`` as hybrid answers: its request bodies, and errors in the API's own shape,
never FastAPI's 422.

Each route reads its body through a :class:`~hybrid.api.bodies.JsonBody` dependency, which
FastAPI does not see as a body: the document gets each such body's schema under
``requestBody`` here, with the models in ``components/schemas`` (a route that documents a
narrower body itself, through ``openapi_extra``, keeps its own).
FastAPI documents a ``422 Validation Error`` with its own body for every route that takes a
body; hybrid answers an invalid request with a 400 in OpenAI's shape (Anthropic's on
``/v1/messages``), see :mod:`hybrid.api.errors`.  The document is rewritten to match, and
lists every other error status a route can send: the middleware's refusals on every route,
the body's on every POST, and the routing outcomes on the routes that answer prompts.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.routing import BaseRoute

from hybrid.api.bodies import JsonBody
from hybrid.wire.errors import shape_for_path

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
    "ServerSentEvent": {
        "title": "ServerSentEvent",
        "description": "One event of a text/event-stream response; data is JSON text, or "
        "[DONE] at the end of an OpenAI stream.",
        "type": "object",
        "required": ["data"],
        "properties": {
            "event": {"type": "string", "examples": ["message_start", "snapshot"]},
            "data": {"type": "string"},
        },
    },
}
# The answering routes stream Server-Sent Events when asked to ("stream": true); the event
# feed always does, and never ends.
_EVENT_STREAM = {"text/event-stream": {"schema": {"$ref": "#/components/schemas/ServerSentEvent"}}}
_EVENT_FEED = "/v1/hybrid/events"
_EVERY_ROUTE_ERRORS = {
    "403": "Refused: the request named a host (server.allowed_hosts), or came from a web page "
    "(server.allowed_origins), that is not allowed.",
}
_KEYED_ROUTE_ERRORS = {
    "401": "The server has an API key (server.api_key) and the request did not carry it.",
}
_BODY_ERRORS = {
    "400": "Invalid request: the body is not JSON, a field is missing or of the wrong type, or "
    "a value is out of range or cannot be honoured.",
    "408": "The body did not arrive within server.body_timeout_s.",
    "413": "The body is larger than server.max_body_bytes.",
    "415": "The body was not sent as JSON (Content-Type: application/json).",
}
_QUERY_ERROR = "Invalid request: a query parameter is not one of the values documented."
_ANSWER_ERRORS = {
    "404": "No model by that name; GET /v1/models lists them.",
    "429": "The local queue is full (Retry-After says when to retry), or the budget is spent.",
    "502": "The cloud provider failed and nothing else could answer.",
    "503": "Nothing can answer now: the local model is loading, private data must stay on "
    "this machine, or no route fits the request.",
}
# The routes that answer prompts; only they route, and so only they send _ANSWER_ERRORS.
_ANSWERING_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/messages"})
_REF_TEMPLATE = "#/components/schemas/{model}"
# The one route a request without the API key may call.
_KEYLESS_PATHS = frozenset({"/health"})


def document_api(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Make ``app`` serve an OpenAPI document with its request bodies and the error responses
    it sends.

    Args:
        app: The application.
        routers: The routers it includes (without a prefix), whose JsonBody dependencies are
            documented as request bodies.
    """
    routes = [route for router in routers for route in router.routes]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = with_hybrid_errors(with_bodies(document, routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def with_bodies(document: dict[str, Any], routes: Iterable[BaseRoute]) -> dict[str, Any]:
    """``document`` with the :class:`~hybrid.api.bodies.JsonBody` of each route as its
    ``requestBody``, and the models' schemas in ``components/schemas``.

    Args:
        document: The document FastAPI generated.
        routes: The routes it describes.

    Returns:
        The document, changed in place.
    """
    bodies = [
        (operation, model)
        for path, method, model in _json_bodies(routes)
        if "requestBody" not in (operation := document["paths"][path][method])
    ]
    if not bodies:
        return document
    models = list(dict.fromkeys(model for _, model in bodies))
    refs, definitions = models_json_schema(
        [(model, "validation") for model in models], ref_template=_REF_TEMPLATE
    )
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.update(definitions.get("$defs", {}))
    for operation, model in bodies:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": refs[(model, "validation")]}},
        }
    return document


def _json_bodies(routes: Iterable[BaseRoute]) -> Iterator[tuple[str, str, type[BaseModel]]]:
    """Path, method and body model of each operation that reads a JsonBody."""
    for route in routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for dependency in route.dependant.dependencies:
            if isinstance(dependency.call, JsonBody):
                for method in sorted(route.methods or ()):
                    yield route.path_format, method.lower(), dependency.call.model


def with_hybrid_errors(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` with each 422 dropped and every error status a route sends listed, with
    the body in the API's shape."""
    for path, operations in document.get("paths", {}).items():
        shape = "AnthropicError" if shape_for_path(path) == "anthropic" else "OpenAIError"
        error_body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{shape}"}}}
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            validated = responses.pop("422", None) is not None
            answer = responses.setdefault("200", {"description": "Successful Response"})
            if path == _EVENT_FEED:
                answer["content"] = dict(_EVENT_STREAM)
            elif path in _ANSWERING_PATHS:
                answer["content"] = {**answer.get("content", {}), **_EVENT_STREAM}
            errors = dict(_EVERY_ROUTE_ERRORS)
            if path not in _KEYLESS_PATHS:
                errors.update(_KEYED_ROUTE_ERRORS)
            if method == "post":
                errors.update(_BODY_ERRORS)
            elif validated:
                errors["400"] = _QUERY_ERROR
            if path in _ANSWERING_PATHS:
                errors.update(_ANSWER_ERRORS)
            for status, description in sorted(errors.items()):
                # A status a route documents itself keeps the route's description.
                responses.setdefault(status, {"description": description, "content": error_body})
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    schemas.update(_SCHEMAS)
    return document
