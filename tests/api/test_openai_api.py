"""The OpenAI wire contract, driven by the official SDK against the app with a scripted backend."""

from __future__ import annotations

import json
from collections.abc import Callable

import openai
import pytest
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, ScriptedRuntime, scripted_app

from hybrid.errors import (
    ContextLengthExceededError,
    GenerationError,
    ModelNotReadyError,
    QueueFullError,
)
from hybrid.settings import Settings


def sdk(client: TestClient) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0
    )


def sse_payloads(text: str) -> list[str]:
    assert text.endswith("\n\n")
    events = text.split("\n\n")[:-1]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: ") :] for e in events]


def test_non_streamed_chat_answers_with_usage_and_hybrid_headers(client: TestClient) -> None:
    raw = sdk(client).chat.completions.with_raw_response.create(
        model="hybrid", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.choices[0].message.content == "Hello world"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.total_tokens == 9
    assert completion.model == "scripted-model"
    assert raw.headers["x-hybrid-route"] == "local"
    assert raw.headers["x-hybrid-model"] == "scripted-model"
    assert len(raw.headers["x-hybrid-request-id"]) == 32
    assert completion.id == "chatcmpl-" + raw.headers["x-hybrid-request-id"]


def test_stream_is_framed_exactly_as_openai_frames_it(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": "hi"}],
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert deltas[0]["role"] == "assistant"
    assert all("role" not in d for d in deltas[1:])
    assert "".join(d.get("content") or "" for d in deltas) == "Hello world"
    finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]]
    assert finish[-1] == "stop" and set(finish[:-1]) == {None}
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    assert all(c["usage"] is None for c in chunks[:-1])
    assert len({c["id"] for c in chunks}) == 1


def test_a_text_completion_stream_with_usage_is_framed_as_the_chat_stream_is(
    client: TestClient,
) -> None:
    response = client.post(
        "/v1/completions",
        json={"prompt": "hi", "stream": True, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks if c["choices"]) == "Hello world"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 2
    # Every chunk before the usage chunk says "usage": null, as OpenAI's do.
    assert all("usage" in c and c["usage"] is None for c in chunks[:-1])


def test_a_text_completion_stream_without_usage_has_no_usage_field(client: TestClient) -> None:
    response = client.post("/v1/completions", json={"prompt": "hi", "stream": True})
    chunks = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    assert chunks and all("usage" not in c for c in chunks)


def test_sdk_streams_text_and_usage(client: TestClient) -> None:
    stream = sdk(client).chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello world"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 7


def test_parameters_reach_the_backend(client: TestClient, backend: ScriptedBackend) -> None:
    sdk(client).chat.completions.create(
        model="hybrid",
        messages=[
            {"role": "system", "content": "be brief"},
            {
                "role": "user",
                "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
            },
        ],
        max_completion_tokens=12,
        temperature=0.3,
        top_p=0.9,
        stop="END",
        seed=7,
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {"type": "object"}},
        },
        extra_body={"some_future_field": {"nested": True}},
    )
    request = backend.requests[-1]
    assert [m.content for m in request.messages] == ["be brief", "ab"]
    params = request.params
    assert (params.max_tokens, params.temperature, params.top_p, params.seed) == (12, 0.3, 0.9, 7)
    assert params.stop == ("END",)
    assert params.response_format is not None and params.response_format.schema == {
        "type": "object"
    }


def test_logprobs_come_back_in_openai_shape(client: TestClient) -> None:
    completion = sdk(client).chat.completions.create(
        model="hybrid", messages=[{"role": "user", "content": "hi"}], logprobs=True, top_logprobs=2
    )
    content = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert [t.token for t in content] == ["Hello", " world"]
    assert content[0].logprob == -0.5 and content[0].bytes == list(b"Hello")


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"messages": "not a list"}, "messages", "invalid_value"),
        ({}, "messages", "missing_required_parameter"),
        ({"messages": []}, "messages", "invalid_value"),
        (
            {"messages": [{"role": "user", "content": "x"}], "temperature": "hot"},
            "temperature",
            "invalid_value",
        ),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role", "invalid_value"),
        ({"messages": [{"role": "user", "content": "x"}], "n": 2}, "n", None),
        (
            {"messages": [{"role": "user", "content": "x"}], "max_tokens": 0},
            "max_tokens",
            "invalid_value",
        ),
    ],
)
def test_bad_requests_get_a_400_in_openai_shape(
    client: TestClient, body: dict[str, object], param: str, code: str | None
) -> None:
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert error["code"] == code
    assert error["message"]
    assert response.headers["x-hybrid-request-id"]


