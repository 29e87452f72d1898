"""The Anthropic Messages contract, driven by the official SDK against the app with a scripted
backend."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx
import httpx2
import pytest
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, ScriptedGeneration, ScriptedRuntime, scripted_app

from hybrid.backend import Generation
from hybrid.errors import (
    ContextLengthExceededError,
    GenerationError,
    HybridError,
    ModelNotReadyError,
    QueueFullError,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    Usage,
)
from hybrid.settings import Settings

USER_HI = [{"role": "user", "content": "hi"}]


class FinishingBackend(ScriptedBackend):
    """A scripted backend whose text can end in a chosen way: a given closing event, or none."""

    def __init__(self) -> None:
        super().__init__()
        self.ending: list[GenerationEvent | HybridError] | None = None

    async def start(
        self, request: GenerationRequest, *, prepared: Any = None, running: Any = None
    ) -> Generation:
        if self.ending is None:
            return await super().start(request, running=running)
        self.requests.append(request)
        events: list[GenerationEvent | HybridError] = [TextDelta(p) for p in self.pieces]
        generation = ScriptedGeneration([*events, *self.ending], running)
        self.generations.append(generation)
        return generation


@pytest.fixture
def backend() -> FinishingBackend:
    return FinishingBackend()


def transport_to(client: TestClient) -> httpx2.MockTransport:
    # This anthropic release speaks httpx2, so the TestClient (an httpx.Client) cannot be its
    # http_client directly: a plain handler hands each request over to it.
    def forward(request: httpx2.Request) -> httpx2.Response:
        if request.url.host != "testserver":
            # The TestClient answers whatever the host; refuse here, so that a request the SDK
            # sent elsewhere (its default base URL) fails instead of reaching the app.
            return httpx2.Response(421, json={"type": "error", "error": {"type": "misdirected"}})
        response = client.request(
            request.method,
            str(request.url),
            headers=request.headers.multi_items(),
            content=request.read(),
        )
        return httpx2.Response(
            response.status_code, headers=response.headers.multi_items(), content=response.content
        )

    return httpx2.MockTransport(forward)


@pytest.fixture
def api(client: TestClient) -> Iterator[anthropic.Anthropic]:
    http_client = httpx2.Client(transport=transport_to(client))
    with anthropic.Anthropic(
        base_url="http://testserver", api_key="x", http_client=http_client, max_retries=0
    ) as sdk:
        yield sdk


def sse_events(text: str) -> list[tuple[str, dict[str, object]]]:
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        name_line, data_line = block.split("\n")
        assert name_line.startswith("event: ") and data_line.startswith("data: "), block
        data = json.loads(data_line[len("data: ") :])
        assert data["type"] == name_line[len("event: ") :]
        events.append((data["type"], data))
    return events


def anthropic_error(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert body["type"] == "error" and set(body) == {"type", "error"}, body
    assert set(body["error"]) == {"type", "message"} and body["error"]["message"]
    return body["error"]


def test_non_streamed_message_has_text_usage_stop_reason_and_hybrid_headers(
    api: anthropic.Anthropic,
) -> None:
    raw = api.messages.with_raw_response.create(model="hybrid", max_tokens=32, messages=USER_HI)
    message = raw.parse()
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "Hello world"
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (7, 2)
    assert message.model == "scripted-model"
    assert raw.headers["x-hybrid-route"] == "local"
    assert raw.headers["x-hybrid-model"] == "scripted-model"
    assert raw.headers["x-hybrid-reason"]
    assert message.id == "msg_" + raw.headers["x-hybrid-request-id"]


def test_sdk_stream_yields_the_text_and_the_final_message(api: anthropic.Anthropic) -> None:
    with api.messages.stream(model="hybrid", max_tokens=32, messages=USER_HI) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["Hello", " world"]
    assert final.content[0].text == "Hello world"
    assert final.stop_reason == "end_turn"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (7, 2)
    assert final.model == "scripted-model"


def test_stream_is_framed_exactly_as_anthropic_frames_it(client: TestClient) -> None:
    response = client.post(
        "/v1/messages",
        json={"model": "hybrid", "max_tokens": 32, "messages": USER_HI, "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    for name in ("x-hybrid-route", "x-hybrid-model", "x-hybrid-reason", "x-hybrid-request-id"):
        assert response.headers[name]
    events = sse_events(response.text)
    assert [name for name, _ in events] == [
        "message_start",
        "ping",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["id"] == "msg_" + response.headers["x-hybrid-request-id"]
    deltas = [data["delta"]["text"] for name, data in events if name == "content_block_delta"]
    assert deltas == ["Hello", " world"]
    closing = events[-2][1]
    assert closing["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert closing["usage"]["output_tokens"] == 2


def test_an_empty_answer_has_no_empty_text_block(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.pieces = []
    message = api.messages.create(model="hybrid", max_tokens=32, messages=USER_HI)
    assert message.content == [] and message.stop_reason == "end_turn"
    with api.messages.stream(model="hybrid", max_tokens=32, messages=USER_HI) as stream:
        assert list(stream.text_stream) == []
        assert stream.get_final_message().content == []


def test_system_prompt_blocks_and_parameters_reach_the_backend(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    api.messages.create(
        model="claude-sonnet-5-5",  # a cloud model name; it fits locally, so local answers
        max_tokens=12,
        system=[{"type": "text", "text": "be brief"}, {"type": "text", "text": "be kind"}],
        messages=[
            {"role": "user", "content": "a"},
            {"role": "assistant", "content": [{"type": "text", "text": "b"}]},
            {
                "role": "user",
                "content": [{"type": "text", "text": "c"}, {"type": "text", "text": "d"}],
            },
        ],
        stop_sequences=["END", "STOP"],
        metadata={"user_id": "u1"},
        # This SDK release no longer offers the sampling fields; older clients still send them.
        extra_body={
            "temperature": 0.3,
            "top_p": 0.9,
            "top_k": 40,
            "some_future_field": {"nested": True},
        },
    )
    request = backend.requests[-1]
    assert [(m.role, m.content) for m in request.messages] == [
        ("system", "be brief\n\nbe kind"),
        ("user", "a"),
        ("assistant", "b"),
        ("user", "c\n\nd"),
    ]
    params = request.params
    assert (params.max_tokens, params.temperature, params.top_p) == (12, 0.3, 0.9)
    assert params.stop == ("END", "STOP")
    assert request.stream is False


def test_a_plain_string_system_prompt_leads_the_conversation(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    with api.messages.stream(
        model="hybrid", max_tokens=8, system="you are terse", messages=USER_HI
    ) as stream:
        stream.until_done()
    request = backend.requests[-1]
    assert request.messages[0].role == "system" and request.messages[0].content == "you are terse"
    assert request.stream is True


@pytest.mark.parametrize(
    ("done", "stop_reason", "stop_sequence"),
    [
        (GenerationDone("stop", Usage(7, 2), stop_sequence="END"), "stop_sequence", "END"),
        (GenerationDone("length", Usage(7, 2)), "max_tokens", None),
        (GenerationDone("content_filter", Usage(7, 2)), "refusal", None),
    ],
)
def test_how_the_answer_ended_is_reported_whole_and_streamed(
    api: anthropic.Anthropic,
    backend: FinishingBackend,
    done: GenerationDone,
    stop_reason: str,
    stop_sequence: str | None,
) -> None:
    backend.ending = [done]
    message = api.messages.create(
        model="hybrid", max_tokens=2, messages=USER_HI, stop_sequences=["END"]
    )
    assert (message.stop_reason, message.stop_sequence) == (stop_reason, stop_sequence)
    with api.messages.stream(
        model="hybrid", max_tokens=2, messages=USER_HI, stop_sequences=["END"]
    ) as stream:
        final = stream.get_final_message()
    assert (final.stop_reason, final.stop_sequence) == (stop_reason, stop_sequence)
    assert final.content[0].text == "Hello world"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "m", "messages": USER_HI}, "max_tokens"),
        ({"messages": USER_HI, "max_tokens": 8}, "model"),
        ({"model": "m", "messages": "hi", "max_tokens": 8}, "messages"),
        ({"model": "m", "messages": [], "max_tokens": 8}, "messages"),
        ({"model": "m", "messages": USER_HI, "max_tokens": 0}, "max_tokens"),
        ({"model": "m", "messages": USER_HI, "max_tokens": "many"}, "max_tokens"),
        ({"model": "m", "messages": USER_HI, "max_tokens": 8, "temperature": 1.5}, "temperature"),
        (
            {"model": "m", "messages": [{"role": "system", "content": "x"}], "max_tokens": 8},
            "messages[0].role",
        ),
        ({"model": "m", "messages": USER_HI, "max_tokens": 8, "system": 3}, "system"),
    ],
)
def test_invalid_bodies_get_a_400_in_anthropic_shape(
    client: TestClient, body: dict[str, object], needle: str
) -> None:
    response = client.post("/v1/messages", json=body)
    assert response.status_code == 400, response.text
    error = anthropic_error(response)
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"]
    assert response.headers["x-hybrid-request-id"]


@pytest.mark.parametrize(
    ("block", "where"),
    [
        (
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": ""}},
            "messages[0].content[1]",
        ),
        (
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": ""},
            },
            "messages[0].content[1]",
        ),
        (
            {"type": "tool_use", "id": "toolu_1", "name": "calc", "input": {}},
            "messages[0].content[1]",
        ),
    ],
)
def test_non_text_blocks_are_refused_with_the_sdks_bad_request_error(
    api: anthropic.Anthropic, block: dict[str, object], where: str
) -> None:
    content = [{"type": "text", "text": "look"}, block]
    with pytest.raises(anthropic.BadRequestError) as caught:
        api.messages.create(
            model="hybrid",
            max_tokens=8,
            messages=[{"role": "user", "content": content}],
        )
    message = caught.value.message
    assert where in message
    if block["type"] == "image":  # images are accepted, but this one has no data
        assert "image without a base64 or url source" in message
    elif block["type"] == "tool_use":  # accepted from the assistant only
        assert "belongs in assistant turns" in message
    else:
        assert "hybrid accepts text, image" in message and repr(block["type"]) in message
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_an_image_needs_a_cloud_model_and_says_so(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    image = {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}
    with pytest.raises(anthropic.BadRequestError) as caught:
        api.messages.create(
            model="hybrid",
            max_tokens=8,
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}
            ],
        )
    assert "reads text only" in caught.value.message and "images" in caught.value.message


def test_misplaced_tool_blocks_and_system_images_are_refused(client: TestClient) -> None:
    tool_result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "4"}
    response = client.post(
        "/v1/messages",
        json={
            "model": "m",
            "max_tokens": 8,
            "messages": [*USER_HI, {"role": "assistant", "content": [tool_result]}],
        },
    )
    assert response.status_code == 400
    assert "messages[1].content[0]" in anthropic_error(response)["message"]
    response = client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 8, "messages": USER_HI, "system": [{"type": "image"}]},
    )
    assert response.status_code == 400
    assert "system[0]" in anthropic_error(response)["message"]


def test_tools_the_local_model_cannot_call_are_refused_with_the_way_out(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    tool = {"name": "calc", "description": "adds", "input_schema": {"type": "object"}}
    with pytest.raises(anthropic.BadRequestError, match="cannot call tools") as caught:
        api.messages.create(model="hybrid", max_tokens=8, messages=USER_HI, tools=[tool])
    assert "X-Hybrid-Route: cloud" in caught.value.message
    with pytest.raises(anthropic.BadRequestError, match="tool_choice"):
        api.messages.create(
            model="hybrid", max_tokens=8, messages=USER_HI, tool_choice={"type": "any"}
        )
    assert backend.requests == []
    # A choice that asks for no tool call changes nothing, so it is answered.
    message = api.messages.create(
        model="hybrid", max_tokens=8, messages=USER_HI, tools=[], tool_choice={"type": "none"}
    )
    assert message.content[0].text == "Hello world"


def test_a_bad_route_header_is_a_400_in_anthropic_shape(client: TestClient) -> None:
    response = client.post(
        "/v1/messages",
        json={"model": "m", "max_tokens": 8, "messages": USER_HI},
        headers={"X-Hybrid-Route": "moon"},
    )
    assert response.status_code == 400
    message = anthropic_error(response)["message"]
    assert "X-Hybrid-Route must be one of auto, local, cloud, lan" in message
    # lan is a route, but only with LAN servers configured: the error says how.
    response = client.post(
        "/v1/messages",
        json={"model": "hybrid", "max_tokens": 8, "messages": USER_HI},
        headers={"X-Hybrid-Route": "LAN"},
    )
    assert response.status_code == 400
    assert "[[lan.servers]]" in anthropic_error(response)["message"]


def test_malformed_json_is_a_400_in_anthropic_shape(client: TestClient) -> None:
    response = client.post(
        "/v1/messages", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert "not valid JSON" in anthropic_error(response)["message"]


def test_oversized_body_is_a_413_the_sdk_recognises(api: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.ContentTooLargeError) as caught:
        api.messages.create(
            model="hybrid", max_tokens=8, messages=[{"role": "user", "content": "x" * 10_000}]
        )
    assert caught.value.body["error"]["type"] == "request_too_large"
    assert "HYBRID_SERVER__MAX_BODY_BYTES" in caught.value.message


def test_unknown_path_under_messages_is_a_404_in_anthropic_shape(client: TestClient) -> None:
    response = client.post("/v1/messages/nowhere", json={})
    assert response.status_code == 404
    assert anthropic_error(response)["type"] == "not_found_error"


def test_queue_full_is_a_rate_limit_error_with_retry_after(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.fail_on_start = QueueFullError(depth=3, retry_after=4.2)
    with pytest.raises(anthropic.RateLimitError) as caught:
        with api.messages.stream(model="hybrid", max_tokens=8, messages=USER_HI) as stream:
            stream.until_done()
    assert caught.value.response.headers["retry-after"] == "5"
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "HYBRID_LOCAL__MAX_QUEUE" in caught.value.message


def test_loading_model_is_a_503_overloaded_error_with_retry_after(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.fail_on_start = ModelNotReadyError("the local model is still loading; retry shortly")
    with pytest.raises(anthropic.ServiceUnavailableError) as caught:
        api.messages.create(model="hybrid", max_tokens=8, messages=USER_HI)
    assert caught.value.response.headers["retry-after"]
    assert caught.value.body["error"]["type"] == "overloaded_error"
    assert "still loading" in caught.value.message


def test_while_the_model_loads_messages_are_503_in_anthropic_shape(
    settings_for: Callable[..., Settings], backend: FinishingBackend
) -> None:
    settings = settings_for(**{"probe.measure_bandwidth": False})
    runtime = ScriptedRuntime(settings, backend, ready=False)
    with TestClient(scripted_app(settings, runtime=runtime)) as client:
        response = client.post(
            "/v1/messages", json={"model": "hybrid", "max_tokens": 8, "messages": USER_HI}
        )
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert anthropic_error(response)["type"] == "overloaded_error"


def test_context_overflow_is_a_bad_request_with_the_numbers(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.fail_on_start = ContextLengthExceededError(
        prompt_tokens=900, max_tokens=200, context_length=1024
    )
    with pytest.raises(anthropic.BadRequestError) as caught:
        api.messages.create(model="hybrid", max_tokens=200, messages=USER_HI)
    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert "900" in caught.value.message and "1,024" in caught.value.message


def test_failure_mid_stream_ends_with_an_error_event_and_no_message_stop(
    client: TestClient, backend: FinishingBackend, caplog: pytest.LogCaptureFixture
) -> None:
    backend.fail_mid_stream = GenerationError("llama.cpp failed while generating: boom")
    response = client.post(
        "/v1/messages",
        json={"model": "hybrid", "max_tokens": 8, "messages": USER_HI, "stream": True},
    )
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[-1] == "error"
    assert "content_block_delta" in names
    assert not {"message_delta", "message_stop", "content_block_stop"} & set(names)
    error = events[-1][1]["error"]
    assert error == {"type": "api_error", "message": "llama.cpp failed while generating: boom"}
    assert backend.generations[-1].closed
    request_id = response.headers["x-hybrid-request-id"]
    assert any(request_id in record.getMessage() for record in caplog.records)


def test_sdk_stream_raises_on_a_failure_mid_stream(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.fail_mid_stream = GenerationError("llama.cpp failed while generating: boom")
    pieces: list[str] = []
    with pytest.raises(anthropic.APIStatusError, match="boom"):
        with api.messages.stream(model="hybrid", max_tokens=8, messages=USER_HI) as stream:
            pieces.extend(stream.text_stream)
    assert pieces == ["Hello", " world"]


def test_a_stream_cut_without_its_closing_event_is_not_presented_as_complete(
    api: anthropic.Anthropic, backend: FinishingBackend
) -> None:
    backend.ending = []
    with pytest.raises(anthropic.APIStatusError, match="closing event"):
        with api.messages.stream(model="hybrid", max_tokens=8, messages=USER_HI) as stream:
            stream.until_done()
    assert backend.generations[-1].closed


def test_sdk_finds_hybrid_through_anthropic_base_url(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://testserver")
    http_client = httpx2.Client(transport=transport_to(client))
    with anthropic.Anthropic(api_key="x", http_client=http_client, max_retries=0) as sdk:
        message = sdk.messages.create(model="hybrid", max_tokens=8, messages=USER_HI)
    assert message.content[0].text == "Hello world"
