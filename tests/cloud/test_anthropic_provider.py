from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from cloud_fakes import (
    ANTHROPIC_KEY,
    ChunkStream,
    FakeSleep,
    Upstream,
    anthropic,
    anthropic_end,
    anthropic_error,
    anthropic_event,
    anthropic_message,
    anthropic_start,
    anthropic_text,
    chat,
    drain,
    json_response,
    mock_client,
    sse_response,
)

from hybrid.backend import Completion
from hybrid.errors import (
    CircuitOpenError,
    InvalidRequestError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderUnavailableError,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    Message,
    ResponseFormat,
    SamplingParams,
    TextDelta,
    ThinkingBlock,
    ThinkingDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)


def complete(upstream: Upstream, request: GenerationRequest, **kwargs: Any) -> Completion:
    async def scenario() -> Completion:
        async with mock_client(upstream) as client:
            return await anthropic(client, **kwargs).complete(request)

    return asyncio.run(scenario())


def stream_events(
    upstream: Upstream, request: GenerationRequest = HELLO_STREAM, **kwargs: Any
) -> tuple[list[GenerationEvent], ProviderError | None]:
    async def scenario() -> tuple[list[GenerationEvent], ProviderError | None]:
        events: list[GenerationEvent] = []
        async with mock_client(upstream) as client:
            generation = await anthropic(client, **kwargs).start(request)
            try:
                await drain(generation, events)
            except ProviderError as exc:
                return events, exc
        return events, None

    return asyncio.run(scenario())


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


def full_stream(*pieces: str, **end: Any) -> bytes:
    return b"".join([anthropic_start(), *anthropic_text(*pieces), *anthropic_end(**end)])


# -- request translation --------------------------------------------------------------------


def test_request_translation_and_headers() -> None:
    upstream = Upstream(json_response(anthropic_message("Hi")))
    request = chat(
        ("system", "You are terse."),
        ("user", "Hello"),
        ("user", "Are you there?"),
        ("assistant", "Yes."),
        ("developer", "Answer in French."),
        ("tool", "42"),
        ("user", "What is it?"),
        model="claude-opus-4-1",
        max_tokens=300,
        stop=("\n\nHuman:", "END"),
        temperature=1.6,
        top_p=0.8,
    )
    complete(upstream, request)
    sent = upstream.requests[0]
    assert str(sent.url) == "https://api.anthropic.com/v1/messages"
    assert sent.headers["x-api-key"] == ANTHROPIC_KEY
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers
    assert upstream.body() == {
        "model": "claude-opus-4-1",
        "max_tokens": 300,
        "system": "You are terse.\n\nAnswer in French.",
        "messages": [
            {"role": "user", "content": "Hello\n\nAre you there?"},
            {"role": "assistant", "content": "Yes."},
            {"role": "user", "content": "42\n\nWhat is it?"},
        ],
        "stop_sequences": ["\n\nHuman:", "END"],
        "temperature": 1.0,
        "top_p": 0.8,
    }


def test_max_tokens_defaults_because_anthropic_requires_it() -> None:
    upstream = Upstream(json_response(anthropic_message("Hi")))
    complete(upstream, HELLO)
    assert upstream.body() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 4096,
        "messages": [{"role": "user", "content": "Say hello"}],
    }


def test_json_output_is_asked_for_in_the_system_prompt() -> None:
    upstream = Upstream(json_response(anthropic_message('{"ok": true}')))
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}}
    request = chat(
        ("system", "Be helpful."),
        ("user", "Status?"),
        response_format=ResponseFormat("json_schema", schema),
    )
    complete(upstream, request)
    system = upstream.body()["system"]
    assert system.startswith("Be helpful.\n\nAnswer with a single valid JSON object")
    assert '{"properties":{"ok":{"type":"boolean"}},"type":"object"}' in system


def test_a_raw_prompt_becomes_one_user_message() -> None:
    request = GenerationRequest(
        request_id="r", prompt="Hello", params=SamplingParams(max_tokens=5), stream=True
    )
    upstream = Upstream(sse_response(full_stream(" world")))
    events, error = stream_events(upstream, request)
    assert error is None and text_of(events) == " world"
    assert upstream.body() == {
        "model": "claude-sonnet-4-5",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "Hello"}],
        "stream": True,
    }


def test_logprobs_are_refused_before_anything_is_sent() -> None:
    upstream = Upstream()

    async def scenario() -> None:
        async with mock_client(upstream) as client:
            with pytest.raises(InvalidRequestError) as caught:
                await anthropic(client).start(chat(("user", "hi"), top_logprobs=0))
            assert caught.value.param == "logprobs"

    asyncio.run(scenario())
    assert upstream.requests == []


# -- whole answers --------------------------------------------------------------------------


def test_a_whole_message_with_a_stop_sequence_and_cached_prompt_tokens() -> None:
    payload = anthropic_message(
        "Hello",
        ", world",
        stop_reason="stop_sequence",
        stop_sequence="END",
        usage={
            "input_tokens": 10,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 100,
            "output_tokens": 4,
        },
    )
    payload["content"].insert(1, {"type": "thinking", "thinking": "hmm", "signature": "x"})
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.text == "Hello, world"
    assert completion.done == GenerationDone(
        finish_reason="stop",
        stop_sequence="END",
        usage=Usage(115, 4, cache_read_tokens=100, cache_write_tokens=5),
    )


