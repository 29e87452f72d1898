"""The local backend: requests answered by the in-process llama.cpp model.

Preparation (chat formatting, tokenization, the context check, the JSON grammar:
:mod:`hybrid.local.preparation`) happens before a request joins the queue, so a request that
cannot fit is refused at once rather than after waiting its turn.  It runs on a worker thread,
never on the event loop: tokenizing takes about a microsecond per byte, so a prompt of a few
megabytes would stall every other request for seconds.  A prompt whose size alone proves it
cannot fit is refused without being tokenized (see :meth:`LocalBackend.prepare`), which bounds
that work by the context size.

Generation runs in the engine's batch, up to ``local.parallel`` requests at once (each holds
one of the queue's worker threads while it runs); its events cross back to the event loop
through an ``asyncio.Queue``.  Closing a generation early sets a flag the engine checks at
every token boundary, so a client that goes away frees its slot within one token; telling it
that the rest needs no log-probabilities (:meth:`LocalGeneration.stop_logprobs`: a cascade
that only weighed its opening) sets another, and the engine computes none from the next token.

:meth:`LocalBackend.prompt_embedding` runs the prompt through the model on the same queue and
context, and returns the model's own vector for it (the hidden state at the last prompt token,
see :meth:`LlamaEngine.embed`); the prompt stays in the context's cache with its last token's
logits, so an answer to the same request started next evaluates no prompt token again.

A model whose chat template supports tools gets the request's tools in its prompt, and its
answer is read for tool calls (:mod:`hybrid.local.tool_calls`): text streams as it comes, except
what may be a call, which is held and turned into tool call deltas when the answer ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Protocol

import numpy as np

from hybrid.backend import Backend
from hybrid.errors import GenerationError, HybridError, PreemptedError
from hybrid.generation import GenerationDone, GenerationEvent, GenerationRequest
from hybrid.local.engine import EngineJob
from hybrid.local.generation import End, LocalGeneration
from hybrid.local.preparation import TOOLS, Tokenizer, prepare_job, prompt_tools
from hybrid.local.prompt import ChatFormatter
from hybrid.local.queue import WorkQueue
from hybrid.local.speed import SpeedMeter


class Engine(Tokenizer, Protocol):
    """What the backend needs from a loaded model (``LlamaEngine`` in production): what
    preparing a request reads of it, its hidden size, and the two ways to run it."""

    @property
    def n_embd(self) -> int: ...

    def embed(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> np.ndarray: ...

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None: ...


class LocalBackend(Backend):
    """Answers requests with a local model, up to its slots at once, started in arrival order.

    Args:
        engine: The loaded model.
        queue: The model's work queue: it starts at most as many jobs as the engine has slots.
        formatter: Turns chat messages into the model's prompt.
        model_id: The id clients see.
        default_max_tokens: Output cap when a request sets none.
        default_temperature: Temperature when a request sets none.
        default_stop: Stop sequences that end every answer besides the request's own (the
            model's store's ``stop``); added after the request's, duplicates dropped, up to
            :data:`~hybrid.wire.fields.MAX_STOP_SEQUENCES` in all.
        speed: The speed measured so far on this model (a reload keeps it); a new one when
            omitted.
    """

    def __init__(
        self,
        engine: Engine,
        queue: WorkQueue,
        formatter: ChatFormatter,
        *,
        model_id: str,
        default_max_tokens: int,
        default_temperature: float,
        default_stop: tuple[str, ...] = (),
        speed: SpeedMeter | None = None,
    ) -> None:
        self._engine = engine
        self._queue = queue
        self._formatter = formatter
        self._model_id = model_id
        self._default_max_tokens = default_max_tokens
        self._default_temperature = default_temperature
        self._default_stop = default_stop
        self._speed = speed if speed is not None else SpeedMeter()
        # Read once: the runtime may free the engine once no call is in flight, and routing
        # still reads the context size of the backend it prepared a request on.
        self._n_ctx = engine.n_ctx
        self._calls = 0
        self._calls_started = 0

    @property
    def model_id(self) -> str:
        """The id clients see for the local model."""
        return self._model_id

    @property
    def queue(self) -> WorkQueue:
        """The model's work queue (depth and expected wait)."""
        return self._queue

    @property
    def speed(self) -> SpeedMeter:
        """Decode speed measured on the requests served so far."""
        return self._speed

    @property
    def context_length(self) -> int:
        """Tokens the loaded context holds."""
        return self._n_ctx

    @property
    def embedding_size(self) -> int:
        """Length of the vectors :meth:`prompt_embedding` returns (the model's hidden size)."""
        return self._engine.n_embd

    @property
    def calls_in_flight(self) -> int:
        """Calls of :meth:`prepare`, :meth:`start` and :meth:`prompt_embedding` that have not
        returned: work not in the queue yet, which the model must not be freed under."""
        return self._calls

    @property
    def calls_started(self) -> int:
        """Calls of :meth:`prepare`, :meth:`start` and :meth:`prompt_embedding` ever made: a
        change means a client used the model (the keep-alive's idle clock restarts)."""
        return self._calls_started

    async def prompt_embedding(
        self,
        request: GenerationRequest,
        *,
        prepared: EngineJob | None = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> np.ndarray:
        """The local model's own vector for a request's prompt.

        The prompt is evaluated on the model's queue thread, in the context that answers, and
        the vector is the final hidden state at its last token (llama.cpp's per-token
        embedding output; no second model, context or prefill).  The prompt stays in the
        context's cache with its last token's logits: :meth:`start` of the same request next
        evaluates no prompt token again (it samples its first token from those logits), unless
        another job used the model in between, and its greedy answer is the same as without
        this call.

        Args:
            request: The request.
            prepared: What :meth:`prepare` made of it (then it is not tokenized again).
            running: Entered on the worker thread while the prompt is evaluated (after its
                wait in the queue), as :meth:`start`'s is.

        Returns:
            A float32 vector of :attr:`embedding_size` values; equal prompts give equal vectors.

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            InvalidRequestError: The chat template or the JSON schema rejects the request,
                its prompt is empty, or its ``logit_bias`` names a token outside the vocabulary.
            QueueFullError: ``max_queue`` requests are already waiting.
            GenerationError: llama.cpp failed while evaluating the prompt.
        """
        self._calls += 1
        self._calls_started += 1
        try:
            job = self._own(prepared) or await self.prepare(request)
            tokens = job.tokens
            # A hand-off: background work waits for the answer that follows (or
            # release_hand_off).  On the low-priority lane, a client request that needs the
            # slot stops the evaluation (PreemptedError).
            stop = threading.Event()

            def work() -> np.ndarray:
                with _held(running):
                    return self._engine.embed(tokens, stop)

            future = self._queue.submit(
                work,
                hand_off=True,
                preempt=stop.set if self._queue.is_background else None,
            )
            return await asyncio.wrap_future(future)
        except HybridError:
            raise
        except Exception as exc:  # anything else llama.cpp's binding raised on the worker
            raise GenerationError(f"the local model failed to embed the prompt: {exc!r}") from exc
        finally:
            self._calls -= 1

    def _own(self, prepared: EngineJob | None) -> EngineJob | None:
        """``prepared`` when this backend made it; None for another model's (a switch
        happened between routing and answering), which is then prepared again."""
        return prepared if prepared is not None and prepared.owner is self else None

    def release_hand_off(self) -> None:
        """Let background work run again after :meth:`prompt_embedding` when no answer of the
        same request follows on this model (the router escalated it)."""
        self._queue.release()

    def count_tokens(self, text: str) -> int:
        """Tokens in a text by this model's tokenizer (no BOS)."""
        return len(self._engine.tokenize(text, add_bos=False)) if text else 0

    @property
    def supports(self) -> frozenset[str]:
        """What the model can do beyond text: ``tools`` when its chat template has tools."""
        return frozenset({TOOLS}) if self._formatter.supports_tools else frozenset()

    async def prepare(self, request: GenerationRequest) -> EngineJob:
        """Format and tokenize a request and check that it fits, without queueing it.

        The work runs on a worker thread.  A formatted prompt of more than ``n_ctx * L``
        bytes, where ``L`` is the most bytes one token of the vocabulary stands for
        (:meth:`LlamaEngine.longest_token_bytes`: 48 for Gemma 3), is at least
        ``ceil(bytes / L) > n_ctx`` tokens, so it is refused without being tokenized; the
        refusal gives that lower bound and the byte count.  The tokenizer therefore never
        reads more than ``n_ctx * L`` bytes (384 KiB at 8,192 tokens), whatever arrives.

        Returns:
            The prepared job, to pass to :meth:`start` (it knows the prompt's token count).

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            InvalidRequestError: The chat template or the JSON schema rejects the request,
                its prompt is empty, or its ``logit_bias`` names a token outside the vocabulary.
        """
        self._calls += 1
        self._calls_started += 1
        try:
            return await asyncio.to_thread(self._prepare, request)
        finally:
            self._calls -= 1

    async def start(
        self,
        request: GenerationRequest,
        *,
        prepared: EngineJob | None = None,
        running: Callable[[], AbstractContextManager[object]] | None = None,
    ) -> LocalGeneration:
        """Prepare a request, queue it, and return its running generation.

        Args:
            request: The request.
            prepared: What :meth:`prepare` made of it, or of the same request with other
                ``top_logprobs`` (a cascade asks for log-probabilities after routing): the
                prompt is not formatted and tokenized again.
            running: Entered on the worker thread as the answer starts on the model (after
                its wait in the queue) and left as it ends or is stopped: a caller meters the
                model's work on it there (a local shadow answer's energy), without the wait.

        Raises:
            ContextLengthExceededError: The prompt and requested output do not fit.
            QueueFullError: ``max_queue`` requests are already waiting.
            InvalidRequestError: The chat template or the JSON schema rejects the request,
                its prompt is empty, or its ``logit_bias`` names a token outside the vocabulary.
        """
        self._calls += 1
        self._calls_started += 1
        try:
            return await self._start(request, self._own(prepared), running)
        finally:
            self._calls -= 1

    async def _start(
        self,
        request: GenerationRequest,
        prepared: EngineJob | None,
        running: Callable[[], AbstractContextManager[object]] | None,
    ) -> LocalGeneration:
        job = prepared if prepared is not None else await self.prepare(request)
        # Set by the generation's stop_logprobs(): the engine computes none from then on.
        logprobs_stopped = threading.Event()
        job = dataclasses.replace(
            job, top_logprobs=request.params.top_logprobs, logprobs_stopped=logprobs_stopped
        )
        tool_names = [tool.name for tool in prompt_tools(self._formatter, request)]
        loop = asyncio.get_running_loop()
        channel: asyncio.Queue[GenerationEvent | End] = asyncio.Queue()
        cancel = threading.Event()
        # Set when a client request needs the slot of this answer on the low-priority lane.
        preempted = threading.Event()
        submitted = time.perf_counter()

        def deliver(item: GenerationEvent | End) -> None:
            try:
                loop.call_soon_threadsafe(channel.put_nowait, item)
            except RuntimeError:  # the event loop is gone: nobody is listening any more
                cancel.set()

        def preempt() -> None:
            preempted.set()
            cancel.set()

        def work() -> None:
            wait = time.perf_counter() - submitted
            cut = False

            def emit(event: GenerationEvent) -> None:
                nonlocal cut
                if isinstance(event, GenerationDone):
                    if event.cancelled and preempted.is_set():
                        cut = True  # no closing event: the error below ends the answer
                        return
                    event = dataclasses.replace(event, queue_wait_s=wait)
                    self._speed.observe(event, constrained=job.grammar is not None)
                deliver(event)

            with _held(running):
                self._engine.run(job, cancel, emit)
            if cut:
                raise PreemptedError(
                    "a client request needed the local model: this background answer was "
                    "stopped early (ask again)"
                )

        future = self._queue.submit(work, preempt=preempt if self._queue.is_background else None)
        future.add_done_callback(lambda done: deliver(End(done)))
        return LocalGeneration(
            channel,
            cancel,
            future,
            job,
            tool_names=tool_names,
            one_call=request.parallel_tool_calls is False,
        )

    def _prepare(self, request: GenerationRequest) -> EngineJob:
        return prepare_job(
            request,
            self._engine,
            self._formatter,
            supports=self.supports,
            model_id=self._model_id,
            default_max_tokens=self._default_max_tokens,
            default_temperature=self._default_temperature,
            default_stop=self._default_stop,
            owner=self,
        )


def _held(
    running: Callable[[], AbstractContextManager[object]] | None,
) -> AbstractContextManager[object]:
    """The context a job runs in on the worker thread: the caller's ``running``, or none."""
    return running() if running is not None else contextlib.nullcontext()
