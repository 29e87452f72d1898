"""Running calibration items through a backend and grading the answers.

The runner talks to any :class:`~hybrid.backend.Backend`, so ``hybrid calibrate`` measures
the local model through exactly the stack that serves it (chat formatting, stop sequences,
output trimming), and tests drive it with a scripted fake.  Decoding is greedy with a fixed
seed, so a rerun on the same model gives the same answers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hybrid.backend import Backend
from hybrid.errors import ConfigError, ContextLengthExceededError, InvalidRequestError
from hybrid.generation import GenerationRequest, SamplingParams
from hybrid.routing.calibration.grading import grade_all
from hybrid.routing.calibration.item import CalibrationItem

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
    """

    item_id: str
    texts: tuple[str, ...]
    correct: bool

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (see :meth:`from_json`)."""
        return {"id": self.item_id, "texts": list(self.texts), "correct": self.correct}

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
        return cls(item_id, tuple(texts), correct)


async def answer_items(
    backend: Backend,
    items: Sequence[CalibrationItem],
    *,
    max_tokens: int,
    progress: Progress,
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

    Returns:
        One :class:`ItemAnswer` per item, in the order of ``items``.

    Raises:
        ModelNotReadyError, QueueFullError, GenerationError, ProviderError: The backend failed
            for a reason that is not the prompt's fault.
    """
    total = sum(len(item.presentations) for item in items)
    done = 0
    answers = []
    for item in items:
        texts = []
        for index, messages in enumerate(item.presentations):
            request = GenerationRequest(
                request_id=f"calibrate-{item.id}-{index}",
                messages=messages,
                params=SamplingParams(
                    max_tokens=max_tokens, temperature=0.0, stop=ANSWER_STOP, seed=ANSWER_SEED
                ),
            )
            try:
                completion = await backend.complete(request)
            except (ContextLengthExceededError, InvalidRequestError):
                texts.append("")
            else:
                texts.append(completion.text)
            done += 1
            progress(done, total)
        answers.append(ItemAnswer(item.id, tuple(texts), grade_all(item, texts)))
    return answers


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
