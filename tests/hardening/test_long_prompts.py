"""Long prompts never stall the event loop.

The local model's prompt is formatted and tokenized on a worker thread, once per request; one
whose size alone shows that it cannot fit the context is refused without being tokenized, and a
failed request's ledger record counts it by its size.

The local backend is the real one (chat formatting, the size check, the context check, the
queue) over a fake engine whose tokenizer makes a token of every four bytes and notes whether
it was called on a thread that runs an event loop.  The cloud is the fake cloud.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_cloud import FakeCloud, Fault
from fastapi.testclient import TestClient
from scripted import ScriptedRuntime, scripted_app

from hybrid.api import bodies as direct
from hybrid.generation import GenerationDone, GenerationEvent, TextDelta, Usage
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.store import LedgerStore
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.routing.privacy import PrivacyHit, PrivacyScanner
from hybrid.settings import Settings, load_settings

N_CTX = 1024
BYTES_PER_TOKEN = 4  # the fake tokenizer's: its longest token is four bytes too
LONG = "Name the capital of France. " * 70  # 2 KB: about 600 tokens with the transcript
HUGE = "All work and no play makes Jack a dull boy. " * 24_000  # 1 MB
REFUSED_BY_SIZE = re.compile(
    r"prompt is ([\d,]+) bytes, at least ([\d,]+) tokens; the local model's context holds "
    r"1,024\."
)


@dataclass(frozen=True)
class Tokenized:
    text: str
    on_event_loop: bool


class FakeEngine:
    """One token per four bytes; remembers every text it tokenized, and where."""

    n_ctx = N_CTX

    def __init__(self) -> None:
        self.calls: list[Tokenized] = []

    def prompts(self, question: str) -> list[str]:
        """The prompts formatted for the local model around this question that it tokenized."""
        return [call.text for call in self.calls if f"User: {question.strip()}" in call.text]

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        self.calls.append(Tokenized(text, _runs_an_event_loop()))
        return [1] * (int(add_bos) + -(-len(text.encode()) // BYTES_PER_TOKEN))

    def longest_token_bytes(self) -> int | None:
        return BYTES_PER_TOKEN

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        emit(TextDelta("Paris."))
        emit(GenerationDone("stop", Usage(len(job.tokens), 1)))


def _runs_an_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class CountingRuntime(ScriptedRuntime):
    """The real backend in a ready runtime that, like the real one, counts tokens with it."""

    def count_tokens(self, text: str) -> int:
        backend = self.scripted
        assert isinstance(backend, LocalBackend)
        return backend.count_tokens(text)


@dataclass
class Hybrid:
    client: TestClient
    engine: FakeEngine
    settings: Settings
    running: contextlib.ExitStack

    def chat(self, model: str, content: str, **params: Any) -> Any:
        body = {"model": model, "messages": [{"role": "user", "content": content}], **params}
        return self.client.post("/v1/chat/completions", json=body)

    def records(self) -> list[LedgerRecord]:
        """The ledger's records, once the server stopped (the lifespan writes the last ones)."""
        self.running.close()
        store = LedgerStore.open(self.settings.ledger.resolved_path(self.settings.home))
        try:
            return store.recent(10)
        finally:
            store.close()


@pytest.fixture
def hybrid(fake: FakeCloud, tmp_path: Path) -> Iterator[Hybrid]:
    environ = {
        "HYBRID_HOME": str(tmp_path / "home"),
        "OPENAI_API_KEY": fake.openai_key,
        "OPENAI_BASE_URL": f"{fake.base_url}/v1",
    }
    cli = {"probe.measure_bandwidth": False}
    settings = load_settings(environ=environ, dotenv_file=None, cli=cli).settings
    engine = FakeEngine()
    backend = LocalBackend(
        engine,
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="fake-local",
        default_max_tokens=64,
        default_temperature=0.0,
    )
    app = scripted_app(settings, runtime=CountingRuntime(settings, backend))
    with contextlib.ExitStack() as running:
        running.callback(backend.queue.close)
        client = running.enter_context(TestClient(app))
        yield Hybrid(client, engine, settings, running)


