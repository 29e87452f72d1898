from __future__ import annotations

import asyncio
import json
import random
import string
from typing import Any

import httpx2
import pytest
from cloud_fakes import (
    OPENAI_KEY,
    SEED,
    ChunkStream,
    FakeClock,
    FakeSleep,
    Upstream,
    chat,
    drain,
    json_response,
    mock_client,
    openai,
    openai_chunk,
    openai_completion,
    openai_error,
    openai_stream,
    policy,
    sse_response,
)
from pydantic import SecretStr

from hybrid.backend import Completion
from hybrid.cloud.openai_provider import OpenAIProvider
from hybrid.errors import (
    CircuitOpenError,
    ConfigError,
    ProviderAuthError,
    ProviderError,
    ProviderProtocolError,
    ProviderRateLimitedError,
    ProviderRejectedError,
    ProviderTimeoutError,
    ProviderUnavailableError,
)
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    ResponseFormat,
    SamplingParams,
    TextDelta,
    Usage,
)
from hybrid.routing.privacy import PrivacyScanner

HELLO = chat(("user", "Say hello"))
HELLO_STREAM = chat(("user", "Say hello"), stream=True)


def complete(upstream: Upstream, request: GenerationRequest, **kwargs: Any) -> Completion:
    async def scenario() -> Completion:
        async with mock_client(upstream) as client:
            return await openai(client, **kwargs).complete(request)

    return asyncio.run(scenario())


def failure(upstream: Upstream, request: GenerationRequest, **kwargs: Any) -> ProviderError:
    async def scenario() -> ProviderError:
        async with mock_client(upstream) as client:
            with pytest.raises(ProviderError) as caught:
                await openai(client, **kwargs).start(request)
            return caught.value

    return asyncio.run(scenario())


def stream_events(
    upstream: Upstream, request: GenerationRequest = HELLO_STREAM, **kwargs: Any
) -> tuple[list[GenerationEvent], ProviderError | None]:
    """What a client of a streamed answer receives, and the error that ended it, if any."""

    async def scenario() -> tuple[list[GenerationEvent], ProviderError | None]:
        events: list[GenerationEvent] = []
        async with mock_client(upstream) as client:
            generation = await openai(client, **kwargs).start(request)
            try:
                await drain(generation, events)
            except ProviderError as exc:
                return events, exc
        return events, None

    return asyncio.run(scenario())


def text_of(events: list[GenerationEvent]) -> str:
    return "".join(event.text for event in events if isinstance(event, TextDelta))


# -- request bodies -------------------------------------------------------------------------


def test_openai_request_body_and_headers() -> None:
    upstream = Upstream(json_response(openai_completion("{}")))
    request = chat(
        ("developer", "Be terse."),
        ("user", "Give me JSON"),
        model="gpt-4.1",
        max_tokens=50,
        temperature=0.2,
        top_p=0.9,
        stop=("END",),
        seed=7,
        top_logprobs=2,
        response_format=ResponseFormat("json_schema", {"type": "object"}),
    )
    complete(upstream, request)
    sent = upstream.requests[0]
    assert sent.method == "POST"
    assert str(sent.url) == "https://api.openai.com/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert upstream.body() == {
        "model": "gpt-4.1",
        "messages": [
            {"role": "developer", "content": "Be terse."},
            {"role": "user", "content": "Give me JSON"},
        ],
        "max_completion_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ["END"],
        "seed": 7,
        "logprobs": True,
        "top_logprobs": 2,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": {"type": "object"}},
        },
    }


def test_a_compatible_provider_gets_max_tokens_system_role_and_no_key() -> None:
    upstream = Upstream(json_response(openai_completion("hi")))
    request = chat(
        ("developer", "Be terse."),
        ("user", "hi"),
        max_tokens=10,
        response_format=ResponseFormat("json_object"),
    )
    complete(upstream, request, name="ollama", base_url="http://127.0.0.1:11434/v1/", key=None)
    sent = upstream.requests[0]
    assert str(sent.url) == "http://127.0.0.1:11434/v1/chat/completions"
    assert "authorization" not in sent.headers
    assert upstream.body() == {
        "model": "gpt-4.1-mini",  # the provider's first model: the request named none
        "messages": [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "hi"},
        ],
        "max_tokens": 10,
        "response_format": {"type": "json_object"},
    }


