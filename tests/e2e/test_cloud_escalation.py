"""Cloud escalation as a user runs it: ``hybrid serve`` in front of a fake cloud on loopback
(OpenAI's and Anthropic's wire formats, with faults) and llama-cpp-python's own server as an
OpenAI-compatible provider, driven by the official ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
from fake_cloud import FakeCloud, Fault, closed_port
from server_process import RunningServer, free_port, start_server

from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]
FAST_RELIABILITY = {
    "HYBRID_CLOUD__CONNECT_TIMEOUT_S": "1",
    "HYBRID_CLOUD__FIRST_BYTE_TIMEOUT_S": "4",
    "HYBRID_CLOUD__WHOLE_ANSWER_TIMEOUT_S": "4",
    "HYBRID_CLOUD__IDLE_TIMEOUT_S": "1",
    "HYBRID_CLOUD__MAX_ATTEMPTS": "2",
    "HYBRID_CLOUD__BACKOFF_BASE_S": "0.05",
    "HYBRID_CLOUD__BACKOFF_MAX_S": "0.1",
    # The fault matrix reads the X-Hybrid-* headers of streams that take seconds to start; a
    # stream still starting after cloud.stream_keep_alive_s sends them as SSE comments instead.
    "HYBRID_CLOUD__STREAM_KEEP_ALIVE_S": "30",
    # The matrix below fails the same provider many times on purpose; the breaker has tests
    # of its own.
    "HYBRID_CLOUD__BREAKER_FAILURES": "1000",
    # The embedded model's calibrated threshold escalates nearly everything (it answers few
    # prompts right); a higher one keeps easy prompts local, so both routes can be seen.
    "HYBRID_ROUTING__DIFFICULTY__THRESHOLD": "0.9",
}


@pytest.fixture(scope="module")
def cloud() -> Iterator[FakeCloud]:
    with FakeCloud(reply="Hello from the fake cloud, answering in words.") as fake:
        yield fake


@pytest.fixture(scope="module")
def upstream_llama(hybrid_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """llama-cpp-python's own OpenAI-compatible server on the embedded model."""
    model = ensure_embedded_model(hybrid_home)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "gemma-upstream",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        "1024",
        "--verbose",
        "false",
    ]
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    upstream = start_server(
        command, port=port, log=log, ready_path="/v1/models", timeout_s=120, what="llama server"
    )
    try:
        yield f"{upstream.base_url}/v1"
    finally:
        upstream.stop(grace_s=30)


@pytest.fixture(scope="module")
def server(
    start_server: Callable[..., RunningServer],
    cloud: FakeCloud,
    upstream_llama: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RunningServer]:
    config = tmp_path_factory.mktemp("config") / "config.toml"
    config.write_text(
        "[[cloud.providers]]\n"
        'name = "llamacpp"\n'
        f'base_url = "{upstream_llama}"\n'
        'models = ["gemma-upstream"]\n'
    )
    env = {
        "HYBRID_CONFIG": str(config),
        **cloud.provider_env(),
        **FAST_RELIABILITY,
        # Each test's prompt is scored alone: the hard prompt's score must not depend on
        # which of the module's other requests came before it.
        "HYBRID_ROUTING__DIFFICULTY__NEIGHBOURS": "0",
    }
    running = start_server("--ctx", "1024", env=env)
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture
def fake(cloud: FakeCloud) -> FakeCloud:
    cloud.reset()
    return cloud


_open_clients: list[openai.OpenAI | anthropic.Anthropic] = []


@pytest.fixture(autouse=True)
def close_clients() -> Iterator[None]:
    yield
    while _open_clients:
        _open_clients.pop().close()


def openai_client(server: RunningServer, **headers: str) -> openai.OpenAI:
    client = openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, default_headers=headers
    )
    _open_clients.append(client)
    return client


def anthropic_client(server: RunningServer, **headers: str) -> anthropic.Anthropic:
    client = anthropic.Anthropic(
        base_url=server.base_url, api_key="unused", max_retries=0, default_headers=headers
    )
    _open_clients.append(client)
    return client


# -- every route, both SDKs ---------------------------------------------------------------------


def test_a_cloud_model_name_that_fits_locally_is_answered_locally(
    server: RunningServer, fake: FakeCloud
) -> None:
    raw = openai_client(server).chat.completions.with_raw_response.create(
        model="gpt-4.1-mini", messages=QUESTION, temperature=0
    )
    assert raw.headers["x-hybrid-route"] == "local"
    assert not raw.headers["x-hybrid-reason"].startswith(("explicit", "cloud_unavailable"))
    assert "Paris" in (raw.parse().choices[0].message.content or "")
    assert fake.requests == []


