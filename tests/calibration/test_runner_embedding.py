"""Prompt vectors and confidences recorded with calibration answers, and answer records reused
item by item."""

from __future__ import annotations

import asyncio
import json
import math
from pathlib import Path

import numpy as np
import pytest
from calibration_fakes import FunctionBackend

from hybrid.errors import ConfigError, ContextLengthExceededError
from hybrid.generation import GenerationRequest
from hybrid.routing.calibration.items import calibration_set
from hybrid.routing.calibration.record import (
    AnswerRecord,
    load_record,
    save_record,
    split_reusable,
)
from hybrid.routing.calibration.runner import ItemAnswer, answer_items

ITEMS = calibration_set(0, per_category=2)


class EmbeddingBackend(FunctionBackend):
    """Answers "I do not know." and gives each prompt a vector made from its length."""

    def __init__(self, refuse: str | None = None) -> None:
        super().__init__(lambda prompt: "I do not know.")
        self.embedded: list[GenerationRequest] = []
        self._refuse = refuse

    async def prompt_embedding(self, request: GenerationRequest) -> np.ndarray:
        self.embedded.append(request)
        text = request.messages[-1].content
        if self._refuse is not None and text == self._refuse:
            raise ContextLengthExceededError(prompt_tokens=9000, max_tokens=8, context_length=8192)
        return np.array([len(text), 0.5, -1.0], dtype=np.float32)


def test_the_first_presentation_s_vector_is_recorded_with_the_answer() -> None:
    backend = EmbeddingBackend()
    answers = asyncio.run(
        answer_items(backend, ITEMS, max_tokens=8, progress=lambda done, total: None, embed=True)
    )

    assert len(backend.embedded) == len(ITEMS)  # once per item, not per presentation
    for item, answer in zip(ITEMS, answers, strict=True):
        assert answer.embedding == (float(len(item.messages[-1].content)), 0.5, -1.0)
    assert backend.embedded[0].request_id == backend.requests[0].request_id


def test_a_prompt_the_model_cannot_take_has_no_vector() -> None:
    refused = ITEMS[0].messages[-1].content
    backend = EmbeddingBackend(refuse=refused)
    answers = asyncio.run(
        answer_items(backend, ITEMS, max_tokens=8, progress=lambda done, total: None, embed=True)
    )

    assert answers[0].embedding is None
    assert answers[1].embedding is not None


def test_asking_for_vectors_from_a_backend_without_them_says_what_to_do() -> None:
    backend = FunctionBackend(lambda prompt: "12")
    with pytest.raises(ConfigError, match="prompt vectors"):
        asyncio.run(
            answer_items(backend, ITEMS, max_tokens=8, progress=lambda d, t: None, embed=True)
        )
    answers = asyncio.run(answer_items(backend, ITEMS, max_tokens=8, progress=lambda d, t: None))
    assert all(answer.embedding is None for answer in answers)


def test_vectors_round_trip_exactly_and_old_answers_still_load() -> None:
    vector = tuple(float(v) for v in np.array([0.1, -3.25e-7, 12345.678], dtype=np.float32))
    answer = ItemAnswer("facts-000", ("Paris",), True, vector)

    assert ItemAnswer.from_json(json.loads(json.dumps(answer.to_json()))) == answer
    old = {"id": "facts-000", "texts": ["Paris"], "correct": True}
    assert ItemAnswer.from_json(old).embedding is None
    assert "embedding" not in ItemAnswer("x", ("y",), False).to_json()
    with pytest.raises(ConfigError, match="embedding"):
        ItemAnswer.from_json({**old, "embedding": ["a"]})


def test_a_record_serves_matching_answers_item_by_item(tmp_path: Path) -> None:
    answers = tuple(
        ItemAnswer(item.id, ("x",), i % 2 == 0, (float(i),)) for i, item in enumerate(ITEMS)
    )
    record = AnswerRecord("ab" * 32, 0, 2, 24, tuple(item.prompt for item in ITEMS), answers)
    save_record(tmp_path, record, "external")

    loaded = load_record(tmp_path, "ab" * 32, "external")
    assert loaded is not None
    assert load_record(tmp_path, "ab" * 32) is None  # another record name
    reusable = loaded.reusable(seed=0, max_tokens=24)
    assert reusable[(ITEMS[3].id, ITEMS[3].prompt)] == answers[3]
    assert loaded.reusable(seed=1, max_tokens=24) == {}
    assert loaded.reusable(seed=0, max_tokens=16) == {}


def test_the_first_presentation_s_confidence_is_recorded_with_the_answer() -> None:
    def logprob(prompt: str) -> float:  # each word's; another for every presentation
        return -(sum(i * ord(c) for i, c in enumerate(prompt)) % 997) / 1000

    backend = FunctionBackend(lambda prompt: "Paris is it", logprob)
    answers = asyncio.run(answer_items(backend, ITEMS, max_tokens=8, progress=lambda d, t: None))

    assert {request.params.top_logprobs for request in backend.requests} == {0}
    for item, answer in zip(ITEMS, answers, strict=True):
        first = item.presentations[0][-1].content
        assert answer.confidence == pytest.approx(math.exp(logprob(first)))
    choice = next(item for item in ITEMS if len(item.presentations) > 1)
    assert len({logprob(p[-1].content) for p in choice.presentations}) > 1

    silent = FunctionBackend(lambda prompt: "Paris")  # gives no log-probabilities
    answers = asyncio.run(answer_items(silent, ITEMS, max_tokens=8, progress=lambda d, t: None))
    assert all(answer.confidence is None for answer in answers)


def test_confidences_round_trip_and_a_bad_one_says_what_to_do() -> None:
    answer = ItemAnswer("facts-000", ("Paris",), True, None, 0.8125)
    assert ItemAnswer.from_json(json.loads(json.dumps(answer.to_json()))) == answer
    with_vector = ItemAnswer("facts-000", ("Paris",), True, (1.0,), 0.25)
    assert ItemAnswer.from_json(json.loads(json.dumps(with_vector.to_json()))) == with_vector
    assert "confidence" not in ItemAnswer("x", ("y",), False).to_json()
    old = {"id": "facts-000", "texts": ["Paris"], "correct": True}
    for bad in (1.5, -0.1, "high", True):
        with pytest.raises(ConfigError, match=r"confidence .*hybrid calibrate"):
            ItemAnswer.from_json({**old, "confidence": bad})


def test_a_run_that_needs_confidences_asks_again_the_answers_recorded_without_one() -> None:
    items = ITEMS[:3]
    answers = (
        ItemAnswer(items[0].id, ("x",) * len(items[0].presentations), False, None, 0.5),
        ItemAnswer(items[1].id, ("x",) * len(items[1].presentations), False),
        ItemAnswer(items[2].id, ("",) * len(items[2].presentations), False),  # refused
    )
    record = AnswerRecord("ab" * 32, 0, 2, 24, tuple(item.prompt for item in items), answers)

    reused, missing = split_reusable(record, items, seed=0, max_tokens=24, vectors=False)
    assert set(reused) == {item.id for item in items} and missing == []
    reused, missing = split_reusable(
        record, items, seed=0, max_tokens=24, vectors=False, confidence=True
    )
    assert set(reused) == {items[0].id, items[2].id}
    assert missing == [items[1]]
