"""The fake cloud speaks OpenAI's and Anthropic's wire formats exactly: the official SDKs parse
its answers and raise their own exception types for each of its faults."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from fake_cloud import FakeCloud, Fault, PromptCache, closed_port
from openai.types.chat import ChatCompletionMessageParam

REPLY = "Hello from the fake cloud."
WORDS = ["Hello", " from", " the", " fake", " cloud."]
CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "say hello to me"}]
MESSAGES: list[MessageParam] = [{"role": "user", "content": "say hello to me"}]


def chat_stream_text(client: openai.OpenAI) -> list[str]:
    """The text pieces of one streamed chat answer."""
    pieces = []
    with client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT, stream=True) as stream:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                pieces.append(chunk.choices[0].delta.content)
    return pieces


# --- normal answers --------------------------------------------------------------------------


def test_openai_chat_answers_with_the_reply_and_word_usage(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT)

    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4.1-mini"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == REPLY
    assert completion.choices[0].message.refusal is None
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (4, 5)
    assert completion.usage.total_tokens == 9


def test_openai_chat_stops_at_max_tokens_with_length(openai_client: openai.OpenAI) -> None:
    completion = openai_client.chat.completions.create(
        model="gpt-4.1-mini", messages=CHAT, max_completion_tokens=2
    )

    assert completion.choices[0].message.content == "Hello from"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 2


def test_openai_chat_stream_is_openais_chunk_sequence(openai_client: openai.OpenAI) -> None:
    with openai_client.chat.completions.create(
        model="gpt-4.1", messages=CHAT, stream=True, stream_options={"include_usage": True}
    ) as stream:
        chunks = list(stream)

    first, *middle, last_choice, usage_chunk = chunks
    assert first.object == "chat.completion.chunk"
    assert first.choices[0].delta.role == "assistant"
    assert [chunk.choices[0].delta.content for chunk in middle] == WORDS
    assert last_choice.choices[0].finish_reason == "stop"
    assert last_choice.choices[0].delta.content is None
    assert usage_chunk.choices == []
    assert usage_chunk.usage is not None
    assert (usage_chunk.usage.prompt_tokens, usage_chunk.usage.completion_tokens) == (4, 5)
    assert len({chunk.id for chunk in chunks}) == 1


def test_openai_stream_has_no_usage_chunk_unless_asked(openai_client: openai.OpenAI) -> None:
    with openai_client.chat.completions.create(
        model="gpt-4.1", messages=CHAT, stream=True
    ) as stream:
        chunks = list(stream)

    assert all(chunk.choices and chunk.usage is None for chunk in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_openai_completions_answer_and_stream(openai_client: openai.OpenAI) -> None:
    completion = openai_client.completions.create(model="gpt-4.1-mini", prompt="once upon")
    with openai_client.completions.create(
        model="gpt-4.1-mini", prompt="once upon", stream=True, max_tokens=3
    ) as stream:
        chunks = list(stream)

    assert completion.object == "text_completion"
    assert completion.choices[0].text == REPLY
    assert completion.usage is not None and completion.usage.prompt_tokens == 2
    assert "".join(chunk.choices[0].text for chunk in chunks) == "Hello from the"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_openai_models_lists_the_configured_models() -> None:
    with (
        FakeCloud(models=("gpt-a", "gpt-b")) as fake,
        openai.OpenAI(api_key="sk-fake-openai", base_url=fake.base_url + "/v1") as client,
    ):
        assert [model.id for model in client.models.list()] == ["gpt-a", "gpt-b"]


def test_anthropic_message_answers_with_the_reply_and_word_usage(
    anthropic_client: anthropic.Anthropic,
) -> None:
    message = anthropic_client.messages.create(
        model="claude-x", max_tokens=100, system="be brief", messages=MESSAGES
    )

    assert message.id.startswith("msg_")
    assert message.model == "claude-x"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (6, 5)


@pytest.mark.parametrize(
    ("max_tokens", "stop_sequences", "text", "stop_reason", "stop_sequence"),
    [
        (3, [], "Hello from the", "max_tokens", None),
        (100, ["END", "fake"], "Hello from the ", "stop_sequence", "fake"),
        (2, ["fake"], "Hello from", "max_tokens", None),
    ],
)
def test_anthropic_message_stops_at_max_tokens_or_a_stop_sequence(
    anthropic_client: anthropic.Anthropic,
    max_tokens: int,
    stop_sequences: list[str],
    text: str,
    stop_reason: str,
    stop_sequence: str | None,
) -> None:
    message = anthropic_client.messages.create(
        model="claude-x", messages=MESSAGES, max_tokens=max_tokens, stop_sequences=stop_sequences
    )

    assert message.content[0].type == "text" and message.content[0].text == text
    assert (message.stop_reason, message.stop_sequence) == (stop_reason, stop_sequence)
    assert message.usage.output_tokens == len(text.split())


def test_anthropic_stream_is_anthropics_event_sequence(
    anthropic_client: anthropic.Anthropic,
) -> None:
    with anthropic_client.messages.create(
        model="claude-x", max_tokens=100, messages=MESSAGES, stream=True
    ) as stream:
        events = list(stream)
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=100, messages=MESSAGES
    ) as helper:
        text = "".join(helper.text_stream)
        final = helper.get_final_message()

    assert [event.type for event in events] == [
        "message_start",
        "content_block_start",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and start.message.usage.input_tokens == 4
    assert delta.type == "message_delta" and delta.delta.stop_reason == "end_turn"
    assert delta.usage.output_tokens == 5
    assert text == REPLY
    assert final.content[0].type == "text" and final.content[0].text == REPLY
    assert (final.usage.input_tokens, final.usage.output_tokens) == (4, 5)


def test_a_prompt_cache_is_reported_in_each_apis_own_usage_fields(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.prompt_cache = PromptCache(read=1024, write=200)

    whole = openai_client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT)
    with openai_client.chat.completions.create(
        model="gpt-4.1-mini", messages=CHAT, stream=True, stream_options={"include_usage": True}
    ) as stream:
        streamed = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
    for usage in (whole.usage, streamed):
        # OpenAI counts cached tokens inside prompt_tokens and reports no cache writes.
        assert usage is not None and usage.prompt_tokens == 4 + 1024 + 200
        assert usage.prompt_tokens_details is not None
        assert usage.prompt_tokens_details.cached_tokens == 1024

    message = anthropic_client.messages.create(model="claude-x", max_tokens=100, messages=MESSAGES)
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=100, messages=MESSAGES
    ) as helper:
        final = helper.get_final_message()
    for reported in (message.usage, final.usage):
        # Anthropic keeps input_tokens for the rest of the prompt and reports both apart.
        assert reported.input_tokens == 4
        assert reported.cache_read_input_tokens == 1024
        assert reported.cache_creation_input_tokens == 200

    cloud.reset()
    plain = openai_client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT)
    assert plain.usage is not None and plain.usage.prompt_tokens == 4


def test_a_refusal_is_openais_refusal_whole_and_streamed(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.refusal = "I can't help with that."

    whole = openai_client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT)
    with openai_client.chat.completions.stream(model="gpt-4.1-mini", messages=CHAT) as stream:
        streamed = stream.get_final_completion()
    for completion in (whole, streamed):
        message = completion.choices[0].message
        assert (message.content, message.refusal) == (None, "I can't help with that.")
        assert completion.choices[0].finish_reason == "stop"

    cloud.reset()
    plain = openai_client.chat.completions.create(model="gpt-4.1-mini", messages=CHAT)
    assert plain.choices[0].message.content == REPLY


@pytest.mark.parametrize(
    ("messages", "problem"),
    [
        ([], "at least one message is required"),
        (
            [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": ""},
                {"role": "user", "content": "again"},
            ],
            "messages.1: all messages must have non-empty content",
        ),
        ([{"role": "user", "content": [{"type": "text", "text": ""}]}], "must be non-empty"),
        (
            [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": str(n), "cache_control": {"type": "ephemeral"}}
                        for n in range(5)
                    ],
                }
            ],
            "A maximum of 4 blocks with cache_control may be provided. Found 5.",
        ),
    ],
)
def test_anthropic_refuses_the_turns_anthropic_refuses(
    anthropic_client: anthropic.Anthropic, messages: list[MessageParam], problem: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=messages)
    assert problem in str(caught.value)


def test_anthropic_takes_a_final_empty_assistant_turn_as_a_prefill(
    anthropic_client: anthropic.Anthropic,
) -> None:
    prefill: list[MessageParam] = [*MESSAGES, {"role": "assistant", "content": ""}]
    message = anthropic_client.messages.create(model="claude-x", max_tokens=10, messages=prefill)
    assert message.stop_reason == "end_turn"


def test_streams_are_chunked_sse_with_pings_and_done(cloud: FakeCloud) -> None:
    anthropic_headers = {"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"}
    body = {"model": "m", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    with httpx.Client(base_url=cloud.base_url, timeout=5) as client:
        with client.stream("POST", "/v1/messages", json=body, headers=anthropic_headers) as resp:
            anthropic_lines = list(resp.iter_lines())
            anthropic_response = resp
        openai_body = {"model": "m", "messages": CHAT, "stream": True}
        auth = {"authorization": "Bearer sk-fake-openai"}
        with client.stream("POST", "/v1/chat/completions", json=openai_body, headers=auth) as resp:
            openai_lines = list(resp.iter_lines())
            openai_response = resp

    for response in (anthropic_response, openai_response):
        assert response.headers["transfer-encoding"] == "chunked"
        assert response.headers["content-type"].startswith("text/event-stream")
    assert anthropic_response.headers["request-id"].startswith("req_")
    assert openai_response.headers["x-request-id"].startswith("req_")
    names = [line.removeprefix("event: ") for line in anthropic_lines if line.startswith("event:")]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert openai_lines[-2:] == ["data: [DONE]", ""]
    assert all(line.startswith("data: ") for line in openai_lines if line)


def test_connections_are_kept_alive_between_requests(cloud: FakeCloud) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", cloud.port, timeout=5)
    statuses, sockets = [], []
    for _ in range(2):
        connection.request("GET", "/v1/models", headers={"authorization": "Bearer sk-fake-openai"})
        response = connection.getresponse()
        response.read()
        statuses.append(response.status)
        sockets.append(connection.sock)
    connection.close()

    assert statuses == [200, 200]
    assert sockets[0] is not None and sockets[0] is sockets[1]


def test_concurrent_async_streams_each_get_the_whole_reply(cloud: FakeCloud) -> None:
    async def both() -> list[str]:
        async with openai.AsyncOpenAI(
            api_key="sk-fake-openai", base_url=cloud.base_url + "/v1", max_retries=0, timeout=5
        ) as client:

            async def one() -> str:
                stream = await client.chat.completions.create(
                    model="gpt-4.1", messages=CHAT, stream=True
                )
                async with stream:
                    return "".join([c.choices[0].delta.content or "" async for c in stream])

            return list(await asyncio.gather(one(), one()))

    assert asyncio.run(both()) == [REPLY, REPLY]


def test_reply_is_settable_and_requests_are_recorded(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.reply = "Two words"
    completion = openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    anthropic_client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)

    assert completion.choices[0].message.content == "Two words"
    first, second = cloud.requests
    assert (first.api, first.path) == ("openai", "/v1/chat/completions")
    assert first.headers["authorization"] == "Bearer sk-fake-openai"
    assert first.body == {"model": "gpt-4.1", "messages": CHAT}
    assert (second.api, second.path) == ("anthropic", "/v1/messages")
    assert second.body is not None and second.body["max_tokens"] == 5
    assert "anthropic-version" in second.headers
    assert first.at <= second.at


# --- requests the real APIs refuse -----------------------------------------------------------


def test_openai_wrong_key_is_401_invalid_api_key(cloud: FakeCloud) -> None:
    with (
        openai.OpenAI(
            api_key="sk-wrong-key-1234", base_url=cloud.base_url + "/v1", max_retries=0
        ) as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.chat.completions.create(model="gpt-4.1", messages=CHAT)

    assert caught.value.response.json() == {
        "error": {
            "message": "Incorrect API key provided: sk-**********1234. You can find your API key"
            " at https://platform.openai.com/account/api-keys.",
            "type": "invalid_request_error",
            "param": None,
            "code": "invalid_api_key",
        }
    }
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def test_the_configured_keys_are_the_ones_accepted() -> None:
    with FakeCloud(openai_key="sk-mine", anthropic_key="sk-ant-mine") as fake:
        keys = (fake.openai_key, fake.anthropic_key)
        with (
            openai.OpenAI(api_key="sk-mine", base_url=fake.base_url + "/v1") as mine,
            openai.OpenAI(api_key="sk-fake-openai", base_url=fake.base_url + "/v1") as default,
            anthropic.Anthropic(api_key="sk-ant-mine", base_url=fake.base_url) as claude,
        ):
            assert len(mine.models.list().data) == 2
            claude.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)
            with pytest.raises(openai.AuthenticationError):
                default.with_options(max_retries=0).models.list()

    assert keys == ("sk-mine", "sk-ant-mine")


def test_anthropic_wrong_key_is_401_authentication_error(cloud: FakeCloud) -> None:
    with (
        anthropic.Anthropic(api_key="sk-ant-wrong", base_url=cloud.base_url, max_retries=0) as a,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        a.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)

    assert caught.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    assert caught.value.response.headers["request-id"].startswith("req_")


def test_anthropic_takes_x_api_key_and_requires_a_version(cloud: FakeCloud) -> None:
    body = {"model": "m", "max_tokens": 9, "messages": MESSAGES}
    with httpx.Client(base_url=cloud.base_url, timeout=5) as client:
        answered = client.post(
            "/v1/messages",
            json=body,
            headers={"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"},
        )
        unversioned = client.post("/v1/messages", json=body, headers={"x-api-key": "sk-ant-fake"})

    assert answered.json()["content"] == [{"type": "text", "text": REPLY}]
    assert unversioned.status_code == 400
    assert unversioned.json()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("path", "headers"),
    [
        ("/v1/chat/completions", {"authorization": "Bearer sk-fake-openai"}),
        ("/v1/messages", {"x-api-key": "sk-ant-fake", "anthropic-version": "2023-06-01"}),
    ],
)
def test_invalid_request_json_is_400_invalid_request_error(
    cloud: FakeCloud, path: str, headers: dict[str, str]
) -> None:
    with httpx.Client(base_url=cloud.base_url, timeout=5) as client:
        response = client.post(path, content=b'{"model": ', headers=headers)

    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    assert cloud.requests[0].body is None


# --- faults ----------------------------------------------------------------------------------


def test_faults_are_consumed_one_per_request_in_order(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.status(500), Fault.wrong_key())

    with pytest.raises(openai.InternalServerError):
        openai_client.models.list()
    with pytest.raises(openai.AuthenticationError):
        openai_client.models.list()
    assert len(openai_client.models.list().data) == 2
    assert len(cloud.requests) == 3


def test_reset_forgets_faults_and_requests(cloud: FakeCloud, openai_client: openai.OpenAI) -> None:
    openai_client.models.list()
    cloud.push(Fault.status(500))
    cloud.reset()

    assert cloud.requests == []
    assert len(openai_client.models.list().data) == 2


@pytest.mark.parametrize(
    ("retry_after_s", "retry_after_ms", "headers"),
    [
        (2, 1500, {"retry-after": "2", "retry-after-ms": "1500"}),
        (0.5, None, {"retry-after": "0.5"}),
        (None, None, {}),
    ],
)
def test_openai_rate_limit_is_429_with_retry_after(
    cloud: FakeCloud,
    openai_client: openai.OpenAI,
    retry_after_s: float | None,
    retry_after_ms: int | None,
    headers: dict[str, str],
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=retry_after_s, retry_after_ms=retry_after_ms))

    with pytest.raises(openai.RateLimitError) as caught:
        openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)

    error = caught.value.response.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert error["message"].startswith("Rate limit reached")
    sent = caught.value.response.headers
    retry_headers = {name: sent[name] for name in ("retry-after", "retry-after-ms") if name in sent}
    assert retry_headers == headers


def test_anthropic_rate_limit_is_429_rate_limit_error(
    cloud: FakeCloud, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=None, retry_after_ms=250))

    with pytest.raises(anthropic.RateLimitError) as caught:
        anthropic_client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)

    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == "rate_limit_error"
    assert "retry-after" not in caught.value.response.headers
    assert caught.value.response.headers["retry-after-ms"] == "250"


def test_sdks_retry_after_a_rate_limit_and_then_succeed(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(Fault.rate_limit(retry_after_s=None, retry_after_ms=10))
    completion = openai_client.with_options(max_retries=1).chat.completions.create(
        model="gpt-4.1", messages=CHAT
    )
    cloud.push(Fault.rate_limit(retry_after_s=0.01))
    message = anthropic_client.with_options(max_retries=1).messages.create(
        model="claude-x", max_tokens=5, messages=MESSAGES
    )

    assert completion.choices[0].message.content == REPLY
    assert message.content[0].type == "text" and message.content[0].text == REPLY
    retries = [request.headers["x-stainless-retry-count"] for request in cloud.requests]
    assert retries == ["0", "1", "0", "1"]


@pytest.mark.parametrize("code", [500, 502, 503])
def test_openai_server_errors_carry_the_server_error_body(
    cloud: FakeCloud, openai_client: openai.OpenAI, code: int
) -> None:
    cloud.push(Fault.status(code))

    with pytest.raises(openai.InternalServerError) as caught:
        openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)

    assert caught.value.status_code == code
    assert caught.value.response.json() == {
        "error": {
            "message": "The server had an error while processing your request. Sorry about that!",
            "type": "server_error",
            "param": None,
            "code": None,
        }
    }


@pytest.mark.parametrize(
    ("code", "exception", "error_type"),
    [
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_anthropic_server_errors_carry_api_or_overloaded_error(
    cloud: FakeCloud,
    anthropic_client: anthropic.Anthropic,
    code: int,
    exception: type[anthropic.APIStatusError],
    error_type: str,
) -> None:
    cloud.push(Fault.status(code))

    with pytest.raises(exception) as caught:
        anthropic_client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)

    assert caught.value.status_code == code
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["error"]["type"] == error_type


def test_status_fault_takes_only_server_errors() -> None:
    with pytest.raises(ValueError, match="5xx"):
        Fault.status(404)


def test_wrong_key_fault_refuses_the_right_key(
    cloud: FakeCloud, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(Fault.wrong_key())

    with pytest.raises(anthropic.AuthenticationError):
        anthropic_client.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)


def test_closed_port_refuses_connections() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}"
    with (
        openai.OpenAI(api_key="k", base_url=base_url + "/v1", max_retries=0, timeout=5) as oa,
        anthropic.Anthropic(api_key="k", base_url=base_url, max_retries=0, timeout=5) as an,
    ):
        with pytest.raises(openai.APIConnectionError):
            oa.models.list()
        with pytest.raises(anthropic.APIConnectionError):
            an.messages.create(model="claude-x", max_tokens=5, messages=MESSAGES)


def test_a_stopped_cloud_refuses_connections() -> None:
    fake = FakeCloud().start()
    fake.stop()

    with (
        openai.OpenAI(api_key="sk-fake-openai", base_url=fake.base_url + "/v1") as client,
        pytest.raises(openai.APIConnectionError),
    ):
        client.with_options(max_retries=0).models.list()


def test_slow_first_byte_times_out_a_short_timeout_and_then_answers(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.slow_first_byte(30), Fault.slow_first_byte(0.05))

    with pytest.raises(openai.APITimeoutError):
        openai_client.with_options(timeout=0.2).chat.completions.create(
            model="gpt-4.1", messages=CHAT
        )
    late = openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)

    assert late.choices[0].message.content == REPLY


def test_reset_mid_stream_raises_in_the_openai_iterator(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.reset(after_chunks=3))
    pieces: list[str] = []

    with pytest.raises(openai.APIConnectionError):
        with openai_client.chat.completions.create(
            model="gpt-4.1", messages=CHAT, stream=True
        ) as stream:
            for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")

    # What a user relies on: the SDK's own connection error, after the text before the cut.
    assert pieces == ["", "Hello", " from"]


def test_reset_mid_stream_raises_in_the_anthropic_iterator(
    cloud: FakeCloud, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(Fault.reset(after_chunks=4))
    pieces: list[str] = []

    with (
        pytest.raises(anthropic.APIConnectionError),
        anthropic_client.messages.stream(
            model="claude-x", max_tokens=100, messages=MESSAGES
        ) as stream,
    ):
        for piece in stream.text_stream:
            pieces.append(piece)

    # What a user relies on: the SDK's own connection error, after the text before the cut.
    assert pieces == ["Hello"]


def test_reset_is_a_tcp_rst_after_the_given_events(cloud: FakeCloud) -> None:
    cloud.push(Fault.reset(after_chunks=2))
    body = json.dumps({"model": "m", "messages": CHAT, "stream": True}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: fake\r\n"
        b"authorization: Bearer sk-fake-openai\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    received = b""
    with socket.create_connection(("127.0.0.1", cloud.port), timeout=5) as sock:
        sock.sendall(request)
        with pytest.raises(ConnectionResetError):
            while data := sock.recv(65536):
                received += data

    assert received.startswith(b"HTTP/1.1 200 OK\r\n")
    assert received.count(b"data: ") == 2
    assert b'"delta":{"content":"Hello"}' in received


@pytest.mark.parametrize("after_chunks", [0, 1], ids=["before-body", "half-body"])
def test_reset_and_stall_cut_a_plain_answer_short(
    cloud: FakeCloud, openai_client: openai.OpenAI, after_chunks: int
) -> None:
    cloud.push(Fault.reset(after_chunks), Fault.stall(after_chunks, stall_s=60))
    client = openai_client.with_options(timeout=openai.Timeout(5, read=0.2))

    with pytest.raises(openai.APIConnectionError) as reset:
        client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="gpt-4.1", messages=CHAT)

    assert not isinstance(reset.value, openai.APITimeoutError)


def test_plain_reset_sends_the_head_and_as_much_body_as_asked(cloud: FakeCloud) -> None:
    cloud.push(Fault.reset(0), Fault.reset(1))
    heads = []
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", cloud.port), timeout=5) as sock:
            sock.sendall(b"GET /v1/models HTTP/1.1\r\nauthorization: Bearer sk-fake-openai\r\n\r\n")
            received = b""
            with pytest.raises(ConnectionResetError):
                while data := sock.recv(65536):
                    received += data
        heads.append(received.partition(b"\r\n\r\n"))

    (before, _, nothing), (half, _, some) = heads
    assert before.startswith(b"HTTP/1.1 200 OK") and half.startswith(b"HTTP/1.1 200 OK")
    assert nothing == b""
    assert some.startswith(b'{"object":"list"') and not some.endswith(b"}")


def test_stall_mid_stream_is_caught_by_a_read_timeout(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.stall(after_chunks=2, stall_s=60))
    pieces: list[str] = []
    client = openai_client.with_options(timeout=openai.Timeout(5, read=0.2))

    with pytest.raises(openai.APITimeoutError):
        with client.chat.completions.create(model="gpt-4.1", messages=CHAT, stream=True) as stream:
            for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")

    assert pieces == ["", "Hello"]
    # Teardown stops the cloud while this connection still stalls: stop() must not wait 60 s.


def test_stall_ends_by_closing_an_unfinished_body(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.stall(after_chunks=2, stall_s=0.01))

    with pytest.raises(openai.APIConnectionError) as caught:
        chat_stream_text(openai_client)

    assert not isinstance(caught.value, openai.APITimeoutError)


def test_malformed_fault_breaks_json_in_the_body_or_a_data_line(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(Fault.malformed(), Fault.malformed(after_chunks=1), Fault.malformed(after_chunks=3))

    with pytest.raises(json.JSONDecodeError):
        openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    with pytest.raises(json.JSONDecodeError):
        chat_stream_text(openai_client)
    with (
        pytest.raises(json.JSONDecodeError),
        anthropic_client.messages.stream(
            model="claude-x", max_tokens=100, messages=MESSAGES
        ) as stream,
    ):
        list(stream.text_stream)


def test_stream_error_fault_ends_the_stream_with_the_apis_error_event(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(
        Fault.stream_error("upstream fell over", after_chunks=2),
        Fault.stream_error("overloaded now", after_chunks=4, error_type="overloaded_error"),
    )
    pieces: list[str] = []

    with pytest.raises(openai.APIError, match="upstream fell over"):
        with openai_client.chat.completions.create(
            model="gpt-4.1", messages=CHAT, stream=True
        ) as stream:
            for chunk in stream:
                pieces.append(chunk.choices[0].delta.content or "")
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded now") as caught,
        anthropic_client.messages.stream(
            model="claude-x", max_tokens=100, messages=MESSAGES
        ) as stream,
    ):
        list(stream.text_stream)

    assert pieces == ["", "Hello"]
    assert caught.value.body == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "overloaded now"},
    }
