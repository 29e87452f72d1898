"""Continuous batching: every running request decoded together, one llama.cpp batch per step.

The context holds ``n_parallel`` sequences, one per *slot*, each with its own part of the KV
cache.  A scheduler thread owns the context.  At every step it builds one ``llama_batch``: the
next token of every request that is generating, then prompt tokens of requests still reading
their prompt, up to ``n_batch`` tokens in all; it decodes it, and samples each generating
request's next token from its own output row with its own sampler chain.  A request joins at
the next step after it arrives and leaves when it ends, so a long answer never holds a short
one back.

**Prefix reuse.**  A slot keeps the tokens its last request left in the cache, and a new
request goes to the free slot whose cache shares the longest start with its prompt; only what
follows that start is evaluated (:mod:`hybrid.local.prefix_reuse`).  What a request keeps for
itself (its sampler chain, its text held back for stop sequences, its closing event) is a
:class:`~hybrid.local.batch_request.BatchRequest`.

**The last prompt token alone.**  A prompt's tokens but the last are evaluated first; its last
token joins a later step, as the only token of that request in it.  An embedding
(:meth:`BatchScheduler.embed`) evaluates the last token with embeddings on, in a decode of its
own (with embeddings on llama.cpp outputs every token of a batch).  That decode gives the last
token's logits too: the slot keeps them with its cache, and an answer to the same prompt right
after starts from them, with no prompt token evaluated again (it counts as cached only what
the embedding found cached: the rest was evaluated for it).  They are the logits an answer
would get from its last prompt token alone on the model, to llama.cpp's last digits (with
embeddings on it computes the same layers; 40 external prompts of ``scripts/eval_router.py``
gave the same greedy first token, log-probabilities within 0.005).  Decoding beside other
requests, an answer may differ in the last digits of its logits (llama.cpp's sums depend on the
batch), as with any batched server.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid.errors import GenerationError, InvalidRequestError, PreemptedError
from hybrid.generation import FinishReason, GenerationEvent
from hybrid.local.batch_request import BatchRequest
from hybrid.local.prefix_reuse import Slot, choose_slot, common_prefix
from hybrid.local.sampling import Pieces

if TYPE_CHECKING:
    from hybrid.local.engine import EngineJob

log = logging.getLogger("hybrid.local")


class BatchScheduler:
    """Decodes the requests of ``n_parallel`` slots together on one llama.cpp context.

    Args:
        ctx: The context (``llama_context *``), created with ``n_seq_max = n_parallel``; the
            scheduler's thread is the only one that touches it from now on.
        vocab: The model's vocabulary.
        pieces: Token text, shared with the engine.
        n_parallel: Slots (sequences).
        n_ctx: Tokens each slot holds.
        n_batch: Tokens per ``llama_decode`` at most.
        n_embd: The model's hidden size (the length of embeddings).
        n_swa: The sliding window of the model's sliding-window layers (0: none).
    """

    def __init__(
        self,
        ctx: Any,
        vocab: Any,
        pieces: Pieces,
        *,
        n_parallel: int,
        n_ctx: int,
        n_batch: int,
        n_embd: int,
        n_swa: int,
    ) -> None:
        import llama_cpp

        self._ctx = ctx
        self._vocab = vocab
        self._memory = llama_cpp.llama_get_memory(ctx)
        self._pieces = pieces
        self._n_ctx = n_ctx
        self._n_batch = max(n_batch, n_parallel)
        self._n_embd = n_embd
        self._n_swa = n_swa
        self._slots = [Slot(seq) for seq in range(n_parallel)]
        self._batch = llama_cpp.llama_batch_init(self._n_batch, 0, 1)
        self._inbox: deque[BatchRequest] = deque()
        self._waiting: deque[BatchRequest] = deque()  # arrived, no free slot yet
        self._wake = threading.Condition()
        self._closing = False
        self._uses = itertools.count(1)
        # Prompt tokens the last request to end evaluated anew.
        self.last_evaluated = 0
        self._thread = threading.Thread(target=self._loop, name="hybrid-batch", daemon=True)
        self._thread.start()

    # -- called from any thread ------------------------------------------------------------

    def run(
        self,
        job: EngineJob,
        cancel: threading.Event,
        emit: Callable[[GenerationEvent], None],
    ) -> None:
        """Generate one answer beside the others; blocks until it ends.

        Raises:
            InvalidRequestError: The prompt is empty, longer than a slot holds, or holds a
                token outside the vocabulary (only this request fails).
            GenerationError: llama.cpp failed while evaluating or sampling.
        """
        request = BatchRequest(tuple(job.tokens), job, cancel, emit, time.perf_counter())
        self._submit(request)

    def embed(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> np.ndarray:
        """The final hidden state at a prompt's last token; blocks until it is computed.

        Args:
            tokens: The prompt.
            cancel: Set to stop the evaluation at the next batch step.

        Raises:
            InvalidRequestError: The prompt is empty, longer than a slot holds, or holds a
                token outside the vocabulary (only this request fails).
            GenerationError: llama.cpp failed, or gave no hidden state.
            PreemptedError: ``cancel`` was set before the state was computed.
        """
        request = BatchRequest(
            tuple(tokens),
            None,
            cancel if cancel is not None else threading.Event(),
            lambda event: None,
            time.perf_counter(),
        )
        self._submit(request)
        assert request.vector is not None
        return request.vector

    def close(self) -> None:
        """Stop the scheduler: requests not finished fail; the context is the caller's."""
        import llama_cpp

        with self._wake:
            self._closing = True
            self._wake.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)

    def _submit(self, request: BatchRequest) -> None:
        # Checked here, on the caller's thread: a prompt the batch cannot take would fail the
        # batch step, and with it every request decoding beside it.
        tokens = request.tokens
        if not tokens:
            raise InvalidRequestError(
                "the prompt is empty: there is nothing for the local model to continue; send a "
                "prompt of at least one token",
                param="prompt",
            )
        if len(tokens) > self._n_ctx:
            raise InvalidRequestError(
                f"the prompt is {len(tokens):,} tokens; a slot of the local model holds "
                f"{self._n_ctx:,}: shorten it",
                param="prompt",
            )
        if min(tokens) < 0 or max(tokens) >= self._pieces.n_vocab:
            raise InvalidRequestError(
                f"the prompt holds a token id outside the local model's vocabulary "
                f"(0 to {self._pieces.n_vocab - 1})",
                param="prompt",
            )
        with self._wake:
            if self._closing:
                raise GenerationError("the local model was unloaded")
            self._inbox.append(request)
            self._wake.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error

    # -- the scheduler's thread ------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not self._closing and not self._inbox and not self._active():
                    self._wake.wait()
                if self._closing:
                    break
                self._waiting.extend(self._inbox)
                self._inbox.clear()
            try:
                self._admit()
                self._step()
            except Exception as exc:  # llama.cpp failed: every running request fails with it
                log.exception("the batch step failed")
                error = (
                    exc
                    if isinstance(exc, GenerationError)
                    else GenerationError(f"llama.cpp failed while generating: {exc!r}")
                )
                for slot in self._slots:
                    if slot.request is not None:
                        self._fail(slot, error)
        error = GenerationError("the local model was unloaded")
        for slot in self._slots:
            if slot.request is not None:
                self._fail(slot, error)
        for request in [*self._waiting, *self._inbox]:
            request.error = error
            request.done.set()

    def _active(self) -> bool:
        return bool(self._waiting) or any(slot.request is not None for slot in self._slots)

    def _admit(self) -> None:
        """Give each waiting request a free slot, the one sharing most of its prompt."""
        while self._waiting:
            free = [slot for slot in self._slots if slot.request is None]
            if not free:
                return
            request = self._waiting.popleft()
            slot = choose_slot(free, request.tokens)
            try:
                self._start(slot, request)
            except Exception as exc:
                slot.request = request
                self._fail(
                    slot,
                    exc
                    if isinstance(exc, GenerationError)
                    else GenerationError(f"llama.cpp could not start the answer: {exc!r}"),
                )

    def _start(self, slot: Slot, request: BatchRequest) -> None:
        kept, slot.logits = slot.logits, None
        common = common_prefix(slot.cached, request.tokens)
        whole = common == len(slot.cached) == len(request.tokens)
        if kept is not None and request.job is not None and whole:
            self._answer_from(slot, request, kept)
            return
        keep = slot.keep_start(common, len(request.tokens), self._memory, self._n_swa)
        slot.request = request
        request.position = request.reused = keep
        request.evaluated = len(request.tokens) - keep
        request.start_answer(self._vocab)

    def _answer_from(self, slot: Slot, request: BatchRequest, logits: np.ndarray) -> None:
        """Start an answer whose whole prompt is cached, from the logits an embedding kept."""
        slot.request = request
        request.position = len(request.tokens)
        # What the embedding evaluated, it evaluated for this request: only what it found
        # cached came from before it.
        request.reused = slot.logits_reused
        request.evaluated = 0
        request.start_answer(self._vocab)
        self._sample(slot, None, 1, logits=logits)

    def _step(self) -> None:
        """Decode one batch: each generating request's next token, then prompt tokens."""
        import llama_cpp

        for slot in self._slots:
            request = slot.request
            if request is None or not request.cancel.is_set():
                continue
            if request.job is not None:
                self._finish(slot, "length", cancelled=True)
            else:
                # An embedding stopped before its end: what it evaluated stays cached.
                request.error = PreemptedError(
                    "a client request needed the local model: this background evaluation of a "
                    "prompt was stopped early (ask again)"
                )
                self._release(slot)
        embedding = next(
            (
                slot
                for slot in self._slots
                if slot.request is not None
                and slot.request.job is None
                and slot.request.position == len(slot.request.tokens) - 1
            ),
            None,
        )
        if embedding is not None:
            self._embed_last(embedding)
            return
        batch = self._batch
        count = 0
        outputs: list[tuple[Slot, int]] = []
        for slot in self._slots:  # generating: one token each
            request = slot.request
            if request is not None and request.next_token is not None:
                self._add(slot, request.next_token, logits=True, at=count)
                outputs.append((slot, count))
                count += 1
        for slot in self._slots:  # reading the prompt: the rest of the batch
            request = slot.request
            if request is None or request.next_token is not None or count >= self._n_batch:
                continue
            last = len(request.tokens) - 1
            if request.position < last:
                take = min(last - request.position, self._n_batch - count)
                for token in request.tokens[request.position : request.position + take]:
                    self._add(slot, token, logits=False, at=count)
                    count += 1
                request.position += take
            elif request.position == last and request.job is not None:
                self._add(slot, request.tokens[last], logits=True, at=count)
                request.position += 1
                outputs.append((slot, count))
                count += 1
        if count == 0:
            return
        batch.n_tokens = count
        status = llama_cpp.llama_decode(self._ctx, batch)
        if status != 0:
            raise GenerationError(
                f"llama.cpp could not decode the batch (llama_decode returned {status})"
            )
        sampling = len(outputs)
        for slot, index in outputs:
            self._sample(slot, index, sampling)

    def _add(self, slot: Slot, token: int, *, logits: bool, at: int) -> None:
        batch = self._batch
        batch.token[at] = token
        batch.pos[at] = len(slot.cached)
        batch.n_seq_id[at] = 1
        batch.seq_id[at][0] = slot.seq
        batch.logits[at] = logits
        slot.cached.append(token)
        slot.logits = None

    def _embed_last(self, slot: Slot) -> None:
        """Evaluate an embedding's last prompt token alone, with embeddings on."""
        import llama_cpp

        request = slot.request
        assert request is not None
        self._add(slot, request.tokens[-1], logits=True, at=0)
        request.position += 1
        self._batch.n_tokens = 1
        llama_cpp.llama_set_embeddings(self._ctx, True)
        try:
            status = llama_cpp.llama_decode(self._ctx, self._batch)
            pointer = llama_cpp.llama_get_embeddings_ith(self._ctx, 0) if status == 0 else None
            vector = (
                np.ctypeslib.as_array(pointer, shape=(self._n_embd,)).astype(np.float32)
                if pointer
                else None
            )
            row = llama_cpp.llama_get_logits_ith(self._ctx, 0) if vector is not None else None
            logits = (
                np.ctypeslib.as_array(row, shape=(self._pieces.n_vocab,)).copy() if row else None
            )
        finally:
            llama_cpp.llama_set_embeddings(self._ctx, False)
        if status != 0:
            raise GenerationError(f"llama.cpp could not evaluate the prompt (status {status})")
        if vector is None:
            self._fail(
                slot,
                GenerationError(
                    "llama.cpp gave no hidden state for the prompt (a context pooled for "
                    "embeddings?); load a generative model to use the probe"
                ),
            )
            return
        request.vector = vector
        slot.logits, slot.logits_reused = logits, request.reused
        self.last_evaluated = request.evaluated
        self._release(slot)

    def _sample(
        self, slot: Slot, index: int | None, batch_size: int, *, logits: np.ndarray | None = None
    ) -> None:
        """Sample a request's next token from its output row (the batch's ``index``-th, or
        ``logits`` kept from an earlier decode) and pass its text on."""
        import llama_cpp

        request = slot.request
        assert request is not None and request.job is not None
        assert request.sampler is not None and request.text is not None
        assert request.decoder is not None
        job = request.job
        request.batch_total += batch_size
        request.batch_steps += 1
        # Read once per token: the consumer may stop log-probabilities at any moment.
        wanted = request.wants_logprobs
        if index is None:
            assert logits is not None
            token = request.sampler.sample_row(logits)
        else:
            if wanted:
                pointer = llama_cpp.llama_get_logits_ith(self._ctx, index)
                logits = np.ctypeslib.as_array(pointer, shape=(self._pieces.n_vocab,)).copy()
            token = request.sampler.sample(self._ctx, index)
        if not wanted:
            logits = None
        if request.first_at is None:
            request.first_at = time.perf_counter()
        if llama_cpp.llama_vocab_is_eog(self._vocab, token):
            self._finish(slot, "stop")
            return
        request.take(token, logits, self._pieces)
        if request.text.stopped:
            self._finish(slot, "stop")
        elif request.generated >= job.max_tokens or len(slot.cached) >= self._n_ctx:
            self._finish(slot, "length")
        else:
            request.next_token = token

    def _finish(self, slot: Slot, finish: FinishReason, *, cancelled: bool = False) -> None:
        request = slot.request
        assert request is not None
        request.flush()
        self.last_evaluated = request.evaluated
        request.emit(request.done_event(finish, cancelled=cancelled))
        self._release(slot)

    def _fail(self, slot: Slot, error: BaseException) -> None:
        request = slot.request
        if request is None:
            return
        request.error = error
        # What the failed step left in the cache is unknown: the slot starts afresh.
        slot.cached = []
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        request = slot.request
        slot.request = None
        slot.used = next(self._uses)
        if request is None:
            return
        if request.sampler is not None:
            request.sampler.close()
        request.done.set()
