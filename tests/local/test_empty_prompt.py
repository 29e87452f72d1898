"""An empty prompt on a model whose tokenizer adds no BOS (Qwen, Phi): refused as a bad
request before it reaches the model."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from hybrid.errors import InvalidRequestError
from hybrid.generation import GenerationEvent, GenerationRequest, SamplingParams
from hybrid.local.backend import LocalBackend
from hybrid.local.engine import EngineJob
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue


class NoBosEngine:
    """A tokenizer that adds no BOS: one token per character; never asked to generate."""

    n_ctx = 1024

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        return [ord(c) for c in text]

    def longest_token_bytes(self) -> int | None:
        return None

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        raise AssertionError("an empty prompt must not reach the model")


def test_an_empty_prompt_is_refused_as_a_bad_request() -> None:
    local = LocalBackend(
        NoBosEngine(),  # type: ignore[arg-type]
        WorkQueue(max_waiting=4),
        ChatFormatter(None),
        model_id="nobos",
        default_max_tokens=8,
        default_temperature=0.0,
    )
    request = GenerationRequest("r1", prompt="", params=SamplingParams(max_tokens=5))
    try:
        with pytest.raises(InvalidRequestError, match="prompt is empty") as caught:
            asyncio.run(local.start(request))
        assert caught.value.param == "prompt"
        # A prompt of one character is a prompt.
        assert len(asyncio.run(local.prepare(GenerationRequest("r2", prompt="a"))).tokens) == 1
    finally:
        local.queue.close()
