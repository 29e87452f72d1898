"""Concurrent local answers through ``hybrid serve`` with ``local.parallel = 4``: the real
embedded model, the openai SDK, requests sent at once.

The model decodes up to four requests together; each keeps its own sampling, grammar, stop
sequences, logprobs and cancellation.  That requests really overlap is read from the server's
own ledger (``time`` is a request's arrival, ``latency_s`` the time to its last byte), not from
how fast anything ran: a short answer that arrives after a long one has started ends before
the long one only when the two decode together.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import openai
import pytest
from ledger_load import ledger_rows
from prometheus_client.parser import text_string_to_metric_families
from server_process import RunningServer

# Every wait is for an event, a thread's end or the server going idle, however slowly the
# machine decodes; a hang is ended by the timeout below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

T = TypeVar("T")

SLOTS = 4
COUNTING = "1, 2, 3, 4, 5,"
FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
CAT_SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer"}},
    "required": ["name", "age"],
}


@dataclass
class Served:
    """The server under test, its SDK client and its ledger file."""

    server: RunningServer
    api: openai.OpenAI
    ledger: Path

    def rows(self) -> dict[str, dict[str, object]]:
        """The ledger's rows by request id, once the server is idle and has committed them."""
        wait_until_idle(self.server)
        httpx.get(f"{self.server.base_url}/v1/hybrid/stats")  # returns once records are committed
        return ledger_rows(self.ledger)


@pytest.fixture(scope="module")
def served(
    start_server: Callable[..., RunningServer], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Served]:
    ledger = tmp_path_factory.mktemp("concurrent-ledger") / "ledger.sqlite3"
    env = {
        "HYBRID_LOCAL__PARALLEL": str(SLOTS),
        "HYBRID_LEDGER__PATH": str(ledger),
        "HYBRID_LOG_LEVEL": "warning",
    }
    running = start_server("--ctx", "1024", env=env)
    api = openai.OpenAI(
        base_url=f"{running.base_url}/v1", api_key="unused", max_retries=0, timeout=900
    )
    yield Served(running, api, ledger)
    api.close()
    assert running.stop() == 0, running.output(40)


def together(*calls: Callable[[], T]) -> list[T]:
    """Run `calls` at once, each on its own thread, released together; their results in order
    (a call's exception is raised here)."""
    barrier = threading.Barrier(len(calls))

    def released(call: Callable[[], T]) -> T:
        barrier.wait(timeout=30)
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        futures = [pool.submit(released, call) for call in calls]
        return [future.result() for future in futures]


def wait_until_idle(server: RunningServer) -> None:
    """Poll ``/health`` until it shows no request running or waiting."""
    while True:
        queue = httpx.get(f"{server.base_url}/health").json()["queue"]
        if queue["depth"] == 0 and queue["waiting"] == 0:
            return
        threading.Event().wait(0.1)


def ended_at(row: dict[str, object]) -> float:
    """When the server sent a request's last byte (Unix seconds)."""
    return float(row["time"]) + float(row["latency_s"])  # type: ignore[arg-type]


@dataclass
class StreamReader:
    """Reads a streamed completion on a thread of its own: its text, its finish reason, and
    events for its first text and its end."""

    api: openai.OpenAI
    body: dict[str, Any]
    stop_after: int | None = None
    request_id: str = ""
    text: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    completion_tokens: int | None = None
    first: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._read, daemon=True)
        thread.start()
        return thread

    def _read(self) -> None:
        try:
            with self.api.completions.with_streaming_response.create(
                **self.body, stream=True, stream_options={"include_usage": True}
            ) as response:
                self.request_id = response.headers["x-hybrid-request-id"]
                for chunk in response.parse():
                    if chunk.usage is not None:
                        self.completion_tokens = chunk.usage.completion_tokens
                    for choice in chunk.choices:
                        self.text.append(choice.text)
                        self.finish_reason = choice.finish_reason or self.finish_reason
                        if choice.text:
                            self.first.set()
                    if self.stop_after is not None and len(self.text) >= self.stop_after:
                        break  # leaving the block closes the connection mid-stream
        except BaseException as exc:
            self.error = exc
        finally:
            self.first.set()
            self.done.set()


def counting(max_tokens: int) -> dict[str, Any]:
    """A greedy count the base model continues until max_tokens."""
    return {"model": "local", "prompt": COUNTING, "max_tokens": max_tokens, "temperature": 0}


def test_a_short_answer_finishes_while_a_long_stream_is_still_decoding(served: Served) -> None:
    long = StreamReader(served.api, counting(300))
    reader = long.start()
    long.first.wait()
    assert long.error is None, long.error
    short = served.api.chat.completions.with_raw_response.create(
        model="local", messages=FRANCE, temperature=0, max_tokens=16
    )
    # Answered one at a time, the short answer would have waited for all 300 tokens.
    still_streaming = not long.done.is_set()
    assert "Paris" in (short.parse().choices[0].message.content or "")
    reader.join()
    assert long.error is None, long.error
    assert long.finish_reason == "length" and long.completion_tokens == 300
    assert still_streaming, "the long stream ended before the short answer returned"
    # The server's own clock agrees: the short request arrived after the long one began and
    # was answered before the long one's last token.
    rows = served.rows()
    long_row, short_row = rows[long.request_id], rows[short.headers["x-hybrid-request-id"]]
    assert long_row["route"] == short_row["route"] == "local"
    assert float(short_row["time"]) > float(long_row["time"])  # type: ignore[arg-type]
    assert ended_at(short_row) < ended_at(long_row)