# -- extended thinking ----------------------------------------------------------------------

THOUGHT = {"type": "thinking", "thinking": "Plan.", "signature": "sig-1"}
REDACTED = {"type": "redacted_thinking", "data": "Encrypted=="}


def test_the_thinking_setting_and_a_turns_thinking_blocks_reach_anthropic_first_in_the_turn() -> (
    None
):
    upstream = Upstream(json_response(anthropic_message("ok")))
    call = ToolCall("toolu_1", "read_file", '{"path":"main.py"}')
    request = GenerationRequest(
        request_id="req-1",
        messages=(
            Message("user", "Read main.py"),
            Message("assistant", "Reading.", tool_calls=(call,), thinking=(THOUGHT, REDACTED)),
            Message("tool", "x = 1", tool_call_id="toolu_1"),
        ),
        thinking={"type": "enabled", "budget_tokens": 2048},
    )
    complete(upstream, request)
    body = upstream.body()
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["messages"][1] == {
        "role": "assistant",
        "content": [
            THOUGHT,
            REDACTED,
            {"type": "text", "text": "Reading."},
            {
                "type": "tool_use",
                "id": "toolu_1",
                "name": "read_file",
                "input": {"path": "main.py"},
            },
        ],
    }


def test_a_whole_answers_thinking_blocks_are_kept_in_order() -> None:
    payload = anthropic_message("Hello", usage={"input_tokens": 3, "output_tokens": 40})
    payload["content"][:0] = [THOUGHT, REDACTED]
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.text == "Hello"
    assert completion.thinking == (
        ThinkingBlock("Plan.", "sig-1"),
        ThinkingBlock(redacted="Encrypted=="),
    )
    assert completion.done.usage == Usage(3, 40)  # thinking tokens are Anthropic's output tokens


def test_a_streams_thinking_blocks_become_thinking_deltas_before_its_text_and_calls() -> None:
    def delta(index: int, **fields: str) -> bytes:
        return anthropic_event("content_block_delta", {"index": index, "delta": fields})

    def block(index: int, opening: dict[str, Any]) -> bytes:
        return anthropic_event("content_block_start", {"index": index, "content_block": opening})

    def stop(index: int) -> bytes:
        return anthropic_event("content_block_stop", {"index": index})

    tool = {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {}}
    body = b"".join(
        [
            anthropic_start(),
            block(0, {"type": "thinking", "thinking": "", "signature": ""}),
            delta(0, type="thinking_delta", thinking="Pl"),
            delta(0, type="thinking_delta", thinking="an."),
            delta(0, type="signature_delta", signature="sig-1"),
            stop(0),
            block(1, REDACTED),
            stop(1),
            block(2, {"type": "text", "text": ""}),
            delta(2, type="text_delta", text="Reading."),
            stop(2),
            block(3, tool),
            delta(3, type="input_json_delta", partial_json="{}"),
            stop(3),
            *anthropic_end(stop_reason="tool_use", output_tokens=30),
        ]
    )
    events, error = stream_events(Upstream(sse_response(body)))
    assert error is None
    assert events == [
        TextDelta("", prompt_usage=Usage(21, 0)),
        ThinkingDelta(0),
        ThinkingDelta(0, thinking="Pl"),
        ThinkingDelta(0, thinking="an."),
        ThinkingDelta(0, signature="sig-1"),
        ThinkingDelta(1, redacted="Encrypted=="),
        TextDelta("Reading."),
        ToolCallDelta(0, "toolu_1", "read_file", ""),
        ToolCallDelta(0, arguments="{}"),
        GenerationDone(finish_reason="tool_calls", usage=Usage(21, 30)),
    ]


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [("end_turn", "stop"), ("max_tokens", "length"), ("refusal", "content_filter")],
)
def test_stop_reasons(stop_reason: str, finish: str) -> None:
    payload = anthropic_message("x", stop_reason=stop_reason)
    assert complete(Upstream(json_response(payload)), HELLO).done.finish_reason == finish


def overloaded() -> httpx2.Response:
    return json_response(anthropic_error("overloaded_error", "Overloaded"), 529)


def test_an_overloaded_529_is_retried() -> None:
    sleep = FakeSleep()
    upstream = Upstream(overloaded(), json_response(anthropic_message("ok")))
    assert complete(upstream, HELLO, sleep=sleep).text == "ok"
    assert len(sleep.delays) == 1


def test_giving_up_on_529_quotes_anthropics_message() -> None:
    async def scenario() -> ProviderError:
        async with mock_client(Upstream(overloaded(), overloaded())) as client:
            with pytest.raises(ProviderError) as caught:
                await anthropic(client, max_attempts=2).start(HELLO)
            return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailableError)
    assert error.status == 529
    assert "HTTP 529: Overloaded" in str(error)


# -- streams --------------------------------------------------------------------------------


