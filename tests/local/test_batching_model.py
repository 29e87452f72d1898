"""The batched engine on the real embedded model: requests decode together, each with its own
settings, and a slot's cache serves the next request that shares its start.

Overlap is made certain without timing: the long answer is held to letters by a grammar that
never lets it end, so it runs until it is cancelled, after the others have finished.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from greedy import engine_job, greedy_job

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationDone, GenerationEvent, TextDelta
from hybrid.local.engine import EngineJob, LlamaEngine, LoadOptions
from hybrid.models.embedded import ensure_embedded_model

# Every wait is for an event or a thread's end, however slowly the machine decodes; a hang
# is ended by the timeout below.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ENDLESS = "root ::= [a-z ] root"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaEngine]:
    path: Path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    options = LoadOptions(
        n_ctx=1024, n_threads=2, n_gpu_layers=0, n_batch=64, n_parallel=3, kv_cache_type="q8_0"
    )
    loaded = LlamaEngine.load(path, options)
    yield loaded
    loaded.close()


@dataclass
class Answer:
    text: list[str] = field(default_factory=list)
    logprobs: int = 0
    done: GenerationDone | None = None
    first: threading.Event = field(default_factory=threading.Event)

    def emit(self, event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            self.text.append(event.text)
            self.logprobs += len(event.logprobs)
            self.first.set()
        elif isinstance(event, GenerationDone):
            self.done = event

    @property
    def whole(self) -> str:
        return "".join(self.text)


def endless(engine: LlamaEngine) -> EngineJob:
    from llama_cpp.llama_grammar import LlamaGrammar

    grammar = LlamaGrammar.from_string(ENDLESS, verbose=False)
    return engine_job(engine, "Write words:", max_tokens=900, grammar=grammar)


def run(engine: LlamaEngine, answer: Answer, task: EngineJob, cancel: threading.Event) -> None:
    engine.run(task, cancel, answer.emit)


def test_requests_decode_together_each_with_its_own_settings(engine: LlamaEngine) -> None:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    long, stop = Answer(), threading.Event()
    runner = threading.Thread(target=run, args=(engine, long, endless(engine), stop))
    runner.start()
    long.first.wait()  # the long answer is decoding
    counted, json_answer = Answer(), Answer()
    counting = engine_job(
        engine, "Count: 1, 2, 3,", stop=(" 6",), request_stop=(" 6",), top_logprobs=2
    )
    constrained = engine_job(
        engine,
        "A JSON object describing a cat:",
        max_tokens=48,
        grammar=LlamaGrammar.from_string(JSON_GBNF, verbose=False),
    )
    side = [
        threading.Thread(target=run, args=(engine, counted, counting, threading.Event())),
        threading.Thread(target=run, args=(engine, json_answer, constrained, threading.Event())),
    ]
    for thread in side:
        thread.start()
    for thread in side:
        thread.join()
    assert long.done is None  # still running: everything else decoded beside it
    stop.set()
    runner.join()

    assert counted.done is not None and json_answer.done is not None and long.done is not None
    # Its stop sequence ended the count, reported as the request's; logprobs per token.
    assert counted.done.finish_reason == "stop" and counted.done.stop_sequence == " 6"
    assert " 6" not in counted.whole and counted.whole.startswith(" 4, 5,")
    assert counted.logprobs == counted.done.usage.completion_tokens > 0
    # The grammar held only the JSON answer, and its text is JSON once it completes.
    if json_answer.done.finish_reason == "stop":
        json.loads(json_answer.whole)
    else:
        assert json_answer.whole.lstrip().startswith(("{", "["))
    assert json_answer.logprobs == 0
    # Each decoded beside at least one other, at every step.
    assert counted.done.batch_size is not None and counted.done.batch_size >= 2.0
    assert json_answer.done.batch_size is not None and json_answer.done.batch_size >= 2.0
    # The long answer was stopped by its cancel, keeping what it generated.
    assert long.done.cancelled and long.done.usage.completion_tokens > 0
    assert set(long.whole) <= set("abcdefghijklmnopqrstuvwxyz ")


def test_a_cancelled_request_frees_its_slot_and_the_others_finish(engine: LlamaEngine) -> None:
    cancelled, cancel = Answer(), threading.Event()
    runner = threading.Thread(target=run, args=(engine, cancelled, endless(engine), cancel))
    runner.start()
    cancelled.first.wait()
    other = Answer()
    beside = threading.Thread(
        target=run, args=(engine, other, engine_job(engine, "Count: 10, 11,"), threading.Event())
    )
    beside.start()
    cancel.set()
    runner.join()
    beside.join()
    assert cancelled.done is not None and cancelled.done.cancelled
    assert other.done is not None and not other.done.cancelled
    assert other.done.usage.completion_tokens > 0
    # Every slot is free again: as many answers as slots run at once.
    answers = [Answer() for _ in range(engine.n_parallel)]
    threads = [
        threading.Thread(
            target=run, args=(engine, answer, engine_job(engine, f"{i}:"), threading.Event())
        )
        for i, answer in enumerate(answers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(answer.done is not None for answer in answers)


def test_the_next_turn_reads_only_what_is_new(engine: LlamaEngine) -> None:
    system = "You are a terse assistant. Answer in one short sentence. " * 6
    first_prompt = system + "\nUser: Name a colour.\nAssistant:"
    first = Answer()
    engine.run(engine_job(engine, first_prompt), threading.Event(), first.emit)
    assert first.done is not None
    second_prompt = first_prompt + first.whole + "\nUser: Another one.\nAssistant:"
    second = Answer()
    engine.run(engine_job(engine, second_prompt), threading.Event(), second.emit)
    assert second.done is not None
    usage = second.done.usage
    # Everything the first turn left in the cache is reused; only the new turn is read.
    assert usage.cache_read_tokens >= len(engine.tokenize(first_prompt, add_bos=True)) - 1
    assert engine.prompt_tokens_evaluated == usage.prompt_tokens - usage.cache_read_tokens
    assert engine.prompt_tokens_evaluated < usage.prompt_tokens // 3


def test_a_greedy_answer_alone_is_repeatable(engine: LlamaEngine) -> None:
    answers = [Answer(), Answer()]
    for answer in answers:
        engine.run(engine_job(engine, "The capital of France is"), threading.Event(), answer.emit)
    assert answers[0].whole and answers[0].whole == answers[1].whole
    assert answers[1].done is not None and answers[1].done.batch_size == 1.0


def test_an_empty_prompt_fails_alone_and_the_answer_beside_it_goes_on(
    engine: LlamaEngine,
) -> None:
    # A model whose tokenizer adds no BOS turns an empty prompt into no token at all.
    long, stop = Answer(), threading.Event()
    runner = threading.Thread(target=run, args=(engine, long, endless(engine), stop))
    runner.start()
    long.first.wait()
    for tokens in ([], [2**30]):
        with pytest.raises(InvalidRequestError, match="prompt"):
            engine.run(greedy_job(tokens), threading.Event(), Answer().emit)
    assert long.done is None  # still decoding
    stop.set()
    runner.join()
    assert long.done is not None and long.done.cancelled
    assert long.done.usage.completion_tokens > 0


def test_an_answer_cut_by_max_tokens_drops_the_start_of_a_format_stop_only(
    engine: LlamaEngine,
) -> None:
    # Greedy, the model counts " 4, 5": five tokens, the start of the stop below.
    stop = " 4, 5, 6, 7"
    as_format, as_own = Answer(), Answer()
    for answer, own in ((as_format, ()), (as_own, (stop,))):
        job = engine_job(engine, "Count: 1, 2, 3,", max_tokens=5, stop=(stop,), request_stop=own)
        engine.run(job, threading.Event(), answer.emit)
    assert as_own.whole == " 4, 5"
    assert as_format.whole == ""
    assert as_format.done is not None and as_format.done.finish_reason == "length"


def test_log_probabilities_stopped_mid_answer_end_with_the_tokens_before(
    engine: LlamaEngine,
) -> None:
    stopped = threading.Event()
    deltas: list[TextDelta] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            deltas.append(event)
            stopped.set()  # on the scheduler's thread, before the next token is sampled

    job = engine_job(
        engine, "Count: 1, 2, 3,", max_tokens=8, top_logprobs=0, logprobs_stopped=stopped
    )
    engine.run(job, threading.Event(), emit)
    assert len(deltas) > 1 and deltas[0].logprobs
    assert all(not delta.logprobs for delta in deltas[1:])
