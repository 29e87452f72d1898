"""``/openapi.json`` describes the endpoints as they are served: every route is a FastAPI route,
and each body a route reads from its bytes is documented as that route's request body."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient


def resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema, with a ``$ref`` into ``components/schemas`` followed."""
    ref = schema.get("$ref")
    if ref is None:
        return schema
    prefix = "#/components/schemas/"
    assert ref.startswith(prefix), ref
    return resolve(document, document["components"]["schemas"][ref.removeprefix(prefix)])


def refs(value: Any) -> set[str]:
    """Every ``$ref`` anywhere in a JSON value."""
    if isinstance(value, dict):
        own = {value["$ref"]} if isinstance(value.get("$ref"), str) else set()
        return own.union(*(refs(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(refs(item) for item in value))
    return set()


@pytest.mark.parametrize(
    ("path", "required", "fields"),
    [
        ("/v1/chat/completions", {"messages"}, {"model", "stream", "tools", "response_format"}),
        ("/v1/completions", {"prompt"}, {"model", "stream", "logprobs", "echo"}),
        ("/v1/messages", {"model", "messages", "max_tokens"}, {"system", "tools", "stream"}),
        ("/v1/hybrid/mode", {"mode"}, {"mode"}),
        ("/v1/hybrid/feedback", {"request_id", "good"}, {"note"}),
    ],
)
def test_each_post_route_documents_the_body_it_reads(
    client: TestClient, path: str, required: set[str], fields: set[str]
) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"][path]["post"]["requestBody"]
    assert body["required"] is True
    schema = resolve(document, body["content"]["application/json"]["schema"])
    assert set(schema["required"]) == required
    assert required | fields <= set(schema["properties"])


def test_every_reference_in_the_document_resolves(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    schemas = document["components"]["schemas"]
    prefix = "#/components/schemas/"
    found = refs(document)
    assert f"{prefix}MessagesRequest" in found
    assert all(ref.startswith(prefix) and ref.removeprefix(prefix) in schemas for ref in found)


def test_the_answering_routes_are_fastapi_routes(client: TestClient) -> None:
    document = client.get("/openapi.json").json()
    served = {
        (method.upper(), path) for path, methods in document["paths"].items() for method in methods
    }
    assert {
        ("POST", "/v1/chat/completions"),
        ("POST", "/v1/completions"),
        ("POST", "/v1/messages"),
        ("GET", "/v1/hybrid/stats"),
        ("GET", "/v1/hybrid/events"),
        ("GET", "/health"),
        ("GET", "/metrics"),
    } <= served
    # Served by the routes it documents: a method they lack is FastAPI's 405, in OpenAI's shape
    # (Anthropic's on /v1/messages).
    refused = client.get("/v1/chat/completions")
    assert refused.status_code == 405
    assert refused.json()["error"]["code"] == "method_not_allowed"
    assert client.get("/v1/messages").json()["type"] == "error"


def test_docs_page_shows_the_document_the_server_serves(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "/openapi.json" in page.text
    assert "SwaggerUIBundle" in page.text
