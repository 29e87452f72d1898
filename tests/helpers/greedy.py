"""A greedy answer from a loaded engine, as text: for tests that compare a model's answers."""

from __future__ import annotations

import threading

from hybrid.generation import GenerationEvent, TextDelta
from hybrid.local.engine import EngineJob, LlamaEngine


def greedy_text(engine: LlamaEngine, prompt: str, max_tokens: int = 24) -> str:
    """The engine's greedy continuation of ``prompt`` (with its BOS), up to ``max_tokens``."""
    parts: list[str] = []

    def emit(event: GenerationEvent) -> None:
        if isinstance(event, TextDelta):
            parts.append(event.text)

    job = EngineJob(
        tokens=engine.tokenize(prompt, add_bos=True),
        max_tokens=max_tokens,
        stop=(),
        strip=False,
        temperature=0.0,
        top_p=1.0,
        seed=None,
        top_logprobs=None,
    )
    engine.run(job, threading.Event(), emit)
    return "".join(parts)
