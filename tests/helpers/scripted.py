"""A backend and runtime that answer from a script, and the app built on them, for API tests
without a model."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractContextManager
from types import SimpleNamespace
from typing import Any

import numpy as np
from fastapi import FastAPI
from hardware_fakes import idle_probe

from hybrid.api.app import create_app
from hybrid.backend import Backend, Generation
from hybrid.errors import ContextLengthExceededError, HybridError
from hybrid.generation import (
    GenerationDone,
    GenerationEvent,
    GenerationRequest,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hybrid.hardware.probe import HardwareProbe
from hybrid.local.preparation import unsupported_error
from hybrid.local.runtime import LocalRuntime
from hybrid.local.speed import SpeedMeter
from hybrid.settings import Settings

# The host name Starlette's TestClient (and the SDK clients built on it here) send.
TEST_CLIENT_HOST = "testserver"


class ScriptedGeneration(Generation):
    """The scripted events; ``running`` is entered as they start and left as they end or fail,
    as the local backend does around an answer's job on the model."""

    def __init__(
        self,
        events: list[GenerationEvent | HybridError],
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> None:
        self._events = events
        self._running = running
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        with self._running() if self._running is not None else contextlib.nullcontext():
            for event in self._events:
                if isinstance(event, HybridError):
                    raise event
                yield event

    async def aclose(self) -> None:
        self.closed = True


class ScriptedBackend(Backend):
    """Answers every request with the same pieces of text, or fails as told."""

    def __init__(self) -> None:
        self.pieces = ["Hello", " world"]
        self.fail_on_start: HybridError | None = None
        self.fail_mid_stream: HybridError | None = None
        self.requests: list[GenerationRequest] = []
        self.generations: list[ScriptedGeneration] = []
        self.embedded: list[GenerationRequest] = []
        self.hand_offs_released = 0
        self.vectors: dict[str, np.ndarray] = {}

    # What the dispatcher reads of a local backend to route a request.
    context_length = 8192
    supports: frozenset[str] = frozenset()
    queue = SimpleNamespace(depth=0, slots=1, running=0, expected_wait_s=lambda: 0.0)
    speed = SpeedMeter()

    @property
    def model_id(self) -> str:
        return "scripted-model"

    async def prepare(self, request: GenerationRequest) -> Any:
        _refuse_unsupported(request, self.supports)
        if isinstance(self.fail_on_start, ContextLengthExceededError):
            raise self.fail_on_start
        return SimpleNamespace(tokens=[0] * 7, max_tokens=request.params.max_tokens or 16)

    # The local model's view of a prompt (``LocalBackend.prompt_embedding``): ``embedding`` for
    # every prompt, or the vector ``vectors`` sets for its last message's text; the requests
    # asked for are kept in ``embedded``; ``fail_on_embed`` is raised instead when set.
    embedding_size = 4
    embedding = np.zeros(4, dtype=np.float32)
    fail_on_embed: HybridError | None = None

    async def prompt_embedding(
        self,
        request: GenerationRequest,
        *,
        prepared: Any = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> Any:
        _refuse_unsupported(request, self.supports)
        if isinstance(self.fail_on_start, ContextLengthExceededError):
            raise self.fail_on_start
        self.embedded.append(request)
        with running() if running is not None else contextlib.nullcontext():
            if self.fail_on_embed is not None:
                raise self.fail_on_embed
            text = request.messages[-1].content if request.messages else request.prompt or ""
            return self.vectors.get(text, self.embedding)

    def release_hand_off(self) -> None:
        self.hand_offs_released += 1

    async def start(
        self,
        request: GenerationRequest,
        *,
        prepared: Any = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> Generation:
        _refuse_unsupported(request, self.supports)
        self.requests.append(request)
        if self.fail_on_start is not None:
            raise self.fail_on_start
        events: list[GenerationEvent | HybridError] = []
        for piece in self.pieces:
            lp = TokenLogprob(piece, -0.5, tuple(piece.encode()))
            events.append(
                TextDelta(piece, (lp,) if request.params.top_logprobs is not None else ())
            )
        if self.fail_mid_stream is not None:
            events.append(self.fail_mid_stream)
        events.append(
            GenerationDone("stop", Usage(prompt_tokens=7, completion_tokens=len(self.pieces)))
        )
        generation = ScriptedGeneration(events, running)
        self.generations.append(generation)
        return generation


def _refuse_unsupported(request: GenerationRequest, supports: frozenset[str]) -> None:
    """As the local backend does: what it cannot do is refused with its message."""
    if request.needs - supports:
        raise unsupported_error(request.needs - supports)


class ScriptedRuntime(LocalRuntime):
    def __init__(self, settings: Settings, backend: Backend, *, ready: bool = True) -> None:
        super().__init__(settings, snapshot=lambda: None)  # type: ignore[arg-type,return-value]
        self.scripted = backend
        self.ready = ready

    async def load(self) -> None:
        if self.ready:
            self._state = "ready"

    def backend(self) -> Any:
        if self._state != "ready":
            return super().backend()
        return self.scripted

    def background_backend(self) -> Any:
        """The low-priority twin: the same scripted backend (raises while not ready)."""
        return self.backend()


def scripted_app(
    settings: Settings,
    backend: ScriptedBackend | None = None,
    *,
    runtime: LocalRuntime | None = None,
    gpu_energy: Callable[[], float | None] | None = None,
    probe: HardwareProbe | None = None,
) -> FastAPI:
    """The app under test: a scripted local model (or ``runtime``) on an idle fake machine.

    The real probe would hand the capacity policy whatever else loads the machine running the
    tests; the idle one keeps every routing decision independent of it.  Starlette's
    ``TestClient`` addresses the app as ``testserver``, so that name is allowed as a configured
    host would be.  ``probe`` replaces the idle machine (one with a battery, say).
    """
    if TEST_CLIENT_HOST not in settings.server.allowed_hosts:
        server = settings.server.model_copy(
            update={"allowed_hosts": [*settings.server.allowed_hosts, TEST_CLIENT_HOST]}
        )
        settings = settings.model_copy(update={"server": server})
    if runtime is None:
        runtime = ScriptedRuntime(settings, backend if backend is not None else ScriptedBackend())
    return create_app(settings, runtime=runtime, probe=probe or idle_probe(), gpu_energy=gpu_energy)
