"""``hybrid serve`` as a user runs it: a real subprocess, the embedded model, the openai SDK."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
from server_process import RunningServer

pytestmark = pytest.mark.slow

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def server(start_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:
    running = start_server()
    yield running
    assert running.stop() == 0, running.log.read_text()


@pytest.fixture(scope="module")
def api(server: RunningServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)


def test_capital_of_france_is_answered_briefly_with_paris(api: openai.OpenAI) -> None:
    raw = api.chat.completions.with_raw_response.create(
        model="hybrid", messages=QUESTION, temperature=0
    )
    completion = raw.parse()
    answer = completion.choices[0].message.content or ""
    assert "Paris" in answer
    assert len(answer) < 120, answer
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 5 and completion.usage.completion_tokens > 0
    assert raw.headers["x-hybrid-route"] == "local"
    assert raw.headers["x-hybrid-model"] == completion.model == "gemma-3-270m-q4_k_m"
    assert raw.headers["x-hybrid-request-id"]


@pytest.mark.parametrize(
    ("question", "answer"),
    [
        ("Which language is spoken in Mexico?", "Spanish"),
        ("Wie heißt die Hauptstadt von Frankreich?", "Paris"),
    ],
)
def test_the_base_model_answers_with_the_answer_not_a_restatement(
    api: openai.OpenAI, question: str, answer: str
) -> None:
    # The transcript's example exchanges teach the base model to answer directly; with the
    # preamble alone (the plain format of scripts/eval_prompt.py) it answers "I speak
    # Spanish." and "I'm from France.".
    completion = api.chat.completions.create(
        model="hybrid", messages=[{"role": "user", "content": question}], temperature=0
    )
    text = completion.choices[0].message.content or ""
    assert text.rstrip(".") == answer
    assert completion.choices[0].finish_reason == "stop"


def test_default_sampling_also_names_paris(api: openai.OpenAI) -> None:
    completion = api.chat.completions.create(model="hybrid", messages=QUESTION)
    assert "Paris" in (completion.choices[0].message.content or "")


def test_streamed_answer_equals_the_whole_answer(api: openai.OpenAI) -> None:
    whole = api.chat.completions.create(
        model="local", messages=QUESTION, temperature=0, max_tokens=40
    )
    stream = api.chat.completions.create(
        model="local",
        messages=QUESTION,
        temperature=0,
        max_tokens=40,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == whole.choices[0].message.content
    assert chunks[-1].usage is not None and whole.usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


def test_stop_sequence_ends_the_text_before_it(api: openai.OpenAI) -> None:
    completion = api.completions.create(
        model="local", prompt="1, 2, 3, 4, 5,", max_tokens=30, temperature=0, stop=[" 9"]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    assert "8" in choice.text and "9" not in choice.text


def test_max_tokens_ends_with_length(api: openai.OpenAI) -> None:
    completion = api.completions.create(
        model="local", prompt="1, 2, 3, 4, 5,", max_tokens=5, temperature=0
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage is not None and completion.usage.completion_tokens == 5


def test_json_mode_produces_valid_json(api: openai.OpenAI) -> None:
    completion = api.chat.completions.create(
        model="hybrid",
        messages=[
            # A prompt the model copies: a 270M model asked to invent an object may repeat
            # its keys until the token cap, which ends the answer with "length".
            {"role": "user", "content": 'Repeat this JSON object: {"name": "Tom", "age": 3}'}
        ],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    assert completion.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(completion.choices[0].message.content or ""), dict)


def test_json_schema_output_follows_the_schema(api: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
        "required": ["name", "age"],
    }
    completion = api.chat.completions.create(
        model="hybrid",
        messages=[{"role": "user", "content": "Describe a cat."}],
        response_format={"type": "json_schema", "json_schema": {"name": "cat", "schema": schema}},
        max_tokens=120,
        temperature=0,
    )
    cat = json.loads(completion.choices[0].message.content or "")
    assert isinstance(cat["name"], str) and isinstance(cat["age"], int)


def test_logprobs_are_reported_per_token(api: openai.OpenAI) -> None:
    completion = api.chat.completions.create(
        model="hybrid",
        messages=QUESTION,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        max_tokens=10,
    )
    content = completion.choices[0].logprobs.content  # type: ignore[union-attr]
    assert content and all(t.logprob <= 0 for t in content)
    assert all(len(t.top_logprobs) == 3 for t in content)
    # Greedy decoding picks the most likely token each time.
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob) for t in content)


def test_health_reports_model_plan_and_hardware(server: RunningServer, api: openai.OpenAI) -> None:
    api.completions.create(model="local", prompt="1, 2, 3,", max_tokens=16, temperature=0)
    body = httpx.get(f"{server.base_url}/health").json()
    assert body["status"] == "ok"
    assert body["model"]["id"] == "gemma-3-270m-q4_k_m"
    assert body["model"]["n_ctx"] >= 512
    assert body["model"]["predicted_tokens_per_s"] > 0
    assert body["model"]["measured_decode_tokens_per_s"] > 0
    assert body["queue"]["depth"] == 0
    # The slots decoded together: planned from memory (4 fit easily), each with its cost.
    slots = body["slots"]
    assert slots["total"] == 4 and slots["busy"] == 0
    assert slots["n_ctx_per_slot"] == body["model"]["n_ctx"]
    assert slots["kv_cache_type"] == "q8_0" and slots["kv_bytes_per_slot"] > 0
    assert "4 slots of" in slots["note"]
    assert slots["decode_tokens_per_s_by_batch"]["1"] > 0
    assert body["hardware"]["snapshot"]["cpu"]["logical_cores"] >= 1
    assert "cpu_percent" in body["hardware"]["live"]


def test_models_endpoint_lists_model_and_aliases(api: openai.OpenAI) -> None:
    ids = [m.id for m in api.models.list()]
    assert ids == ["gemma-3-270m-q4_k_m", "hybrid", "local", "cloud"]


@pytest.fixture(scope="module")
def small_server(start_server: Callable[..., RunningServer]) -> Iterator[RunningServer]:
    # One slot and no waiting line: a second request is refused while one runs.
    running = start_server(
        "--ctx", "512", env={"HYBRID_LOCAL__MAX_QUEUE": "0", "HYBRID_LOCAL__PARALLEL": "1"}
    )
    yield running
    assert running.stop() == 0, running.log.read_text()


def test_prompt_longer_than_the_context_is_refused_with_numbers(
    small_server: RunningServer,
) -> None:
    api = openai.OpenAI(base_url=f"{small_server.base_url}/v1", api_key="unused", max_retries=0)
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 80
    with pytest.raises(openai.BadRequestError) as caught:
        api.chat.completions.create(
            model="hybrid", messages=[{"role": "user", "content": long_prompt}]
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "512" in error["message"]
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        api.chat.completions.create(model="hybrid", messages=QUESTION, max_tokens=600)


def counting_stream(
    server: RunningServer, client: httpx.Client, max_tokens: int = 480
) -> httpx.Response:
    """Start a long greedy count (it never hits a stop) and return the open streaming response."""
    body = {
        "model": "local",
        "prompt": "1, 2, 3, 4, 5,",
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
    }
    request = client.build_request("POST", f"{server.base_url}/v1/completions", json=body)
    response = client.send(request, stream=True)
    assert response.status_code == 200
    return response


def wait_until_idle(server: RunningServer, polls: int = 50) -> bool:
    for _ in range(polls):
        if httpx.get(f"{server.base_url}/health").json()["queue"]["depth"] == 0:
            return True
        threading.Event().wait(0.1)
    return False


def test_queue_full_is_a_429_with_retry_after(small_server: RunningServer) -> None:
    with httpx.Client(timeout=30) as client:
        busy = counting_stream(small_server, client)
        lines = busy.iter_lines()
        assert next(lines).startswith("data: ")
        refused = httpx.post(
            f"{small_server.base_url}/v1/chat/completions", json={"messages": QUESTION}, timeout=30
        )
        assert refused.status_code == 429
        assert int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        busy.close()
    assert wait_until_idle(small_server)


def test_client_disconnect_stops_generation_and_frees_the_model(
    small_server: RunningServer,
) -> None:
    with httpx.Client(timeout=30) as client:
        response = counting_stream(small_server, client)
        received = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                received.append(json.loads(line[6:])["choices"][0]["text"])
            if len(received) >= 5:
                break
        assert any(ch.isdigit() for ch in "".join(received))
        response.close()
    # 480 tokens take several seconds; a cancelled generation frees the model within a token.
    assert wait_until_idle(small_server, polls=20)
    api = openai.OpenAI(base_url=f"{small_server.base_url}/v1", api_key="unused", max_retries=0)
    answer = api.chat.completions.create(
        model="hybrid", messages=QUESTION, temperature=0, max_tokens=20
    )
    assert "Paris" in (answer.choices[0].message.content or "")


def test_client_giving_up_on_a_whole_answer_frees_the_model(small_server: RunningServer) -> None:
    body = {"model": "local", "prompt": "1, 2, 3, 4, 5,", "max_tokens": 480, "temperature": 0}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{small_server.base_url}/v1/completions", json=body, timeout=1.0)
    # The timed-out client closed its connection; the server noticed and stopped generating.
    assert wait_until_idle(small_server, polls=20)


def test_sigterm_mid_stream_shuts_down_cleanly(start_server: Callable[..., RunningServer]) -> None:
    # In-flight requests get 60 s here: the test is about finishing them, on a machine that may
    # be busy with other work.
    running = start_server("--ctx", "512", env={"HYBRID_SERVER__SHUTDOWN_TIMEOUT_S": "60"})
    with httpx.Client(timeout=90) as client:
        response = counting_stream(running, client, max_tokens=60)
        lines = response.iter_lines()
        assert next(lines).startswith("data: ")
        code = running.stop()
        rest = "".join(lines)
    assert code == 0, running.log.read_text()
    # The in-flight stream (a few seconds long) was allowed to finish before the exit.
    assert rest.endswith("data: [DONE]")
    assert "Application shutdown complete" in running.log.read_text()