def test_health_shows_the_slots_asked_for(served: Served) -> None:
    slots = httpx.get(f"{served.server.base_url}/health").json()["slots"]
    assert slots["total"] == SLOTS
    assert slots["n_ctx_per_slot"] == 1024


def test_answers_sent_together_report_decoding_in_one_batch(served: Served) -> None:
    counts = together(*[lambda: served.api.completions.create(**counting(48))] * SLOTS)
    assert all(c.usage is not None and c.usage.completion_tokens == 48 for c in counts)
    # The speed model files each answer under the mean number of sequences decoded beside it
    # (rounded): answered one at a time, every answer would be filed under 1.
    wait_until_idle(served.server)
    slots = httpx.get(f"{served.server.base_url}/health").json()["slots"]
    sizes = [int(size) for size in slots["decode_tokens_per_s_by_batch"]]
    assert max(sizes) >= 2, slots


def test_concurrent_requests_each_end_at_their_own_stop_sequence(served: Served) -> None:
    def count(stop: list[str] | None, max_tokens: int = 40) -> Any:
        return lambda: served.api.completions.create(**counting(max_tokens), stop=stop)

    nine, twelve, comma, unbounded = together(
        count([" 9"]), count([" 12", "twelve"]), count([","]), count(None, max_tokens=12)
    )
    nine_text = nine.choices[0].text
    assert nine.choices[0].finish_reason == "stop"
    assert "8" in nine_text and "9" not in nine_text
    twelve_text = twelve.choices[0].text
    assert twelve.choices[0].finish_reason == "stop"
    assert "11" in twelve_text and "12" not in twelve_text
    comma_text = comma.choices[0].text
    assert comma.choices[0].finish_reason == "stop"
    assert comma_text.strip() == "6"
    assert unbounded.choices[0].finish_reason == "length"
    assert unbounded.usage is not None and unbounded.usage.completion_tokens == 12
    assert "6, 7" in unbounded.choices[0].text


def test_json_grammars_constrain_only_their_own_requests(served: Served) -> None:
    api = served.api
    # A prompt the model copies: a 270M model asked to invent an object may repeat its keys
    # until the token cap, which ends the answer with "length", not "stop".
    cat_prompt = 'Repeat this JSON object: {"name": "Tom", "age": 3}'
    json_object, json_schema, free_chat, free_count = together(
        lambda: api.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": cat_prompt}],
            response_format={"type": "json_object"},
            max_tokens=120,
            temperature=0,
        ),
        lambda: api.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "Describe a cat."}],
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "cat", "schema": CAT_SCHEMA},
            },
            max_tokens=120,
            temperature=0,
        ),
        lambda: api.chat.completions.create(
            model="local", messages=FRANCE, temperature=0, max_tokens=24
        ),
        lambda: api.completions.create(**counting(16)),
    )
    assert json_object.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(json_object.choices[0].message.content or ""), dict)
    cat = json.loads(json_schema.choices[0].message.content or "")
    assert isinstance(cat["name"], str) and isinstance(cat["age"], int)
    # Beside them, free text stays free: a grammar leaking into these would force a "{".
    answer = free_chat.choices[0].message.content or ""
    assert "Paris" in answer and not answer.lstrip().startswith("{")
    assert free_chat.choices[0].finish_reason == "stop"
    assert free_count.choices[0].text.lstrip().startswith("6, 7")


def test_a_cancelled_stream_leaves_the_one_beside_it_running(served: Served) -> None:
    running = StreamReader(
        served.api,
        {"model": "local", "prompt": "10, 20, 30,", "max_tokens": 200, "temperature": 0},
    )
    running_thread = running.start()
    running.first.wait()
    assert running.error is None, running.error
    cancelled = StreamReader(served.api, counting(300), stop_after=3)
    cancelled.start().join()
    assert cancelled.error is None, cancelled.error
    assert any(ch.isdigit() for ch in "".join(cancelled.text))
    running_thread.join()
    assert running.error is None, running.error
    assert running.finish_reason == "length" and running.completion_tokens == 200
    assert "40, 50" in "".join(running.text)
    rows = served.rows()  # nothing runs or waits any more: both slots are free
    cancelled_row, running_row = rows[cancelled.request_id], rows[running.request_id]
    assert cancelled_row["status"] == "cancelled" and running_row["status"] == "ok"
    # The cancel happened while the other answer was still decoding.
    assert ended_at(cancelled_row) < ended_at(running_row)
    health = httpx.get(f"{served.server.base_url}/health").json()
    assert health["queue"]["depth"] == 0 and health["queue"]["waiting"] == 0
    assert health["slots"]["busy"] == 0
    # Every slot takes work again: as many requests as slots, at once.
    answers = together(
        *[
            lambda: served.api.chat.completions.create(
                model="local", messages=FRANCE, temperature=0, max_tokens=16
            )
            for _ in range(SLOTS)
        ]
    )
    assert all("Paris" in (a.choices[0].message.content or "") for a in answers)


