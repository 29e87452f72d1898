"""A cloud model as judge, for calibration items that a rule can only approximate.

Items with a rubric (summaries, free writing: see :attr:`CalibrationItem.rubric`) are graded
automatically by an approximation (the key facts named, the format kept).  With
``hybrid calibrate --judge <provider/model>`` the answers to those items are shown to a cloud
model with the task and the rubric, and its one-word verdict, RIGHT or WRONG, replaces the
automatic grade.  A verdict it does not give clearly keeps the automatic grade; so does every
item left when the provider fails, which the report says.

The judge is any :class:`~hybrid.backend.Backend` (a configured cloud provider in the
command, a fake in tests); decoding is greedy and the verdict is a few tokens long, so the cost
is known in advance up to the length of the answers (:func:`estimate_tokens`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hybrid.backend import Backend
from hybrid.errors import HybridError
from hybrid.generation import GenerationRequest, Message, SamplingParams
from hybrid.routing.calibration.grading_rules import first_line
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.runner import ItemAnswer

VERDICT_TOKENS = 8
"""Output cap of a verdict: "RIGHT" or "WRONG" and room for a stray word."""
CHARS_PER_TOKEN = 4
"""Characters per token assumed by the cost estimate (English text, common tokenizers)."""
CONCURRENCY = 4
"""Verdicts requested at once."""

_SYSTEM = (
    "You grade answers that a small language model gave to short tasks. Judge only whether "
    "the answer does what the criteria ask; ignore style. Reply with exactly one word: RIGHT "
    "or WRONG."
)
_VERDICT = re.compile(r"\b(RIGHT|WRONG|CORRECT|INCORRECT)\b", re.IGNORECASE)


def judged_items(items: Sequence[CalibrationItem]) -> list[CalibrationItem]:
    """The items a judge grades: those with a rubric, in order."""
    return [item for item in items if item.rubric is not None]


def judge_messages(item: CalibrationItem, answer_text: str) -> tuple[Message, ...]:
    """The conversation that asks the judge for a verdict on one answer.

    Args:
        item: An item with a rubric.
        answer_text: The local model's answer; its first line is what the graders read, and
            what the judge sees.

    Returns:
        A system message with the instructions and a user message with the task, the
        criteria and the answer.
    """
    task = "\n".join(f"[{m.role}] {m.content}" for m in item.messages)
    answer = first_line(answer_text) or "(no answer)"
    user = (
        f"The task, as the model saw it:\n<task>\n{task}\n</task>\n\n"
        f"What a right answer must do: {item.rubric}\n\n"
        f"The model's answer:\n<answer>\n{answer}\n</answer>\n\n"
        "Is the answer RIGHT or WRONG?"
    )
    return (Message("system", _SYSTEM), Message("user", user))


def read_verdict(text: str) -> bool | None:
    """The verdict in a judge's reply: True for RIGHT (or CORRECT), False for WRONG (or
    INCORRECT), None when it names neither; the first one named counts."""
    match = _VERDICT.search(text)
    if match is None:
        return None
    return match.group(1).upper() in ("RIGHT", "CORRECT")


def estimate_tokens(items: Sequence[CalibrationItem], *, answer_tokens: int) -> tuple[int, int]:
    """The tokens judging these items takes at most: input and output.

    Args:
        items: The items to judge (those without a rubric are skipped).
        answer_tokens: The longest answer, in tokens (the local model's output cap).

    Returns:
        ``(input_tokens, output_tokens)``, counting :data:`CHARS_PER_TOKEN` characters a token.
    """
    placeholder = "x" * (answer_tokens * CHARS_PER_TOKEN)
    prompt = 0
    judged = judged_items(items)
    for item in judged:
        chars = sum(len(m.content) for m in judge_messages(item, placeholder))
        prompt += math.ceil(chars / CHARS_PER_TOKEN) + 8  # the chat format's own tokens
    return prompt, VERDICT_TOKENS * len(judged)


@dataclass(frozen=True)
class JudgeReport:
    """What the judge did.

    Attributes:
        answers: Every answer, with the judge's grade where it gave one.
        judged: Items the judge gave a verdict on.
        overturned: Of those, how many verdicts differ from the automatic grade.
        unclear: Items whose reply named no verdict (the automatic grade stands).
        failure: Why judging stopped early, when it did (the automatic grades stand for
            the items left); None when every item was asked.
    """

    answers: tuple[ItemAnswer, ...]
    judged: int
    overturned: int
    unclear: int
    failure: str | None = None

    def describe(self, model: str) -> str:
        """One line for the summary."""
        line = (
            f"Judge {model}: {self.judged} items graded, {self.overturned} automatic grades "
            f"overturned, {self.unclear} replies without a verdict (automatic grade kept)."
        )
        if self.failure is not None:
            line += f" Judging stopped early ({self.failure}); the rest keep automatic grades."
        return line


class Judge:
    """Grades answers through a cloud model.

    Args:
        backend: The provider that answers.
        model: The provider's model id.
        concurrency: Verdicts requested at once.
    """

    def __init__(self, backend: Backend, model: str, *, concurrency: int = CONCURRENCY) -> None:
        self._backend = backend
        self._model = model
        self._limit = asyncio.Semaphore(concurrency)

    @property
    def model(self) -> str:
        """The judge's model id, as its provider knows it."""
        return self._model

    async def verdict(self, item: CalibrationItem, answer_text: str) -> bool | None:
        """The judge's verdict on one answer.

        Returns:
            True (right), False (wrong) or None (the reply named neither).

        Raises:
            HybridError: The provider failed (after its own retries).
        """
        request = GenerationRequest(
            request_id=f"calibrate-judge-{item.id}",
            messages=judge_messages(item, answer_text),
            params=SamplingParams(max_tokens=VERDICT_TOKENS, temperature=0.0),
            model=self._model,
        )
        async with self._limit:
            completion = await self._backend.complete(request)
        return read_verdict(completion.text)

    async def regrade(
        self,
        items: Sequence[CalibrationItem],
        answers: Sequence[ItemAnswer],
        *,
        progress: Callable[[int, int], None] | None = None,
        on_verdict: Callable[[int, ItemAnswer], None] | None = None,
    ) -> JudgeReport:
        """Grade the answers to the items with a rubric again, through the judge.

        Args:
            items: The calibration set.
            answers: One answer per item, in the same order (graded automatically).
            progress: Called with (judged, to judge) after each verdict.
            on_verdict: Called with (index, regraded answer) after each clear verdict, so a
                caller interrupted part-way keeps the grades it paid for.

        Returns:
            The answers with the judge's grades, and what changed.

        Raises:
            ValueError: ``answers`` does not match ``items``.
        """
        if len(items) != len(answers):
            raise ValueError(f"{len(items)} items but {len(answers)} answers")
        todo = [i for i, item in enumerate(items) if item.rubric is not None]
        regraded = list(answers)
        done = overturned = unclear = 0
        failure: str | None = None

        async def judge_one(index: int) -> tuple[int, bool | None]:
            item, answer = items[index], answers[index]
            verdicts = [await self.verdict(item, text) for text in answer.texts]
            if any(v is None for v in verdicts):
                return index, None
            return index, all(verdicts)

        tasks = [asyncio.ensure_future(judge_one(index)) for index in todo]
        try:
            for next_done in asyncio.as_completed(tasks):
                try:
                    index, verdict = await next_done
                except HybridError as exc:
                    failure = str(exc)
                    break
                done += 1
                if progress is not None:
                    progress(done, len(todo))
                if verdict is None:
                    unclear += 1
                    continue
                if verdict != answers[index].correct:
                    overturned += 1
                regraded[index] = dataclasses.replace(answers[index], correct=verdict)
                if on_verdict is not None:
                    on_verdict(index, regraded[index])
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        judged = done - unclear
        return JudgeReport(tuple(regraded), judged, overturned, unclear, failure)
