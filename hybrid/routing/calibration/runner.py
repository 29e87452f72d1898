"""Running calibration items through a backend and grading the answers.

The runner talks to any :class:`~hybrid.backend.Backend`, so ``hybrid calibrate`` measures
the local model through exactly the stack that serves it (chat formatting, stop sequences,
output trimming), and tests drive it with a scripted fake.  Decoding is greedy with a fixed
seed, so a rerun on the same model gives the same answers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from hybrid.backend import Backend
from hybrid.errors import ConfigError, ContextLengthExceededError, InvalidRequestError
from hybrid.generation import GenerationRequest, SamplingParams
from hybrid.routing.calibration.grading import grade_all
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.cascade import confidence


class PromptEmbedder(Protocol):
    """A backend that also gives the local model's own vector of a prompt (the local backend)."""

    async def prompt_embedding(self, request: GenerationRequest) -> np.ndarray:
        """The model's vector of the request's prompt (see ``LocalBackend.prompt_embedding``)."""
        ...


Progress = Callable[[int, int], None]
"""Called with (presentations answered, presentations in all) after each answer."""

ANSWER_SEED = 0
"""Sampling seed of every calibration request (decoding is greedy; the seed pins the rest)."""

ANSWER_STOP = ("\n",)
"""Answers end at their first line break: the graders read the first line, and a small model
that echoes a question (or a code block) would otherwise spend its whole token budget on it."""


