"""What hybrid does with bodies it cannot take: too deeply nested, of the wrong types, a tool
schema that is no schema; and what /openapi.json says about it.

Each is refused with a 400 in the API's own shape before anything is sent anywhere: the
requests name ``model: "cloud"`` and the fake cloud's log stays empty.
"""

from __future__ import annotations

import http.client
import json
from typing import Any

import httpx
import pytest
from fake_cloud import FakeCloud
from spending_requests import CHAT, COMPLETION, ENDPOINTS, MESSAGES, error_code

DEPTH = 5_000
USER = CHAT["messages"]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("path", list(ENDPOINTS))
def test_deeply_nested_json_is_a_400_and_the_connection_stays_open(
    hybrid: str, fake: FakeCloud, path: str
) -> None:
    _, shape = ENDPOINTS[path]
    body = '{"mode": ' + nested(DEPTH) + ', "messages": ' + nested(DEPTH) + "}"
    connection = http.client.HTTPConnection(httpx.URL(hybrid).host, httpx.URL(hybrid).port)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        refused = connection.getresponse()
        answer = json.loads(refused.read())
        assert refused.status == 400
        assert error_code(answer, shape) == (
            "invalid_request_error" if shape == "anthropic" else "invalid_json"
        )
        assert "JSON" in answer["error"]["message"]
        sock = connection.sock

        # The same connection serves the next request: the error did not break it.
        connection.request("GET", "/health")
        assert connection.sock is sock
        assert connection.getresponse().status == 200
    finally:
        connection.close()
    assert fake.requests == []


def test_deeply_nested_tool_call_arguments_are_a_400(hybrid: str, fake: FakeCloud) -> None:
    # Arguments are JSON inside a JSON string: the body parses, and the arguments are read when
    # the conversation is translated for Anthropic.
    arguments = nested(DEPTH)
    call = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": arguments}}
    body = {
        "model": "claude-haiku-4-5",
        "messages": [
            *USER,
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
        ],
        "tools": with_tool_schema({"type": "object"})["tools"],
    }

    response = httpx.post(f"{hybrid}/v1/chat/completions", json=body)

    assert response.status_code == 400
    assert "not a JSON object" in response.json()["error"]["message"]
    assert fake.requests == []


def with_tool_schema(schema: dict[str, Any]) -> dict[str, Any]:
    function = {"name": "lookup", "parameters": schema}
    return {**CHAT, "tools": [{"type": "function", "function": function}]}


def image(image_url: object) -> dict[str, Any]:
    return {"type": "image_url", "image_url": image_url}


MISTYPED = [
    ("/v1/chat/completions", {**CHAT, "stream": "yes"}, "stream"),
    ("/v1/chat/completions", {**CHAT, "stream": 1}, "stream"),
    ("/v1/chat/completions", {**CHAT, "logprobs": "yes"}, "logprobs"),
    ("/v1/chat/completions", {**CHAT, "max_tokens": "10"}, "max_tokens"),
    (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": [image(5)]}]},
        "messages[0].content[0].image_url",
    ),
    (
        "/v1/chat/completions",
        {**CHAT, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        "messages[0].content[0]",
    ),
    ("/v1/chat/completions", with_tool_schema({"type": "banana"}), "tools[0].function.parameters"),
    (
        "/v1/chat/completions",
        with_tool_schema({"type": "object", "properties": {"q": {"type": "banana"}}}),
        "tools[0].function.parameters",
    ),
    ("/v1/completions", {**COMPLETION, "stream": "yes"}, "stream"),
    ("/v1/completions", {**COMPLETION, "logprobs": True}, "logprobs"),
    ("/v1/messages", {**MESSAGES, "stream": "yes"}, "stream"),
    (
        "/v1/messages",
        {**MESSAGES, "tools": [{"name": "lookup", "input_schema": {"type": "banana"}}]},
        "tools[0].input_schema",
    ),
]


@pytest.mark.parametrize(("path", "body", "param"), MISTYPED)
def test_a_value_of_the_wrong_type_is_a_400_not_a_guess(
    hybrid: str, fake: FakeCloud, path: str, body: dict[str, Any], param: str
) -> None:
    response = httpx.post(f"{hybrid}{path}", json=body)

    assert response.status_code == 400
    _, shape = ENDPOINTS[path]
    error = response.json()["error"]
    if shape == "openai":
        assert (error["param"], error["code"]) == (param, "invalid_value")
    else:
        assert error["type"] == "invalid_request_error"
    assert f"invalid value for {param!r}" in error["message"]
    assert fake.requests == []


def test_a_well_typed_image_and_tool_reach_the_cloud_as_sent(hybrid: str, fake: FakeCloud) -> None:
    schema = {
        "type": "object",
        "properties": {"q": {"type": ["string", "null"]}, "n": {"anyOf": [{"type": "integer"}]}},
    }
    picture = {"url": "https://example.com/cat.png", "detail": "low"}
    content = [{"type": "text", "text": "What is this?"}, image(picture)]
    body = {**with_tool_schema(schema), "messages": [{"role": "user", "content": content}]}

    response = httpx.post(f"{hybrid}/v1/chat/completions", json=body)

    assert response.status_code == 200
    [sent] = fake.requests
    assert sent.body is not None
    assert sent.body["messages"][0]["content"][1] == image(picture)
    assert sent.body["tools"][0]["function"]["parameters"] == schema


def test_the_openapi_document_describes_the_errors_hybrid_sends(hybrid: str) -> None:
    document = httpx.get(f"{hybrid}/openapi.json").json()

    assert '"422"' not in json.dumps(document)
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    for path, shape in [
        ("/v1/chat/completions", "OpenAIError"),
        ("/v1/completions", "OpenAIError"),
        ("/v1/messages", "AnthropicError"),
        ("/v1/hybrid/mode", "OpenAIError"),
    ]:
        documented = document["paths"][path]["post"]["responses"]["400"]
        reference = documented["content"]["application/json"]["schema"]["$ref"]
        assert reference == f"#/components/schemas/{shape}"

        # What the server sends for an invalid body has the documented fields.
        sent = httpx.post(f"{hybrid}{path}", json={"stream": "yes"})
        assert sent.status_code == 400
        body_schema = schemas[shape]
        assert set(body_schema["required"]) <= set(sent.json())
        error_schema = body_schema["properties"]["error"]
        assert set(error_schema["required"]) == set(sent.json()["error"])