def test_a_raw_prompt_goes_to_the_legacy_completions_endpoint() -> None:
    legacy = {
        "id": "cmpl-1",
        "object": "text_completion",
        "created": 1741569952,
        "model": "gpt-3.5-turbo-instruct",
        "choices": [
            {
                "text": " there",
                "index": 0,
                "finish_reason": "length",
                "logprobs": {
                    "tokens": [" there"],
                    "token_logprobs": [-0.25],
                    "top_logprobs": [{" there": -0.25, " world": -1.5}],
                    "text_offset": [5],
                },
            }
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }
    upstream = Upstream(json_response(legacy))
    request = GenerationRequest(
        request_id="r",
        prompt="Hello",
        model="gpt-3.5-turbo-instruct",
        params=SamplingParams(max_tokens=1, top_logprobs=2),
    )
    completion = complete(upstream, request)
    assert str(upstream.requests[0].url) == "https://api.openai.com/v1/completions"
    assert upstream.body() == {
        "model": "gpt-3.5-turbo-instruct",
        "prompt": "Hello",
        "max_tokens": 1,
        "logprobs": 2,
    }
    assert completion.text == " there"
    assert completion.done.finish_reason == "length"
    assert completion.logprobs[0].logprob == -0.25
    assert [top.token for top in completion.logprobs[0].top] == [" there", " world"]


# -- whole answers --------------------------------------------------------------------------


def test_a_non_streamed_answer_is_read_whole_then_replayed() -> None:
    stream = ChunkStream([httpx2.Response(200, json=openai_completion("Hello!")).content])
    upstream = Upstream(httpx2.Response(200, stream=stream))

    async def scenario() -> list[GenerationEvent]:
        async with mock_client(upstream) as client:
            generation = await openai(client).start(HELLO)
            assert stream.closed, "the upstream response is closed before the first event"
            events: list[GenerationEvent] = []
            await drain(generation, events)
            return events

    assert asyncio.run(scenario()) == [
        TextDelta("Hello!"),
        GenerationDone(finish_reason="stop", usage=Usage(12, 3)),
    ]


def test_logprobs_of_a_chat_answer() -> None:
    payload = openai_completion("Hi")
    payload["choices"][0]["logprobs"] = {
        "content": [
            {
                "token": "Hi",
                "logprob": -0.01,
                "bytes": [72, 105],
                "top_logprobs": [{"token": "Hi", "logprob": -0.01, "bytes": [72, 105]}],
            }
        ],
        "refusal": None,
    }
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.logprobs[0].token == "Hi"
    assert completion.logprobs[0].bytes == (72, 105)
    assert completion.logprobs[0].top[0].logprob == -0.01


def test_a_refusal_is_the_refusal_with_the_providers_finish_reason_and_no_text() -> None:
    payload = openai_completion("")
    payload["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.text == ""
    assert completion.done.refusal == "I can't help with that."
    assert completion.done.finish_reason == "stop"


def test_cached_prompt_tokens_are_reported_as_part_of_the_prompt() -> None:
    payload = openai_completion("hi", prompt_tokens=2000)
    payload["usage"]["prompt_tokens_details"]["cached_tokens"] = 1536
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.done.usage == Usage(2000, 3, cache_read_tokens=1536)


def test_an_answer_without_usage_reports_zero_tokens() -> None:
    payload = openai_completion("hi")
    del payload["usage"]
    completion = complete(Upstream(json_response(payload)), HELLO)
    assert completion.done.usage == Usage(0, 0)


def test_a_body_that_is_not_json_is_a_protocol_error_and_retried() -> None:
    upstream = Upstream(
        httpx2.Response(200, text="<html>captive portal</html>"),
        json_response(openai_completion("ok")),
    )
    assert complete(upstream, HELLO).text == "ok"
    error = failure(Upstream(httpx2.Response(200, text="nope")), HELLO, max_attempts=1)
    assert isinstance(error, ProviderProtocolError)
    assert "not JSON" in str(error)


# -- streamed answers -----------------------------------------------------------------------


def test_a_streamed_answer_yields_text_then_usage_and_finish() -> None:
    upstream = Upstream(sse_response(b"".join(openai_stream("Hel", "lo", "!", finish="length"))))
    events, error = stream_events(upstream)
    assert error is None
    assert upstream.body()["stream"] is True
    assert upstream.body()["stream_options"] == {"include_usage": True}
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo", "!"]
    assert events[-1] == GenerationDone(finish_reason="length", usage=Usage(12, 3))


def test_a_streams_final_usage_chunk_reports_its_cached_prompt_tokens() -> None:
    events = openai_stream("Hel", "lo", usage=None)
    usage = {
        "prompt_tokens": 2000,
        "completion_tokens": 2,
        "total_tokens": 2002,
        "prompt_tokens_details": {"cached_tokens": 1536, "audio_tokens": 0},
    }
    events.insert(-1, openai_chunk(None, usage=usage))
    stream_result, error = stream_events(Upstream(sse_response(b"".join(events))))
    assert error is None
    assert stream_result[-1] == GenerationDone(
        finish_reason="stop", usage=Usage(2000, 2, cache_read_tokens=1536)
    )


def test_a_stream_cut_into_single_bytes_reads_the_same() -> None:
    body = b"".join(openai_stream("Hel", "lo"))
    upstream = Upstream(sse_response(ChunkStream([body[i : i + 1] for i in range(len(body))])))
    events, error = stream_events(upstream)
    assert error is None
    assert text_of(events) == "Hello"
    assert isinstance(events[-1], GenerationDone)


def test_a_stream_that_closes_after_its_finish_reason_without_done_is_complete() -> None:
    upstream = Upstream(sse_response(b"".join(openai_stream("ok", usage=None, done=False))))
    events, error = stream_events(upstream)
    assert error is None
    assert events[-1] == GenerationDone(finish_reason="stop", usage=Usage(0, 0))


def test_a_stream_that_ends_without_its_end_raises_from_the_iterator() -> None:
    body = b"".join(openai_stream("The answer is", " forty", usage=None, done=False)[:-1])
    events, error = stream_events(Upstream(sse_response(body)))
    assert text_of(events) == "The answer is forty"
    assert not any(isinstance(e, GenerationDone) for e in events)
    assert isinstance(error, ProviderProtocolError)
    assert "incomplete" in str(error)


def test_a_malformed_event_mid_stream_raises_from_the_iterator() -> None:
    chunks = [*openai_stream("Hello")[:2], b'data: {"choices": [{"delta": \n\n']
    events, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert text_of(events) == "Hello"
    assert isinstance(error, ProviderProtocolError)


def test_an_error_event_mid_stream_raises_from_the_iterator_and_counts_against_the_provider() -> (
    None
):
    chunks = [
        *openai_stream("Hello")[:2],
        b'data: {"error": {"message": "The server had an error", "type": "server_error"}}\n\n',
    ]
    upstream = Upstream(sse_response(ChunkStream(chunks)))

    async def scenario() -> tuple[list[GenerationEvent], ProviderError, int]:
        events: list[GenerationEvent] = []
        async with mock_client(upstream) as client:
            provider = openai(client)
            generation = await provider.start(HELLO_STREAM)
            with pytest.raises(ProviderError) as caught:
                await drain(generation, events)
            return events, caught.value, provider.breaker.consecutive_failures

    events, error, failures = asyncio.run(scenario())
    assert text_of(events) == "Hello"
    assert isinstance(error, ProviderUnavailableError)
    assert "The server had an error" in str(error)
    assert failures == 1


def test_an_error_event_before_any_output_is_retried() -> None:
    broken = [openai_stream()[0], b'data: {"error": {"message": "overloaded"}}\n\n']
    upstream = Upstream(
        sse_response(ChunkStream(broken)), sse_response(b"".join(openai_stream("fine")))
    )
    events, error = stream_events(upstream)
    assert error is None
    assert text_of(events) == "fine"
    assert len(upstream.requests) == 2


def test_closing_a_stream_early_closes_the_upstream_response() -> None:
    stream = ChunkStream(openai_stream("one", "two", "three"))
    upstream = Upstream(sse_response(stream))

    async def scenario() -> tuple[bool, bool, dict[str, Any]]:
        async with mock_client(upstream) as client:
            provider = openai(client)
            generation = await provider.start(HELLO_STREAM)
            async for event in generation:
                assert event == TextDelta("one")
                break
            before = stream.closed
            await generation.aclose()
            return before, stream.closed, provider.breaker.snapshot()

    before, after, circuit = asyncio.run(scenario())
    assert not before and after
    assert circuit["consecutive_failures"] == 0, "a client going away says nothing about health"


# -- retries --------------------------------------------------------------------------------


def test_429_waits_retry_after_ms_then_succeeds() -> None:
    sleep = FakeSleep()
    limited = json_response(
        openai_error("Rate limit reached", "requests"),
        429,
        **{"retry-after-ms": "250", "retry-after": "1"},
    )
    upstream = Upstream(limited, json_response(openai_completion("ok")))
    assert complete(upstream, HELLO, sleep=sleep).text == "ok"
    assert sleep.delays == [0.25]


def test_429_waits_retry_after_seconds() -> None:
    sleep = FakeSleep()
    limited = json_response(openai_error("slow down"), 429, **{"Retry-After": "2"})
    upstream = Upstream(limited, json_response(openai_completion("ok")))
    assert complete(upstream, HELLO, sleep=sleep).text == "ok"
    assert sleep.delays == [2.0]


def test_a_5xx_is_retried_after_a_jittered_backoff() -> None:
    sleep = FakeSleep()
    upstream = Upstream(
        json_response(openai_error("The server had an error", "server_error"), 500),
        json_response(openai_error("Bad gateway", "server_error"), 502),
        json_response(openai_completion("ok")),
    )
    assert complete(upstream, HELLO, sleep=sleep, backoff_base_s=1.0).text == "ok"
    replay = random.Random(SEED)
    assert sleep.delays == [replay.uniform(0, 1.0), replay.uniform(0, 2.0)]


def test_a_refused_connection_is_retried() -> None:
    sleep = FakeSleep()
    upstream = Upstream(
        httpx2.ConnectError("[Errno 111] Connection refused"),
        json_response(openai_completion("ok")),
    )
    assert complete(upstream, HELLO, sleep=sleep).text == "ok"
    assert len(sleep.delays) == 1


def test_every_attempt_failing_raises_the_last_error_and_counts_once() -> None:
    sleep = FakeSleep()
    upstream = Upstream(*(json_response(openai_error("boom"), 503) for _ in range(3)))

    async def scenario() -> tuple[ProviderError, int]:
        async with mock_client(upstream) as client:
            provider = openai(client, sleep=sleep)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, provider.breaker.consecutive_failures

    error, failures = asyncio.run(scenario())
    assert isinstance(error, ProviderUnavailableError)
    assert error.status == 503 and "boom" in str(error)
    assert len(upstream.requests) == 3 and len(sleep.delays) == 2
    assert failures == 1


def test_401_is_not_retried_and_does_not_count_against_the_provider() -> None:
    sleep = FakeSleep()
    message = "Incorrect API key provided: sk-test-****cdef."
    upstream = Upstream(json_response(openai_error(message), 401))

    async def scenario() -> tuple[ProviderError, int]:
        async with mock_client(upstream) as client:
            provider = openai(client, sleep=sleep)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return caught.value, provider.breaker.consecutive_failures

    error, failures = asyncio.run(scenario())
    assert isinstance(error, ProviderAuthError)
    assert message in str(error)
    assert len(upstream.requests) == 1 and sleep.delays == []
    assert failures == 0


def test_400_is_not_retried_and_carries_the_providers_message() -> None:
    message = "Invalid value for 'temperature': expected a number <= 2."
    upstream = Upstream(json_response(openai_error(message), 400))
    error = failure(upstream, HELLO)
    assert isinstance(error, ProviderRejectedError)
    assert str(error) == f"openai: {message}"
    assert error.status == 400
    assert len(upstream.requests) == 1


def test_a_retry_after_longer_than_the_limit_gives_up_at_once() -> None:
    sleep = FakeSleep()
    upstream = Upstream(json_response(openai_error("slow down"), 429, **{"retry-after": "60"}))
    error = failure(upstream, HELLO, sleep=sleep, max_retry_after_s=20.0)
    assert isinstance(error, ProviderRateLimitedError)
    assert error.retry_after == 60.0
    assert sleep.delays == [] and len(upstream.requests) == 1


def test_x_should_retry_false_is_honoured() -> None:
    upstream = Upstream(json_response(openai_error("nope"), 503, **{"x-should-retry": "false"}))
    error = failure(upstream, HELLO)
    assert isinstance(error, ProviderUnavailableError)
    assert not error.retryable
    assert len(upstream.requests) == 1


# -- timeouts -------------------------------------------------------------------------------


def test_no_headers_within_the_whole_answer_timeout() -> None:
    async def never(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    sleep = FakeSleep()
    upstream = Upstream(never, never)
    error = failure(upstream, HELLO, sleep=sleep, whole_answer_timeout_s=0.05, max_attempts=2)
    assert isinstance(error, ProviderTimeoutError)
    assert "whole_answer_timeout_s" in str(error)
    assert len(upstream.requests) == 2 and len(sleep.delays) == 1


def test_no_stream_within_the_first_byte_timeout() -> None:
    async def never(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(30)
        raise AssertionError("unreachable")

    sleep = FakeSleep()
    upstream = Upstream(never, never)
    error = failure(upstream, HELLO_STREAM, sleep=sleep, first_byte_timeout_s=0.05, max_attempts=2)
    assert isinstance(error, ProviderTimeoutError)
    assert "first-byte" in str(error)
    assert len(upstream.requests) == 2 and len(sleep.delays) == 1


def test_headers_but_no_first_event_is_a_first_byte_timeout_and_retried() -> None:
    stalled = ChunkStream([b": keep-alive\n\n"], stall_before=1)
    upstream = Upstream(sse_response(stalled), sse_response(b"".join(openai_stream("ok"))))
    events, error = stream_events(upstream, first_byte_timeout_s=0.05, idle_timeout_s=10)
    assert error is None
    assert text_of(events) == "ok"
    assert stalled.closed


def test_a_stall_mid_stream_is_an_idle_timeout_from_the_iterator() -> None:
    chunks = openai_stream("Hello", " there")
    stalled = ChunkStream(chunks, stall_before=2)
    events, error = stream_events(Upstream(sse_response(stalled)), idle_timeout_s=0.05)
    assert text_of(events) == "Hello"
    assert isinstance(error, ProviderTimeoutError)
    assert "incomplete" in str(error)
    assert stalled.closed


def test_keep_alive_comments_keep_a_slow_stream_alive() -> None:
    chunks = openai_stream("Hello", " there")
    keep_alive = [b": keep-alive\n\n"] * 4
    chunks[2:2] = keep_alive
    # Each gap is under the idle timeout; together they are well over it.
    paced = ChunkStream(chunks, pauses={2: 0.12, 3: 0.12, 4: 0.12, 5: 0.12})
    events, error = stream_events(Upstream(sse_response(paced)), idle_timeout_s=0.3)
    assert error is None
    assert text_of(events) == "Hello there"


def test_a_stalled_body_of_a_non_streamed_answer_is_an_idle_timeout() -> None:
    stalled = ChunkStream([b'{"choices": '], stall_before=1)
    upstream = Upstream(httpx2.Response(200, stream=stalled))
    error = failure(upstream, HELLO, idle_timeout_s=0.05, max_attempts=1)
    assert isinstance(error, ProviderTimeoutError)
    assert "idle" in str(error)


# -- circuit breaker ------------------------------------------------------------------------


def test_the_circuit_opens_skips_the_provider_then_probes_and_closes() -> None:
    clock = FakeClock()
    upstream = Upstream(
        json_response(openai_error("down"), 503),
        json_response(openai_error("down"), 503),
        sse_response(b"".join(openai_stream("back"))),
    )

    async def scenario() -> None:
        async with mock_client(upstream) as client:
            provider = openai(
                client, clock=clock, max_attempts=1, breaker_failures=2, breaker_reset_s=30
            )
            for _ in range(2):
                with pytest.raises(ProviderUnavailableError):
                    await provider.start(HELLO)
            assert provider.health()["circuit"]["state"] == "open"
            with pytest.raises(CircuitOpenError) as caught:
                await provider.start(HELLO)
            assert caught.value.retry_after == 30.0
            assert not caught.value.rate_limited, "5xx opened it"
            assert len(upstream.requests) == 2, "an open circuit sends nothing"

            clock.now += 30
            probe = await provider.start(HELLO_STREAM)
            with pytest.raises(CircuitOpenError):
                await provider.start(HELLO)  # one probe at a time
            events: list[GenerationEvent] = []
            await drain(probe, events)
            assert text_of(events) == "back"
            assert provider.breaker.snapshot() == {
                "state": "closed",
                "consecutive_failures": 0,
                "retry_in_s": None,
                "rate_limited": False,
            }

    asyncio.run(scenario())


def test_a_circuit_rate_limits_opened_is_skipped_as_rate_limited_with_the_wait() -> None:
    clock = FakeClock()
    limited = json_response(openai_error("slow down"), 429, **{"retry-after": "60"})
    upstream = Upstream(limited, limited)

    async def scenario() -> CircuitOpenError:
        async with mock_client(upstream) as client:
            provider = openai(client, clock=clock, max_attempts=1, breaker_failures=2)
            for _ in range(2):
                with pytest.raises(ProviderRateLimitedError):
                    await provider.start(HELLO)
            clock.now += 15
            with pytest.raises(CircuitOpenError) as caught:
                await provider.start(HELLO)
            return caught.value

    skipped = asyncio.run(scenario())
    assert skipped.rate_limited
    assert skipped.retry_after == 45.0
    assert str(skipped) == (
        "openai: skipped: it is rate limiting requests (HTTP 429), so hybrid leaves it alone "
        "for another 45 s; retry then or use another model"
    )
    assert len(upstream.requests) == 2


def test_a_failed_probe_reopens_the_circuit() -> None:
    clock = FakeClock()
    upstream = Upstream(
        json_response(openai_error("down"), 503), json_response(openai_error("down"), 503)
    )

    async def scenario() -> None:
        async with mock_client(upstream) as client:
            provider = openai(client, clock=clock, max_attempts=1, breaker_failures=1)
            with pytest.raises(ProviderUnavailableError):
                await provider.start(HELLO)
            clock.now += 30
            with pytest.raises(ProviderUnavailableError):
                await provider.start(HELLO)
            with pytest.raises(CircuitOpenError):
                await provider.start(HELLO)

    asyncio.run(scenario())
    assert len(upstream.requests) == 2


# -- keys -----------------------------------------------------------------------------------


def test_the_key_travels_only_in_its_header() -> None:
    echo = openai_error(f"Key {OPENAI_KEY} is revoked")
    upstream = Upstream(json_response(echo, 401))

    async def scenario() -> tuple[OpenAIProvider, ProviderError]:
        async with mock_client(upstream) as client:
            provider = openai(client)
            with pytest.raises(ProviderError) as caught:
                await provider.start(HELLO)
            return provider, caught.value

    provider, error = asyncio.run(scenario())
    sent = upstream.requests[0]
    assert OPENAI_KEY not in str(sent.url)
    assert OPENAI_KEY.encode() not in sent.content
    assert [name for name, value in sent.headers.items() if OPENAI_KEY in value] == [
        "authorization"
    ]
    assert OPENAI_KEY not in str(error) and "[key]" in str(error)
    assert OPENAI_KEY not in repr(provider)
    assert OPENAI_KEY not in str(provider.health())


def test_keys_an_upstream_echoes_are_redacted_from_its_errors_in_json_and_sse() -> None:
    rng = random.Random(SEED)
    token = "ghp_" + "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    said = f"Key {OPENAI_KEY} is revoked; the prompt held {token}"
    error_event = json.dumps({"error": {"message": said, "type": "server_error"}}).encode()
    broken_off = b"".join(openai_stream("Hel")[:2]) + b"data: " + error_event + b"\n\n"
    upstream = Upstream(json_response(openai_error(said), 400), sse_response(broken_off))

    async def scenario() -> list[BaseException]:
        async with mock_client(upstream) as client:
            provider = OpenAIProvider(
                name="openai",
                base_url="https://api.openai.com/v1",
                api_key=SecretStr(OPENAI_KEY),
                models=("gpt-4.1-mini",),
                client=client,
                policy=policy(max_attempts=1),
                redact=PrivacyScanner(detectors=["api_key"]).redact,
            )
            with pytest.raises(ProviderRejectedError) as rejected:
                await provider.start(HELLO)
            streamed: list[GenerationEvent] = []
            with pytest.raises(ProviderError) as broken:
                await drain(await provider.start(HELLO_STREAM), streamed)
            return [rejected.value, broken.value]

    for error in asyncio.run(scenario()):
        assert OPENAI_KEY not in str(error) and token not in str(error)
        assert "[key]" in str(error) and "[redacted:api_key:github]" in str(error)


def test_a_redirect_is_not_followed_so_the_key_stays_home() -> None:
    redirect = httpx2.Response(307, headers={"location": "https://attacker.example/v1/chat"})
    upstream = Upstream(redirect)

    async def scenario() -> ProviderError:
        transport = httpx2.MockTransport(upstream.handler)
        async with httpx2.AsyncClient(transport=transport, follow_redirects=True) as client:
            with pytest.raises(ProviderError) as caught:
                await openai(client).start(HELLO)
            return caught.value

    error = asyncio.run(scenario())
    assert isinstance(error, ProviderProtocolError)
    assert [request.url.host for request in upstream.requests] == ["api.openai.com"]


def test_a_key_that_cannot_be_a_header_is_refused_without_quoting_it() -> None:
    async def scenario() -> None:
        async with httpx2.AsyncClient() as client:
            with pytest.raises(ConfigError) as caught:
                OpenAIProvider(
                    name="openai",
                    base_url="https://api.openai.com/v1",
                    api_key=SecretStr("sk-abc\ndef"),
                    models=(),
                    client=client,
                    policy=policy(),
                )
            assert "sk-abc" not in str(caught.value)

    asyncio.run(scenario())


def test_a_mid_stream_chunk_with_a_stray_second_choice_is_ignored() -> None:
    extra = b'data: {"choices": [{"index": 1, "delta": {"content": "other"}}]}\n\n'
    chunks = openai_stream("mine")
    chunks.insert(2, extra)
    chunks.insert(2, openai_chunk({"content": ""}))
    events, error = stream_events(Upstream(sse_response(ChunkStream(chunks))))
    assert error is None
    assert text_of(events) == "mine"


def test_a_server_that_ignores_stream_and_sends_json_still_answers() -> None:
    events, error = stream_events(Upstream(json_response(openai_completion("whole"))))
    assert error is None
    assert events == [TextDelta("whole"), GenerationDone(finish_reason="stop", usage=Usage(12, 3))]