@dataclass(frozen=True)
class ItemAnswer:
    """What the model said to one item, and whether that was right.

    Attributes:
        item_id: The item's id.
        texts: One answer per presentation of the item.
        correct: Every presentation was answered right.
        embedding: The local model's vector of the item's first presentation
            (``prompt_embedding``), when it was asked for; None otherwise, and for a prompt
            the model cannot take.
        confidence: How sure the model was of its answer to the first presentation (the
            geometric mean of its tokens' probabilities, as the cascade reads it:
            :func:`~hybrid.routing.cascade.confidence`); None where it was not recorded (a
            record made before it was, a backend that gives no log-probabilities, a prompt the
            model cannot take).
    """

    item_id: str
    texts: tuple[str, ...]
    correct: bool
    embedding: tuple[float, ...] | None = None
    confidence: float | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_json`); ``"embedding"`` and ``"confidence"`` only
        when there is one."""
        data: dict[str, Any] = {
            "id": self.item_id,
            "texts": list(self.texts),
            "correct": self.correct,
        }
        if self.embedding is not None:
            # float32 values: 9 significant digits give them back exactly.
            data["embedding"] = [float(f"{value:.9g}") for value in self.embedding]
        if self.confidence is not None:
            data["confidence"] = self.confidence
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemAnswer:
        """Rebuild an answer from :meth:`to_json` output.

        Raises:
            ConfigError: A field is missing or of the wrong type.
        """
        item_id, texts, correct = data.get("id"), data.get("texts"), data.get("correct")
        if (
            not isinstance(item_id, str)
            or not isinstance(texts, list)
            or not all(isinstance(t, str) for t in texts)
            or not isinstance(correct, bool)
        ):
            raise ConfigError(f"a recorded calibration answer is malformed: {dict(data)!r}")
        sure = data.get("confidence")
        if sure is not None and (
            not isinstance(sure, int | float) or isinstance(sure, bool) or not 0 <= sure <= 1
        ):
            raise ConfigError(
                f"the recorded confidence of calibration answer {item_id!r} is not a number "
                "from 0 to 1; run `hybrid calibrate` again to record it anew"
            )
        confidence = None if sure is None else float(sure)
        vector = data.get("embedding")
        if vector is None:
            return cls(item_id, tuple(texts), correct, None, confidence)
        if (
            not isinstance(vector, list)
            or not vector
            or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in vector
            )
        ):
            raise ConfigError(
                f"the recorded embedding of calibration answer {item_id!r} is not a list of "
                "finite numbers; run `hybrid calibrate` again to record it anew"
            )
        # Vectors are float32: read back as such, they equal what was recorded bit for bit.
        values = np.asarray(vector, dtype=np.float32)
        return cls(item_id, tuple(texts), correct, tuple(float(v) for v in values), confidence)


async def answer_items(
    backend: Backend,
    items: Sequence[CalibrationItem],
    *,
    max_tokens: int,
    progress: Progress,
    embed: bool = False,
    on_answer: Callable[[ItemAnswer], None] | None = None,
) -> list[ItemAnswer]:
    """Ask the backend every presentation of every item, one at a time, and grade the answers.

    A presentation the backend refuses as such (too long for its context, or a conversation
    its chat template rejects) counts as answered wrong, with an empty text: for routing, a
    prompt the local model cannot take is one it cannot answer.

    Args:
        backend: What answers (the local model's backend in ``hybrid calibrate``).
        items: The items to ask.
        max_tokens: Output cap per answer; answers also end at their first line break
            (:data:`ANSWER_STOP`), which is all the graders read.
        progress: Called after every answer with (answered, total) presentations.
        embed: Also record the local model's vector of each item's first presentation
            (``prompt_embedding``, asked just before its answer, which then reuses the
            evaluated prompt); the backend must have ``prompt_embedding``.
        on_answer: Called with each item's graded answer as soon as it is complete, so a
            caller interrupted part-way keeps what was answered.

    Returns:
        One :class:`ItemAnswer` per item, in the order of ``items``.

    Raises:
        ConfigError: ``embed`` is set and the backend cannot give prompt vectors.
        ModelNotReadyError, QueueFullError, GenerationError, ProviderError: The backend failed
            for a reason that is not the prompt's fault.
    """
    embedder = _embedder(backend) if embed else None
    total = sum(len(item.presentations) for item in items)
    done = 0
    answers = []
    for item in items:
        texts = []
        vector: tuple[float, ...] | None = None
        sure: float | None = None
        for index in range(len(item.presentations)):
            request = _request(item, index, max_tokens)
            if embedder is not None and index == 0:
                vector = await _vector(embedder, request)
            try:
                completion = await backend.complete(request)
            except (ContextLengthExceededError, InvalidRequestError):
                texts.append("")
            else:
                texts.append(completion.text)
                if index == 0 and completion.logprobs:
                    sure = confidence([lp.logprob for lp in completion.logprobs])
            done += 1
            progress(done, total)
        # Grading may run the answer as code in a sandboxed interpreter (up to its time
        # limit): on a worker thread, so that a server calibrating in the background keeps
        # answering meanwhile.
        correct = await asyncio.to_thread(grade_all, item, texts)
        answer = ItemAnswer(item.id, tuple(texts), correct, vector, sure)
        answers.append(answer)
        if on_answer is not None:
            on_answer(answer)
    return answers


async def with_vectors(
    backend: Backend,
    items: Sequence[CalibrationItem],
    answers: Sequence[ItemAnswer],
    *,
    max_tokens: int,
) -> list[ItemAnswer]:
    """Answers recorded without the prompt vector, given it (the answers are not asked again).

    Args:
        backend: The local model's backend (it must have ``prompt_embedding``).
        items: The answers' items, in the same order.
        answers: Answers, some perhaps recorded without a vector.
        max_tokens: The output cap the answers were asked with (a prompt too long for it and
            the context gets no vector, as in :func:`answer_items`).

    Returns:
        The answers, each without a vector now with the vector :func:`answer_items` would have
        recorded (None still for a prompt the model cannot take).

    Raises:
        ConfigError: The backend cannot give prompt vectors.
        ModelNotReadyError, QueueFullError, GenerationError: The backend failed.
    """
    embedder = _embedder(backend)
    done = []
    for item, answer in zip(items, answers, strict=True):
        if answer.embedding is None:
            vector = await _vector(embedder, _request(item, 0, max_tokens))
            answer = dataclasses.replace(answer, embedding=vector)
        done.append(answer)
    return done


def _request(item: CalibrationItem, index: int, max_tokens: int) -> GenerationRequest:
    # The tokens' log-probabilities give the answer's confidence (the first presentation's
    # is recorded); every presentation is asked the same way.
    return GenerationRequest(
        request_id=f"calibrate-{item.id}-{index}",
        messages=item.presentations[index],
        params=SamplingParams(
            max_tokens=max_tokens,
            temperature=0.0,
            stop=ANSWER_STOP,
            seed=ANSWER_SEED,
            top_logprobs=0,
        ),
    )


async def _vector(embedder: PromptEmbedder, request: GenerationRequest) -> tuple[float, ...] | None:
    try:
        raw = await embedder.prompt_embedding(request)
    except (ContextLengthExceededError, InvalidRequestError):
        return None  # the answer is refused the same way
    return tuple(float(v) for v in np.asarray(raw, dtype=np.float32))


def _embedder(backend: Backend) -> PromptEmbedder:
    if not callable(getattr(backend, "prompt_embedding", None)):
        raise ConfigError(
            f"the {type(backend).__name__} cannot give prompt vectors; record them with the "
            "local model's backend, or run without them"
        )
    return backend  # type: ignore[return-value]  # checked just above


async def run_items(
    backend: Backend,
    items: Sequence[CalibrationItem],
    *,
    max_tokens: int,
    progress: Progress,
) -> list[bool]:
    """Ask and grade every item (see :func:`answer_items`).

    Returns:
        For each item, in order, whether the backend answered it right.
    """
    answers = await answer_items(backend, items, max_tokens=max_tokens, progress=progress)
    return [answer.correct for answer in answers]