def test_malformed_json_is_a_400_not_a_500(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        content=b'{"messages": [',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_image_content_is_refused_clearly(client: TestClient) -> None:
    response = client.post(
        "/v1/chat/completions",
        json={
            "messages": [
                {"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}
            ]
        },
    )
    assert response.status_code == 400
    assert "text only" in response.json()["error"]["message"]


def test_oversized_body_is_a_413(client: TestClient) -> None:
    big = {"messages": [{"role": "user", "content": "x" * 10_000}]}
    response = client.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"
    assert response.headers["x-hybrid-request-id"]


def test_a_refusal_says_it_went_nowhere(client: TestClient) -> None:
    unknown = client.post(
        "/v1/chat/completions",
        json={"model": "mystery-model-9", "messages": [{"role": "user", "content": "Hi"}]},
    )
    assert unknown.status_code == 404
    assert unknown.headers["x-hybrid-route"] == "none"
    assert client.get("/health").headers["x-hybrid-route"] == "local"


def test_unknown_route_is_a_404_in_openai_shape(client: TestClient) -> None:
    response = client.post("/v1/embeddings", json={})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_context_overflow_is_a_400_with_the_numbers(
    client: TestClient, backend: ScriptedBackend
) -> None:
    backend.fail_on_start = ContextLengthExceededError(
        prompt_tokens=900, max_tokens=200, context_length=1024
    )
    with pytest.raises(openai.BadRequestError) as caught:
        sdk(client).chat.completions.create(
            model="hybrid", messages=[{"role": "user", "content": "x"}]
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "900" in error["message"] and "1,024" in error["message"]


def test_queue_full_is_a_429_with_retry_after(client: TestClient, backend: ScriptedBackend) -> None:
    backend.fail_on_start = QueueFullError(depth=3, retry_after=4.2)
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    assert response.status_code == 429
    assert response.headers["retry-after"] == "5"
    assert response.json()["error"]["code"] == "rate_limit_exceeded"


def test_model_not_ready_is_a_503(client: TestClient, backend: ScriptedBackend) -> None:
    backend.fail_on_start = ModelNotReadyError("the local model is still loading")
    response = client.post(
        "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
    )
    assert response.status_code == 503
    assert response.headers["retry-after"]


def test_failure_mid_stream_ends_with_an_error_event_and_no_done(
    client: TestClient, backend: ScriptedBackend
) -> None:
    backend.fail_mid_stream = GenerationError("llama.cpp failed while generating: boom")
    response = client.post(
        "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": "x"}], "stream": True},
    )
    payloads = sse_payloads(response.text)
    assert "[DONE]" not in payloads
    assert json.loads(payloads[-1])["error"]["code"] == "generation_failed"
    assert backend.generations[-1].closed
    with pytest.raises(openai.APIError):
        list(
            sdk(client).chat.completions.create(
                model="hybrid", messages=[{"role": "user", "content": "x"}], stream=True
            )
        )


def test_text_completions_whole_and_streamed(client: TestClient, backend: ScriptedBackend) -> None:
    api = sdk(client)
    whole = api.completions.create(model="local", prompt="Once", logprobs=1)
    assert whole.choices[0].text == "Hello world"
    assert whole.choices[0].logprobs is not None and whole.choices[0].logprobs.text_offset == [0, 5]
    assert backend.requests[-1].prompt == "Once" and backend.requests[-1].params.max_tokens == 16
    pieces = [
        c.choices[0].text
        for c in api.completions.create(model="local", prompt="Once", stream=True)
        if c.choices
    ]
    assert "".join(pieces) == "Hello world"


def test_models_lists_the_local_model_and_aliases(client: TestClient) -> None:
    ids = [m.id for m in sdk(client).models.list()]
    assert ids[1:] == ["hybrid", "local", "cloud"]  # no cloud provider has a key here
    assert ids[0] == "gemma-3-270m-q4_k_m"


def test_health_is_200_when_ready(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_while_the_model_loads_health_and_requests_are_503(
    settings_for: Callable[..., Settings], backend: ScriptedBackend
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    runtime = ScriptedRuntime(settings, backend, ready=False)
    with TestClient(scripted_app(settings, runtime=runtime)) as client:
        health = client.get("/health")
        assert health.status_code == 503
        assert health.json()["status"] == "loading"
        assert health.headers["retry-after"]
        chat = client.post(
            "/v1/chat/completions", json={"messages": [{"role": "user", "content": "x"}]}
        )
        assert chat.status_code == 503
        assert chat.json()["error"]["code"] == "model_not_ready"
        assert "still loading" in chat.json()["error"]["message"]
        assert chat.headers["x-hybrid-model"] == "gemma-3-270m-q4_k_m"
