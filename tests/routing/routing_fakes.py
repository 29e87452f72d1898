"""Fakes the dispatcher tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator

from hybrid.backend import Generation
from hybrid.generation import GenerationDone, GenerationEvent, TextDelta, Usage


class Replay(Generation):
    """A generation that says ``text`` and stops."""

    def __init__(self, text: str) -> None:
        self.text = text

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        yield TextDelta(self.text)
        yield GenerationDone("stop", Usage(1, 1))

    async def aclose(self) -> None:
        return None