def test_a_hard_prompt_escalates_on_its_difficulty_score(
    server: RunningServer, fake: FakeCloud
) -> None:
    raw = openai_client(server).chat.completions.with_raw_response.create(
        model="hybrid",
        messages=[
            {
                "role": "user",
                "content": "Solve for x: 3x^2 - 14x + 8 = 0. Show your working step by step.",
            }
        ],
    )
    assert raw.headers["x-hybrid-route"] == "cloud"
    assert raw.headers["x-hybrid-reason"].startswith("difficulty:")
    assert float(raw.headers["x-hybrid-score"]) > 0.9
    assert raw.parse().choices[0].message.content == fake.reply


def test_openai_sdk_through_hybrid_to_openai(server: RunningServer, fake: FakeCloud) -> None:
    api = openai_client(server)
    raw = api.chat.completions.with_raw_response.create(model="cloud", messages=QUESTION)
    completion = raw.parse()
    assert completion.choices[0].message.content == fake.reply
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert raw.headers["x-hybrid-route"] == "cloud"
    assert raw.headers["x-hybrid-model"] == "openai/gpt-5.4-mini"
    assert raw.headers["x-hybrid-reason"] == "explicit:cloud"
    sent = fake.requests[-1]
    assert sent.api == "openai" and sent.body is not None and sent.body["model"] == "gpt-5.4-mini"
    assert sent.headers["authorization"] == f"Bearer {fake.openai_key}"
    chunks = list(
        api.chat.completions.create(
            model="cloud", messages=QUESTION, stream=True, stream_options={"include_usage": True}
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == fake.reply
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_openai_sdk_through_hybrid_to_anthropic(server: RunningServer, fake: FakeCloud) -> None:
    api = openai_client(server, **{"X-Hybrid-Route": "cloud"})
    raw = api.chat.completions.with_raw_response.create(
        model="claude-sonnet-5-5",
        messages=[{"role": "system", "content": "Be brief."}, *QUESTION],
        max_tokens=50,
        stop=["never-appears"],
    )
    assert raw.parse().choices[0].message.content == fake.reply
    assert raw.headers["x-hybrid-model"] == "anthropic/claude-sonnet-5-5"
    sent = fake.requests[-1]
    assert sent.api == "anthropic" and sent.body is not None
    assert sent.body["system"] == "Be brief."
    assert sent.body["max_tokens"] == 50 and sent.body["stop_sequences"] == ["never-appears"]
    assert sent.headers["x-api-key"] == fake.anthropic_key
    assert "authorization" not in sent.headers  # the OpenAI key never goes to Anthropic
    streamed = api.chat.completions.create(
        model="claude-sonnet-5-5", messages=QUESTION, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == fake.reply


def test_openai_sdk_through_hybrid_to_llama_cpp_server(server: RunningServer) -> None:
    api = openai_client(server, **{"X-Hybrid-Route": "cloud"})
    raw = api.chat.completions.with_raw_response.create(
        model="llamacpp/gemma-upstream", messages=QUESTION, temperature=0, max_tokens=30
    )
    assert raw.headers["x-hybrid-model"] == "llamacpp/gemma-upstream"
    assert raw.parse().choices[0].message.content
    streamed = api.chat.completions.create(
        model="gemma-upstream", messages=QUESTION, temperature=0, max_tokens=30, stream=True
    )
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_anthropic_sdk_through_hybrid_on_every_route(
    server: RunningServer, fake: FakeCloud
) -> None:
    local = anthropic_client(server).messages.create(
        model="local", max_tokens=30, messages=QUESTION
    )
    assert "Paris" in local.content[0].text  # type: ignore[union-attr]
    to_openai = anthropic_client(server).messages.with_raw_response.create(
        model="cloud", max_tokens=30, messages=QUESTION
    )
    assert to_openai.headers["x-hybrid-model"] == "openai/gpt-5.4-mini"
    assert to_openai.parse().content[0].text == fake.reply  # type: ignore[union-attr]
    cloud = anthropic_client(server, **{"X-Hybrid-Route": "cloud"})
    with cloud.messages.stream(
        model="claude-haiku-4-5", max_tokens=30, messages=QUESTION
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == fake.reply and final.usage.output_tokens > 0
    to_llama = cloud.messages.with_raw_response.create(
        model="llamacpp/gemma-upstream", max_tokens=20, messages=QUESTION
    )
    assert to_llama.headers["x-hybrid-model"] == "llamacpp/gemma-upstream"
    assert to_llama.parse().content[0].text  # type: ignore[union-attr]


def test_a_prompt_too_long_for_the_local_context_escalates(
    server: RunningServer, fake: FakeCloud
) -> None:
    long_prompt = "Summarise this. " + "The quick brown fox jumps over the lazy dog. " * 120
    raw = openai_client(server).chat.completions.with_raw_response.create(
        model="hybrid", messages=[{"role": "user", "content": long_prompt}]
    )
    assert raw.headers["x-hybrid-route"] == "cloud"
    assert raw.headers["x-hybrid-reason"].startswith("length:")
    needed, context = raw.headers["x-hybrid-reason"][len("length:") :].split(">")
    assert int(needed) > int(context) == 1024


def test_unknown_model_is_a_404_listing_what_exists(server: RunningServer) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        openai_client(server).chat.completions.create(model="no-such-model", messages=QUESTION)
    body = caught.value.body
    assert isinstance(body, dict) and body["code"] == "model_not_found"
    assert "openai/gpt-5.4-mini" in body["message"] and "llamacpp/gemma-upstream" in body["message"]
    with pytest.raises(anthropic.NotFoundError):
        anthropic_client(server).messages.create(
            model="no-such-model", max_tokens=5, messages=QUESTION
        )


def test_models_and_health_show_the_cloud(server: RunningServer) -> None:
    ids = [m.id for m in openai_client(server).models.list()]
    assert ids[:4] == ["gemma-3-270m-q4_k_m", "hybrid", "local", "cloud"]
    assert {"openai/gpt-5.4-mini", "anthropic/claude-sonnet-5-5", "llamacpp/gemma-upstream"} <= set(
        ids
    )
    providers = httpx.get(f"{server.base_url}/health").json()["providers"]
    assert providers["openai"]["circuit"]["state"] == "closed"
    assert providers["llamacpp"]["usable"] is True


# -- the fault matrix ---------------------------------------------------------------------------
# Each fault is queued at the fake cloud; the request goes to model "cloud" (OpenAI).  The
# outcome is either a complete answer (a retry succeeded, or the local model took over) or a
# clear error; each case asserts which.

RETRIED = "retried"  # the second attempt reached the cloud and answered
FELL_BACK = "fell_back"  # every attempt failed: the local model answered


@pytest.mark.parametrize(
    ("faults", "outcome", "reason"),
    [
        ([Fault.rate_limit(retry_after_s=0.2)], RETRIED, None),
        ([Fault.rate_limit(retry_after_ms=100)] * 2, FELL_BACK, "rate_limited"),
        ([Fault.status(500)], RETRIED, None),
        ([Fault.status(502)] * 2, FELL_BACK, "unavailable"),
        ([Fault.status(503)] * 2, FELL_BACK, "unavailable"),
        ([Fault.slow_first_byte(6.0)] * 2, FELL_BACK, "timeout"),
        ([Fault.slow_first_byte(6.0)], RETRIED, None),
        ([Fault.malformed()], RETRIED, None),
        ([Fault.reset(after_chunks=0)], RETRIED, None),
        ([Fault.stall(after_chunks=0, stall_s=3.0)], RETRIED, None),
        ([Fault.wrong_key()], FELL_BACK, "auth"),
    ],
    ids=[
        "429-then-ok",
        "429-twice",
        "500-then-ok",
        "502-twice",
        "503-twice",
        "slow-first-byte-twice",
        "slow-first-byte-then-ok",
        "malformed-json-then-ok",
        "reset-before-body-then-ok",
        "stall-before-body-then-ok",
        "wrong-key",
    ],
)
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_fault_matrix_before_the_first_byte(
    server: RunningServer,
    fake: FakeCloud,
    faults: list[Fault],
    outcome: str,
    reason: str | None,
    stream: bool,
) -> None:
    fake.push(*faults)
    api = openai_client(server)
    raw = api.chat.completions.with_raw_response.create(
        model="cloud", messages=QUESTION, stream=stream, temperature=0, max_tokens=30
    )
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content or ""
    if outcome == RETRIED:
        assert raw.headers["x-hybrid-route"] == "cloud"
        assert text == fake.reply
        assert len(fake.requests) == 2
    else:
        assert raw.headers["x-hybrid-route"] == "local"
        assert raw.headers["x-hybrid-reason"] == f"cloud_unavailable:openai:{reason};explicit:cloud"
        assert "Paris" in text
    assert raw.headers["x-hybrid-request-id"]


@pytest.mark.parametrize(
    "fault",
    [
        Fault.stall(after_chunks=3, stall_s=3.0),
        Fault.reset(after_chunks=3),
        Fault.malformed(after_chunks=3),
    ],
    ids=["stall", "reset", "malformed"],
)
def test_a_failure_after_tokens_reached_the_client_ends_with_an_error_event(
    server: RunningServer, fake: FakeCloud, fault: Fault
) -> None:
    fake.push(fault)
    received = []
    with pytest.raises(openai.APIError):
        for chunk in openai_client(server).chat.completions.create(
            model="cloud", messages=QUESTION, stream=True
        ):
            if chunk.choices:
                received.append(chunk.choices[0].delta.content or "")
    partial = "".join(received)
    assert partial and fake.reply.startswith(partial) and partial != fake.reply
    # The same through the Anthropic endpoint: an error event, and no message_stop.
    fake.push(fault)
    body = {"model": "cloud", "max_tokens": 30, "messages": QUESTION, "stream": True}
    with httpx.stream("POST", f"{server.base_url}/v1/messages", json=body, timeout=30) as response:
        events = [line for line in response.iter_lines() if line.startswith("event: ")]
    assert "event: content_block_delta" in events
    assert events[-1] == "event: error" and "event: message_stop" not in events


def test_connection_refused_falls_back_to_local(
    start_server: Callable[..., RunningServer],
) -> None:
    env = {
        "OPENAI_API_KEY": "sk-anything",
        "OPENAI_BASE_URL": f"http://127.0.0.1:{closed_port()}/v1",
        **FAST_RELIABILITY,
    }
    running = start_server("--ctx", "1024", env=env)
    try:
        raw = openai_client(running).chat.completions.with_raw_response.create(
            model="cloud", messages=QUESTION, temperature=0
        )
        assert raw.headers["x-hybrid-route"] == "local"
        assert raw.headers["x-hybrid-reason"] == (
            "cloud_unavailable:openai:unavailable;explicit:cloud"
        )
        long_prompt = "The quick brown fox jumps over the lazy dog. " * 150
        response = httpx.post(
            f"{running.base_url}/v1/chat/completions",
            json={"model": "hybrid", "messages": [{"role": "user", "content": long_prompt}]},
            timeout=30,
        )
        assert response.status_code == 503
        assert response.headers["x-should-retry"] == "true"
        message = response.json()["error"]["message"]
        assert "openai" in message and "local: prompt is" in message
    finally:
        assert running.stop() == 0


@pytest.fixture(scope="module")
def failover_server(
    start_server: Callable[..., RunningServer], cloud: FakeCloud
) -> Iterator[RunningServer]:
    env = {
        **cloud.provider_env(),
        "HYBRID_CLOUD__FAILOVER": '["anthropic/claude-haiku-4-5"]',
        **FAST_RELIABILITY,
    }
    running = start_server("--ctx", "1024", env=env)
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
def test_failover_to_the_next_provider_then_to_local(
    failover_server: RunningServer, fake: FakeCloud, stream: bool
) -> None:
    api = openai_client(failover_server)

    def ask() -> tuple[httpx.Headers, str]:
        raw = api.chat.completions.with_raw_response.create(
            model="cloud", messages=QUESTION, stream=stream, temperature=0, max_tokens=30
        )
        if stream:
            return raw.headers, "".join(
                c.choices[0].delta.content or "" for c in raw.parse() if c.choices
            )
        return raw.headers, raw.parse().choices[0].message.content or ""

    fake.push(Fault.status(503), Fault.status(503))  # both OpenAI attempts
    headers, text = ask()
    assert headers["x-hybrid-model"] == "anthropic/claude-haiku-4-5"
    assert headers["x-hybrid-reason"] == "explicit:cloud;failover:openai:unavailable"
    assert text == fake.reply
    assert [r.api for r in fake.requests] == ["openai", "openai", "anthropic"]

    fake.reset()
    fake.push(*[Fault.status(503)] * 4)  # both attempts at both providers
    headers, text = ask()
    assert headers["x-hybrid-route"] == "local"
    assert headers["x-hybrid-reason"] == "cloud_unavailable:openai:unavailable;explicit:cloud"
    assert "Paris" in text


PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk"
    "YPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


def test_an_image_goes_to_the_cloud_whole_because_the_local_model_reads_text_only(
    server: RunningServer, fake: FakeCloud
) -> None:
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": PIXEL}},
    ]
    raw = openai_client(server).chat.completions.with_raw_response.create(
        model="hybrid", messages=[{"role": "user", "content": content}]
    )
    assert raw.headers["x-hybrid-route"] == "cloud"
    assert raw.headers["x-hybrid-reason"] == "capability:images"
    assert raw.parse().choices[0].message.content == fake.reply
    sent = fake.requests[-1]
    assert sent.body is not None and sent.body["messages"][0]["content"] == content
    # The same image to Anthropic, translated to its image block.
    anthropic_raw = openai_client(server).chat.completions.with_raw_response.create(
        model="claude-haiku-4-5", messages=[{"role": "user", "content": content}]
    )
    assert anthropic_raw.headers["x-hybrid-model"] == "anthropic/claude-haiku-4-5"
    blocks = fake.requests[-1].body["messages"][0]["content"]  # type: ignore[index]
    assert blocks[1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PIXEL.split(",", 1)[1]},
    }
    with pytest.raises(openai.BadRequestError, match="reads text only"):
        openai_client(server).chat.completions.create(
            model="local", messages=[{"role": "user", "content": content}]
        )


# -- the cascade ----------------------------------------------------------------------------------

# The embedded base model declines this multiple-choice question (a generated calibration item).
DECLINED = [
    {
        "role": "user",
        "content": "What is the capital of Iran?\nA) Tehran\nB) Vienna\nC) Rabat\nD) Ottawa\n"
        "Answer with the letter of the correct option.",
    }
]


@pytest.fixture(scope="module")
def cascade_server(
    start_server: Callable[..., RunningServer], cloud: FakeCloud
) -> Iterator[RunningServer]:
    env = {
        **cloud.provider_env(),
        **FAST_RELIABILITY,
        # Every prompt stays local on its score, so that only the cascade (on by default with a
        # cloud configured) sends one out; and no answer is unsure enough to be discarded for
        # its confidence.
        "HYBRID_ROUTING__DIFFICULTY__THRESHOLD": "1",
        "HYBRID_ROUTING__CASCADE__MIN_CONFIDENCE": "0.01",
    }
    running = start_server("--ctx", "1024", env=env)
    yield running
    assert running.stop() == 0, running.log.read_text()


def test_the_cascade_sends_a_declining_local_answer_to_the_cloud(
    cascade_server: RunningServer, fake: FakeCloud
) -> None:
    api = openai_client(cascade_server)

    raw = api.chat.completions.with_raw_response.create(
        model="hybrid", messages=DECLINED, temperature=0, max_tokens=24
    )
    assert (raw.headers["x-hybrid-route"], raw.headers["x-hybrid-reason"]) == (
        "cloud",
        "cascade:declined",
    )
    assert raw.parse().choices[0].message.content == fake.reply

    raw = api.chat.completions.with_raw_response.create(
        model="hybrid", messages=QUESTION, temperature=0, max_tokens=24
    )
    assert raw.headers["x-hybrid-route"] == "local"
    assert ";cascade:" in raw.headers["x-hybrid-reason"]
    assert "Paris" in (raw.parse().choices[0].message.content or "")
    assert [r.api for r in fake.requests] == ["openai"]


def test_the_cascade_reads_a_streamed_answer_s_opening_before_sending_it(
    cascade_server: RunningServer, fake: FakeCloud
) -> None:
    api = openai_client(cascade_server)

    def ask(messages: list[dict[str, str]]) -> tuple[httpx.Headers, str]:
        raw = api.chat.completions.with_raw_response.create(
            model="hybrid", messages=messages, stream=True, temperature=0, max_tokens=24
        )
        chunks = [c for c in raw.parse() if c.choices]
        # The opening is weighed on log-probabilities; a client that asked for none gets none.
        assert all(c.choices[0].logprobs is None for c in chunks)
        return raw.headers, "".join(c.choices[0].delta.content or "" for c in chunks)

    headers, text = ask(DECLINED)
    assert (headers["x-hybrid-route"], headers["x-hybrid-reason"]) == ("cloud", "cascade:declined")
    assert text == fake.reply
    headers, text = ask(QUESTION)
    assert headers["x-hybrid-route"] == "local"
    assert ";cascade:opening:" in headers["x-hybrid-reason"]
    assert "Paris" in text
    assert [r.api for r in fake.requests] == ["openai"]
