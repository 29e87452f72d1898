"""The fake cloud as a LAN server (``lan_kind``) and the faults LAN failover is tested with:
another model's name, a stream that ends early, a 404, an HTML page, per-path faults."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable, Iterator

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam
from fake_cloud import FakeCloud, Fault
from openai.types.chat import ChatCompletionMessageParam

CHAT: list[ChatCompletionMessageParam] = [{"role": "user", "content": "say hello to me"}]
MESSAGES: list[MessageParam] = [{"role": "user", "content": "say hello to me"}]


def wait_until(condition: Callable[[], bool]) -> None:
    """Wait for the server thread to reach a state; fails only if it never does."""
    done = threading.Event()
    for _ in range(500):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("the fake never reached the state the test waits for")


@pytest.fixture
def llama() -> Iterator[FakeCloud]:
    with FakeCloud(lan_kind="llama-server", openai_key=None, models=("qwen2.5-32b",)) as box:
        yield box


def lan_client(box: FakeCloud) -> openai.OpenAI:
    return openai.OpenAI(
        api_key="anything", base_url=f"{box.base_url}/v1", max_retries=0, timeout=5
    )


# --- the faults ------------------------------------------------------------------------------


def test_wrong_model_names_another_model_whole_and_streamed(
    cloud: FakeCloud, openai_client: openai.OpenAI, anthropic_client: anthropic.Anthropic
) -> None:
    cloud.push(*[Fault.wrong_model("llama3.1-8b")] * 4)

    whole = openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    with openai_client.chat.completions.create(
        model="gpt-4.1", messages=CHAT, stream=True
    ) as stream:
        chunks = list(stream)
    message = anthropic_client.messages.create(model="claude-x", max_tokens=100, messages=MESSAGES)
    with anthropic_client.messages.stream(
        model="claude-x", max_tokens=100, messages=MESSAGES
    ) as events:
        streamed = events.get_final_message()

    assert whole.model == "llama3.1-8b" and whole.choices[0].message.content == cloud.reply
    assert {chunk.model for chunk in chunks} == {"llama3.1-8b"}
    assert message.model == streamed.model == "llama3.1-8b"
    assert streamed.content[0].type == "text" and streamed.content[0].text == cloud.reply
    assert openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT).model == "gpt-4.1"


def test_truncated_ends_the_stream_cleanly_without_finish_or_done(cloud: FakeCloud) -> None:
    cloud.push(Fault.truncated(after_chunks=3), Fault.truncated(after_chunks=2))
    key = {"authorization": f"Bearer {cloud.openai_key}"}
    body = {"model": "gpt-4.1", "messages": CHAT, "stream": True}

    response = httpx.post(f"{cloud.base_url}/v1/chat/completions", json=body, headers=key)
    anthropic_body = {"model": "c", "max_tokens": 9, "messages": MESSAGES, "stream": True}
    headers = {"x-api-key": cloud.anthropic_key, "anthropic-version": "2023-06-01"}
    message = httpx.post(f"{cloud.base_url}/v1/messages", json=anthropic_body, headers=headers)

    data = [line for line in response.text.splitlines() if line.startswith("data: ")]
    assert response.status_code == 200 and len(data) == 3  # the whole body arrived
    assert "[DONE]" not in response.text and '"finish_reason":"stop"' not in response.text
    assert json.loads(data[-1].removeprefix("data: "))["choices"][0]["delta"] == {
        "content": " from"
    }
    assert "message_start" in message.text and "message_stop" not in message.text


def test_a_plain_answer_is_not_truncated(cloud: FakeCloud, openai_client: openai.OpenAI) -> None:
    cloud.push(Fault.truncated(after_chunks=1))
    completion = openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    assert completion.choices[0].message.content == cloud.reply


def test_not_found_and_html_replace_the_answer(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.not_found(), Fault.html())

    with pytest.raises(openai.NotFoundError, match="Invalid URL"):
        openai_client.chat.completions.create(model="gpt-4.1", messages=CHAT)
    page = httpx.get(f"{cloud.base_url}/v1/models")

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert page.text.startswith("<!doctype html>")


def test_a_path_fault_comes_before_the_queue_until_lifted(
    cloud: FakeCloud, openai_client: openai.OpenAI
) -> None:
    cloud.push(Fault.status(503))
    cloud.fail("/v1/models", Fault.status(500))

    with pytest.raises(openai.InternalServerError) as first:
        openai_client.models.list()
    with pytest.raises(openai.InternalServerError) as second:
        openai_client.models.list()
    cloud.fail("/v1/models", None)
    with pytest.raises(openai.InternalServerError) as queued:
        openai_client.models.list()

    assert (first.value.status_code, second.value.status_code) == (500, 500)
    assert queued.value.status_code == 503
    assert [model.id for model in openai_client.models.list()] == ["gpt-4.1-mini", "gpt-4.1"]


# --- the LAN server --------------------------------------------------------------------------


def test_a_lan_server_answers_chats_without_a_key_and_lists_its_models_its_way(
    llama: FakeCloud,
) -> None:
    with lan_client(llama) as client:
        completion = client.chat.completions.create(model="qwen2.5-32b", messages=CHAT)
        listed = client.models.list()

    assert completion.choices[0].message.content == llama.reply
    assert [model.id for model in listed] == ["qwen2.5-32b"]
    assert listed.data[0].owned_by == "llamacpp"
    assert httpx.get(f"{llama.base_url}/health").json() == {"status": "ok"}


def test_a_lan_server_with_a_key_refuses_chats_without_it() -> None:
    with FakeCloud(lan_kind="vllm", openai_key="box-key", models=("m",)) as box:
        with lan_client(box) as client, pytest.raises(openai.AuthenticationError):
            client.chat.completions.create(model="m", messages=CHAT)
        assert httpx.get(f"{box.base_url}/v1/models").status_code == 401
        keyed = httpx.get(f"{box.base_url}/v1/models", headers={"authorization": "Bearer box-key"})
    assert keyed.json()["data"][0]["root"] == "m"


def test_queued_faults_are_for_generation_not_for_the_probes(llama: FakeCloud) -> None:
    llama.push(Fault.status(503))

    assert httpx.get(f"{llama.base_url}/slots").status_code == 200
    assert httpx.get(f"{llama.base_url}/v1/models").status_code == 200
    with lan_client(llama) as client:
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="qwen2.5-32b", messages=CHAT)
        assert client.chat.completions.create(model="qwen2.5-32b", messages=CHAT).choices


def test_not_found_on_a_lan_endpoint_is_the_engines_404(llama: FakeCloud) -> None:
    llama.fail("/slots", Fault.not_found())
    answer = httpx.get(f"{llama.base_url}/slots")
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "File Not Found"


def test_a_saturated_server_reports_every_slot_busy_and_a_queue(llama: FakeCloud) -> None:
    llama.running, llama.waiting = llama.slots, 6

    slots = httpx.get(f"{llama.base_url}/slots").json()
    metrics = httpx.get(f"{llama.base_url}/metrics").text

    assert [slot["is_processing"] for slot in slots] == [True] * 4
    assert "llamacpp:requests_deferred 6\n" in metrics


def test_running_counts_the_chats_in_flight(llama: FakeCloud) -> None:
    llama.push(Fault.black_hole())
    llama.running = 1
    body = json.dumps({"model": "qwen2.5-32b", "messages": CHAT}).encode()
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: box\r\ncontent-type: application/json\r\n"
        b"content-length: %d\r\n\r\n%s" % (len(body), body)
    )
    with socket.create_connection(("127.0.0.1", llama.port), timeout=5) as held:
        held.sendall(request)
        wait_until(lambda: llama.in_flight == 1)
        busy = [slot["is_processing"] for slot in httpx.get(f"{llama.base_url}/slots").json()]
        metrics = httpx.get(f"{llama.base_url}/metrics").text
    wait_until(lambda: llama.in_flight == 0)
    after = [slot["is_processing"] for slot in httpx.get(f"{llama.base_url}/slots").json()]

    assert busy == [True, True, False, False]
    assert "llamacpp:requests_processing 2\n" in metrics
    assert after == [True, False, False, False]


def test_a_loading_llama_server_refuses_chats_with_503(llama: FakeCloud) -> None:
    llama.loading = True
    with lan_client(llama) as client, pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="qwen2.5-32b", messages=CHAT)
    assert caught.value.status_code == 503 and "Loading model" in str(caught.value)


def test_without_lan_kind_the_engines_endpoints_are_the_apis_404s(cloud: FakeCloud) -> None:
    key = {"authorization": f"Bearer {cloud.openai_key}"}
    answer = httpx.get(f"{cloud.base_url}/slots", headers=key)
    assert answer.status_code == 404
    assert answer.json()["error"]["message"] == "Invalid URL (GET /slots)"


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"lan_kind": "sglang"}, "lan_kind 'sglang' is none of llama-server, vllm"),
        ({"lan_kind": "llama-server", "slots": 0}, "at least one slot"),
        ({"lan_kind": "vllm", "models": ()}, "give at least one in models"),
    ],
)
def test_a_lan_server_that_cannot_be_is_refused_with_what_to_change(
    options: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match=says):
        FakeCloud(**options)  # type: ignore[arg-type]