def test_every_prompt_is_tokenized_once_and_off_the_event_loop(hybrid: Hybrid) -> None:
    short = hybrid.chat("local", "What is the capital of France?")
    routed = hybrid.chat("hybrid", LONG)

    assert short.status_code == 200 and routed.status_code == 200
    assert len(hybrid.engine.prompts("What is the capital of France?")) == 1
    assert len(hybrid.engine.prompts(LONG)) == 1  # routed on its count, then answered with it
    assert hybrid.engine.calls and not any(call.on_event_loop for call in hybrid.engine.calls)


def test_a_prompt_too_long_by_its_size_is_refused_without_being_tokenized(
    hybrid: Hybrid,
) -> None:
    refused = hybrid.chat("local", HUGE)

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "context_length_exceeded"
    found = REFUSED_BY_SIZE.search(error["message"])
    assert found is not None, error["message"]
    size, tokens = (int(group.replace(",", "")) for group in found.groups())
    assert size >= len(HUGE)  # the formatted prompt: the message and the transcript around it
    assert tokens == -(-size // BYTES_PER_TOKEN) > N_CTX
    assert hybrid.engine.calls == []


def test_an_oversized_prompt_escalates_with_its_length_as_the_reason(
    hybrid: Hybrid, fake: FakeCloud
) -> None:
    answered = hybrid.chat("hybrid", HUGE)

    assert answered.status_code == 200
    assert answered.headers["X-Hybrid-Route"] == "cloud"
    reason = re.fullmatch(r"length:(\d+)>1024", answered.headers["X-Hybrid-Reason"])
    assert reason is not None and int(reason.group(1)) >= len(HUGE) // BYTES_PER_TOKEN
    assert len(fake.requests) == 1
    assert hybrid.engine.calls == []


def test_when_the_cloud_fails_the_local_refusal_is_not_computed_again(
    hybrid: Hybrid, fake: FakeCloud
) -> None:
    # About 600 tokens of prompt and 900 asked for: the length policy sends it to the cloud.
    fake.push(Fault.wrong_key())
    failed = hybrid.chat("hybrid", LONG, max_tokens=900)

    assert failed.status_code == 503
    message = failed.json()["error"]["message"]
    assert "openai:" in message and "900 more were requested" in message
    assert len(hybrid.engine.prompts(LONG)) == 1  # for the route; the fallback reused it
    assert not any(call.on_event_loop for call in hybrid.engine.calls)  # the ledger's count too


def test_a_failed_oversized_prompt_is_recorded_by_its_size(hybrid: Hybrid, fake: FakeCloud) -> None:
    fake.push(Fault.wrong_key())
    failed = hybrid.chat("hybrid", HUGE)

    assert failed.status_code == 503
    assert REFUSED_BY_SIZE.search(failed.json()["error"]["message"])
    hybrid.client.close()  # the lifespan ends: every record is written
    [record] = hybrid.records()
    assert record.status == "error" and record.tokens_estimated
    assert record.prompt_tokens == -(-len(HUGE.encode()) // 4)
    assert hybrid.engine.calls == []  # neither the fallback nor the ledger tokenized it


def test_a_long_body_is_parsed_and_scanned_off_the_event_loop(
    hybrid: Hybrid, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A multi-megabyte body takes pydantic and the privacy scan tens of milliseconds: on the
    # event loop, that would hold /health and every stream for as long.
    parsed: list[tuple[int, bool]] = []
    scanned: list[tuple[int, bool]] = []
    parse = direct.parse_body
    scan = PrivacyScanner.first

    def recording_parse(model: Any, raw: bytes) -> Any:
        parsed.append((len(raw), _runs_an_event_loop()))
        return parse(model, raw)

    def recording_scan(self: PrivacyScanner, text: str) -> PrivacyHit | None:
        scanned.append((len(text), _runs_an_event_loop()))
        return scan(self, text)

    monkeypatch.setattr(direct, "parse_body", recording_parse)
    monkeypatch.setattr(PrivacyScanner, "first", recording_scan)

    assert hybrid.chat("hybrid", "What is the capital of France?").status_code == 200
    assert hybrid.chat("hybrid", HUGE).status_code == 200

    short_parse, long_parse = parsed
    assert long_parse[0] > len(HUGE) and not long_parse[1]
    assert short_parse[1]  # a short body is parsed in place: a thread hop would cost more
    assert any(size >= len(HUGE) and not on_loop for size, on_loop in scanned)
    assert all(not on_loop for size, on_loop in scanned if size >= len(HUGE))
