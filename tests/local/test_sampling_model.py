"""OpenAI's logit_bias, frequency_penalty and presence_penalty on the real embedded model: they
change what greedy decoding picks, as they do on llama.cpp's server and Ollama."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from greedy import engine_job, greedy_job

from hybrid.generation import GenerationEvent, TextDelta, TokenLogprob
from hybrid.local.engine import EngineJob, LlamaEngine, LoadOptions
from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

RAINBOW = "Name three colours of the rainbow:"
REPEAT = "Repeat after me: the the the the the the the the the the"


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlamaEngine]:
    path: Path = ensure_embedded_model(tmp_path_factory.mktemp("home"))
    loaded = LlamaEngine.load(
        path, LoadOptions(n_ctx=512, n_threads=2, n_gpu_layers=0, n_batch=64, n_parallel=1)
    )
    yield loaded
    loaded.close()


def generate(engine: LlamaEngine, job: EngineJob) -> tuple[str, list[bytes]]:
    """The answer's text and the bytes of each token generated (``top_logprobs`` must be set)."""
    text: list[str] = []
    tokens: list[TokenLogprob] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            text.append(event.text)
            tokens.extend(event.logprobs)

    engine.run(job, threading.Event(), emit)
    return "".join(text), [bytes(token.bytes) for token in tokens]


def answer(engine: LlamaEngine, prompt: str, **changes: object) -> tuple[str, list[bytes]]:
    job = engine_job(engine, prompt, **{"max_tokens": 12, "top_logprobs": 0, **changes})
    return generate(engine, job)


def test_a_ban_on_every_token_of_the_greedy_answer_changes_it(engine: LlamaEngine) -> None:
    plain, plain_tokens = answer(engine, RAINBOW)
    banned = sorted(set(engine.tokenize(plain, add_bos=False)))
    biased, biased_tokens = answer(engine, RAINBOW, logit_bias=tuple((t, -100.0) for t in banned))
    assert biased.strip() and biased != plain
    # The bias applies before the greedy pick: not even the first token survives.
    assert biased_tokens[0] != plain_tokens[0]


def test_a_bias_of_100_makes_greedy_choose_that_token(engine: LlamaEngine) -> None:
    (banana,) = engine.tokenize(" banana", add_bos=False)
    text, _ = answer(engine, RAINBOW, max_tokens=4, logit_bias=((banana, 100.0),))
    assert text == " banana" * 4


def test_frequency_penalty_breaks_a_repetition_counting_the_prompt(engine: LlamaEngine) -> None:
    plain, plain_tokens = answer(engine, REPEAT)
    assert plain.split().count("the") >= 10  # the model keeps repeating
    penalized, penalized_tokens = answer(engine, REPEAT, frequency_penalty=2.0)
    assert penalized.split().count("the") < 3
    # Its first token is already another: the prompt's "the"s count, as on llama.cpp's server.
    assert penalized_tokens[0] != plain_tokens[0]


def test_a_bias_applies_to_an_answer_started_from_an_embeddings_logits(
    engine: LlamaEngine,
) -> None:
    tokens = engine.tokenize(RAINBOW, add_bos=True)
    _, plain_tokens = generate(engine, greedy_job(tokens, max_tokens=3, top_logprobs=0))
    first = engine.tokenize(plain_tokens[0].decode(), add_bos=False)
    engine.embed(tokens)  # keeps the last prompt token's logits with the slot's cache
    job = greedy_job(
        tokens, max_tokens=3, top_logprobs=0, logit_bias=tuple((t, -100.0) for t in first)
    )
    _, biased_tokens = generate(engine, job)
    assert engine.prompt_tokens_evaluated == 0  # sampled from the kept logits
    assert biased_tokens[0] != plain_tokens[0]


def test_penalties_leave_a_json_grammar_to_the_answer(engine: LlamaEngine) -> None:
    from llama_cpp.llama_grammar import JSON_GBNF, LlamaGrammar

    grammar = LlamaGrammar.from_string(JSON_GBNF, verbose=False)
    text, _ = answer(
        engine,
        'Describe a cat as JSON: {"name": "Tom", "colour": "grey"}\nAnother cat:',
        max_tokens=40,
        grammar=grammar,
        frequency_penalty=0.5,
        presence_penalty=0.5,
    )
    assert text.lstrip().startswith("{")
    if text.rstrip().endswith("}"):
        assert isinstance(json.loads(text), dict)


def test_top_k_of_one_draws_the_greedy_answer_at_any_temperature(engine: LlamaEngine) -> None:
    greedy, _ = answer(engine, RAINBOW)
    drawn = {answer(engine, RAINBOW, temperature=1.0, top_k=1, seed=seed)[0] for seed in range(4)}
    assert drawn == {greedy}
