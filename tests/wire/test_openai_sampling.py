"""OpenAI's logit_bias, frequency_penalty and presence_penalty: read from clients' chat and
completion requests (a value outside OpenAI's ranges is a 400), and sent on to OpenAI-compatible
providers only when the client set them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from scripted import ScriptedBackend, scripted_app

from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.settings import load_settings
from hybrid.wire.openai.decode import chat_request, completion_request
from hybrid.wire.openai.encode import chat_body, completion_body
from hybrid.wire.openai.schema import ChatCompletionRequest, CompletionRequest

MESSAGES = [{"role": "user", "content": "hi"}]
SET = {"frequency_penalty": 1.5, "presence_penalty": -2, "logit_bias": {"50256": -100, "7": 2.5}}


@pytest.fixture
def backend() -> ScriptedBackend:
    return ScriptedBackend()


@pytest.fixture
def client(tmp_path: Path, backend: ScriptedBackend) -> Iterator[TestClient]:
    environ = {"HYBRID_HOME": str(tmp_path / "home")}
    settings = load_settings(
        environ=environ, dotenv_file=None, cli={"probe.measure_bandwidth": False}
    ).settings
    with TestClient(scripted_app(settings, backend)) as test_client:
        yield test_client


def test_a_chat_request_carries_bias_and_penalties_by_token_id() -> None:
    body = ChatCompletionRequest.model_validate({"messages": MESSAGES, **SET})
    params = chat_request(body, "r").params
    assert (params.frequency_penalty, params.presence_penalty) == (1.5, -2.0)
    assert params.logit_bias == ((7, 2.5), (50256, -100.0))


def test_a_completion_request_carries_them_too() -> None:
    body = CompletionRequest.model_validate({"prompt": "Once", **SET})
    params = completion_request(body, "r").params
    assert (params.frequency_penalty, params.presence_penalty) == (1.5, -2.0)
    assert params.logit_bias == ((7, 2.5), (50256, -100.0))


def test_a_request_without_them_sets_none() -> None:
    params = chat_request(ChatCompletionRequest.model_validate({"messages": MESSAGES}), "r").params
    assert (params.frequency_penalty, params.presence_penalty, params.logit_bias) == (
        None,
        None,
        (),
    )


def test_they_reach_the_backend_through_the_api(
    client: TestClient, backend: ScriptedBackend
) -> None:
    response = client.post("/v1/chat/completions", json={"messages": MESSAGES, **SET})
    assert response.status_code == 200, response.text
    params = backend.requests[-1].params
    assert params.logit_bias == ((7, 2.5), (50256, -100.0))
    assert (params.frequency_penalty, params.presence_penalty) == (1.5, -2.0)


@pytest.mark.parametrize(
    ("field", "value", "param", "says"),
    [
        ("frequency_penalty", 2.5, "frequency_penalty", "less than or equal to 2"),
        ("presence_penalty", -3, "presence_penalty", "greater than or equal to -2"),
        ("frequency_penalty", "high", "frequency_penalty", "valid number"),
        ("logit_bias", {"hello": 1}, "logit_bias", "'hello' is not a token id"),
        ("logit_bias", {"-5": 1}, "logit_bias", "'-5' is not a token id"),
        ("logit_bias", {"42": 101}, "logit_bias", "the bias of token 42 is 101"),
        ("logit_bias", {"42": -100.5}, "logit_bias", "the bias of token 42 is -100.5"),
        ("logit_bias", {"42": "ban"}, "logit_bias[42]", "valid number"),
        ("logit_bias", [42], "logit_bias", "should be an object"),
    ],
)
@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_a_value_outside_openais_ranges_is_a_400(
    client: TestClient, path: str, field: str, value: Any, param: str, says: str
) -> None:
    body: dict[str, Any] = {"messages": MESSAGES} if "chat" in path else {"prompt": "Once"}
    response = client.post(path, json={**body, field: value})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        param,
        "invalid_value",
    )
    assert says in error["message"]


def test_a_provider_gets_them_as_openai_writes_them() -> None:
    params = SamplingParams(
        frequency_penalty=0.5, presence_penalty=0.0, logit_bias=((7, 2.5), (50256, -100.0))
    )
    chat = GenerationRequest("r", messages=(Message("user", "hi"),), params=params)
    completion = GenerationRequest("r", prompt="Once", params=params)
    for body in (chat_body(chat, "m", dialect="ollama"), completion_body(completion, "m")):
        assert body["frequency_penalty"] == 0.5
        assert body["presence_penalty"] == 0.0  # set, though to no penalty: sent
        assert body["logit_bias"] == {"7": 2.5, "50256": -100.0}


def test_a_provider_gets_none_of_them_unless_set() -> None:
    chat = GenerationRequest("r", messages=(Message("user", "hi"),))
    completion = GenerationRequest("r", prompt="Once")
    for body in (chat_body(chat, "m", dialect="openai"), completion_body(completion, "m")):
        assert not {"frequency_penalty", "presence_penalty", "logit_bias"} & body.keys()
