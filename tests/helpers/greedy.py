"""Jobs for a loaded engine, and its greedy answer as text: for tests on the real model."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import replace

from hybrid.generation import GenerationEvent, TextDelta
from hybrid.local.engine import EngineJob, LlamaEngine


def greedy_job(tokens: Sequence[int], **changes: object) -> EngineJob:
    """A greedy job of 24 tokens for a tokenized prompt, with ``changes`` applied."""
    base = EngineJob(
        tokens=tokens,
        max_tokens=24,
        stop=(),
        strip=False,
        temperature=0.0,
        top_p=1.0,
        seed=None,
        top_logprobs=None,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def engine_job(engine: LlamaEngine, prompt: str, **changes: object) -> EngineJob:
    """A greedy job of 24 tokens for ``prompt`` (with its BOS), with ``changes`` applied."""
    return greedy_job(engine.tokenize(prompt, add_bos=True), **changes)


def greedy_text(engine: LlamaEngine, prompt: str, max_tokens: int = 24) -> str:
    """The engine's greedy continuation of ``prompt`` (with its BOS), up to ``max_tokens``."""
    parts: list[str] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            parts.append(event.text)

    engine.run(engine_job(engine, prompt, max_tokens=max_tokens), threading.Event(), emit)
    return "".join(parts)