def test_a_streamed_answer_with_usage_and_stop_sequence() -> None:
    body = full_stream("Hel", "lo", stop_reason="stop_sequence", stop_sequence="###")
    upstream = Upstream(sse_response(body))
    events, error = stream_events(upstream)
    assert error is None
    assert upstream.body()["stream"] is True
    assert events == [
        TextDelta("", prompt_usage=Usage(21, 0)),  # message_start's counts, ahead of the text
        TextDelta("Hel"),
        TextDelta("lo"),
        GenerationDone(finish_reason="stop", stop_sequence="###", usage=Usage(21, 7)),
    ]


def test_a_streams_cache_counts_come_from_message_start_and_the_latest_message_delta() -> None:
    start = anthropic_start(input_tokens=10).replace(
        b'"cache_creation_input_tokens": 0, "cache_read_input_tokens": 0',
        b'"cache_creation_input_tokens": 50, "cache_read_input_tokens": 900',
    )
    # Newer API versions repeat every count in message_delta, cumulatively.
    delta = anthropic_event(
        "message_delta",
        {
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 10,
                "cache_creation_input_tokens": 50,
                "cache_read_input_tokens": 1000,
                "output_tokens": 4,
            },
        },
    )
    for ending in (anthropic_end(output_tokens=4), [delta, anthropic_event("message_stop", {})]):
        body = b"".join([start, *anthropic_text("Hi"), *ending])
        events, error = stream_events(Upstream(sse_response(body)))
        assert error is None
        read = 1000 if ending[0] is delta else 900
        # The first event has what message_start said, before the text: 900 cache reads.
        assert events[0] == TextDelta(
            "", prompt_usage=Usage(10 + 50 + 900, 0, cache_read_tokens=900, cache_write_tokens=50)
        )
        assert events[-1] == GenerationDone(
            finish_reason="stop",
            usage=Usage(10 + 50 + read, 4, cache_read_tokens=read, cache_write_tokens=50),
        )


def test_a_stream_stopped_by_max_tokens_is_cut_for_length() -> None:
    upstream = Upstream(sse_response(full_stream("abc", stop_reason="max_tokens")))
    events, error = stream_events(upstream)
    assert error is None
    assert isinstance(events[-1], GenerationDone) and events[-1].finish_reason == "length"


def test_an_error_event_mid_stream_raises_from_the_iterator() -> None:
    chunks = [
        anthropic_start(),
        *anthropic_text("The first half")[:3],
        anthropic_event("error", anthropic_error("overloaded_error", "Overloaded")),
    ]
    events, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert text_of(events) == "The first half"
    assert isinstance(error, ProviderUnavailableError)
    assert "Overloaded" in str(error) and "incomplete" in str(error)


def test_an_error_event_before_any_text_is_retried() -> None:
    broken = b"".join(
        [anthropic_start(), anthropic_event("error", anthropic_error("rate_limit_error", "Slow"))]
    )
    sleep = FakeSleep()
    upstream = Upstream(sse_response(broken), sse_response(full_stream("ok")))
    events, error = stream_events(upstream, sleep=sleep)
    assert error is None and text_of(events) == "ok"
    assert len(upstream.requests) == 2 and len(sleep.delays) == 1


def test_a_rate_limit_error_event_is_typed_as_such() -> None:
    chunks = [
        anthropic_start(),
        *anthropic_text("Hi")[:3],
        anthropic_event("error", anthropic_error("rate_limit_error", "Slow down")),
    ]
    _, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert isinstance(error, ProviderRateLimitedError)


def test_a_rate_limit_error_event_that_opens_the_circuit_leaves_it_rate_limited() -> None:
    chunks = [
        anthropic_start(),
        *anthropic_text("Hi")[:3],
        anthropic_event("error", anthropic_error("rate_limit_error", "Slow down")),
    ]
    upstream = Upstream(sse_response(ChunkStream(chunks)))

    async def scenario() -> CircuitOpenError:
        async with mock_client(upstream) as client:
            provider = anthropic(client, breaker_failures=1)
            generation = await provider.start(HELLO_STREAM)
            with pytest.raises(ProviderRateLimitedError):
                await drain(generation, [])
            with pytest.raises(CircuitOpenError) as caught:
                await provider.start(HELLO_STREAM)
            return caught.value

    skipped = asyncio.run(scenario())
    assert skipped.rate_limited
    assert "rate limiting requests" in str(skipped)
    assert len(upstream.requests) == 1


def test_a_stream_without_message_stop_raises_from_the_iterator() -> None:
    chunks = [anthropic_start(), *anthropic_text("All of it"), *anthropic_end()[:1]]
    events, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert text_of(events) == "All of it"
    assert not any(isinstance(event, GenerationDone) for event in events)
    assert isinstance(error, ProviderProtocolError)
    assert "message_stop" in str(error)


def test_a_malformed_event_mid_stream_raises_from_the_iterator() -> None:
    malformed = b"event: content_block_delta\ndata: {\n\n"
    chunks = [anthropic_start(), *anthropic_text("Hi")[:3], malformed]
    events, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert text_of(events) == "Hi"
    assert isinstance(error, ProviderProtocolError)