def test_logprobs_are_reported_only_to_the_request_that_asked(served: Served) -> None:
    api = served.api
    with_logprobs, without, beside = together(
        lambda: api.chat.completions.create(
            model="local",
            messages=FRANCE,
            temperature=0,
            logprobs=True,
            top_logprobs=3,
            max_tokens=10,
        ),
        lambda: api.chat.completions.create(
            model="local", messages=FRANCE, temperature=0, max_tokens=10
        ),
        lambda: api.completions.create(**counting(20)),
    )
    logprobs = with_logprobs.choices[0].logprobs
    assert logprobs is not None and logprobs.content
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in logprobs.content)
    # Greedy: each token is its own row's most likely one, not a neighbour's.
    assert all(t.logprob == pytest.approx(t.top_logprobs[0].logprob) for t in logprobs.content)
    # They are this answer's tokens, not those of the count decoded beside it.
    answer = with_logprobs.choices[0].message.content or ""
    assert answer and "".join(t.token for t in logprobs.content).strip().startswith(answer.strip())
    assert without.choices[0].logprobs is None
    assert beside.choices[0].logprobs is None


def test_a_greedy_answer_beside_others_is_as_sensible_as_alone(served: Served) -> None:
    api = served.api
    questions = [
        ("What is the capital of France?", "Paris"),
        ("Which language is spoken in Mexico?", "Spanish"),
    ]

    def ask(question: str) -> Callable[[], Any]:
        return lambda: api.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": question}],
            temperature=0,
            max_tokens=24,
        )

    alone = [ask(question)() for question, _ in questions]
    *beside, count = together(
        *[ask(question) for question, _ in questions],
        lambda: api.completions.create(**counting(60)),
    )
    # Batched sums may differ in the last digits from a lone decode, so the texts are not
    # compared; each must be the short, right answer both times.
    for (_, expected), lone, batched in zip(questions, alone, beside, strict=True):
        for answer in (lone, batched):
            text = answer.choices[0].message.content or ""
            assert expected in text and len(text) < 120, text
            assert answer.choices[0].finish_reason == "stop"
    assert count.choices[0].text.lstrip().startswith("6, 7")


def test_a_second_turn_reads_the_first_turn_from_the_slot_cache(served: Served) -> None:
    api = served.api
    note = (
        "I flew from Lisbon to Oslo in May, took the night train from Oslo to Stockholm, and "
        "spent the last week of the trip in Helsinki with my sister. "
    )
    first = [{"role": "user", "content": note + "Which city did I fly from?"}]
    turn1 = api.chat.completions.create(model="local", messages=first, temperature=0, max_tokens=20)
    reply = turn1.choices[0].message.content or ""
    second = [
        *first,
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "Where did I spend the last week?"},
    ]
    turn2 = api.chat.completions.with_raw_response.create(
        model="local", messages=second, temperature=0, max_tokens=20
    )
    usage2 = turn2.parse().usage
    assert turn1.usage is not None and usage2 is not None
    row = served.rows()[turn2.headers["x-hybrid-request-id"]]
    # The whole first prompt is the start of the second; only what follows it is prefilled.
    assert int(row["cache_read_tokens"]) >= turn1.usage.prompt_tokens  # type: ignore[call-overload]
    assert int(row["cache_read_tokens"]) < usage2.prompt_tokens  # type: ignore[call-overload]
    # OpenAI's wire reports them as prompt_tokens_details.cached_tokens.
    details = usage2.prompt_tokens_details
    assert details is not None and details.cached_tokens == row["cache_read_tokens"]
    # /metrics counts the prefill saved as the ledger does.
    metrics = httpx.get(f"{served.server.base_url}/metrics").text
    saved = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "hybrid_local_prefill_tokens_saved_total"
    ]
    in_ledger = sum(
        int(r["cache_read_tokens"])  # type: ignore[call-overload]
        for r in served.rows().values()
        if r["route"] == "local"
    )
    assert saved == [in_ledger]


def test_a_prompt_longer_than_one_slot_is_refused_though_all_slots_hold_more(
    served: Served,
) -> None:
    # --ctx is per slot: four slots of 1,024 tokens do not make room for a 2,000-token prompt.
    long_prompt = "The quick brown fox jumps over the lazy dog. " * 200
    with pytest.raises(openai.BadRequestError) as caught:
        served.api.chat.completions.create(
            model="local", messages=[{"role": "user", "content": long_prompt}], max_tokens=16
        )
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "context_length_exceeded"
    assert "1,024" in error["message"]
