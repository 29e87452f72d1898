"""One request in the batch: its prompt, how far it has got, and its answer's events.

:class:`~hybrid.local.batching.BatchScheduler` decides when a request's tokens are evaluated and
samples its next token; a :class:`BatchRequest` keeps what that request alone needs and turns
its sampled tokens into events:

- its own sampler chain (temperature, top-p/top-k, seed, JSON grammar, logit bias, penalties),
  built when it starts (:meth:`BatchRequest.start_answer`);
- its text, decoded as UTF-8 across token boundaries and held back while it may be the start
  of a stop sequence (:class:`~hybrid.local.text.StopText`); a :class:`TextDelta` carries what
  is released, with the log-probabilities of the tokens it came from (:meth:`BatchRequest.take`);
- at its end, the rest of its text, then one :class:`GenerationDone` with its usage (prompt
  tokens, generated tokens, tokens reused from its slot's cache), time to first token, decode
  speed and the mean batch it decoded in (:meth:`BatchRequest.flush`,
  :meth:`BatchRequest.done_event`).

A request with no job is an embedding: it has no sampler and emits nothing; the scheduler sets
its ``vector`` or its ``error`` and then ``done``.  Once submitted, a request is the scheduler
thread's (only its ``cancel``, and its job's ``logprobs_stopped``, are set from elsewhere)
until ``done`` is set.
"""

from __future__ import annotations

import codecs
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hybrid.generation import (
    FinishReason,
    GenerationDone,
    GenerationEvent,
    TextDelta,
    TokenLogprob,
    Usage,
)
from hybrid.local.sampling import Pieces, SamplerChain
from hybrid.local.text import StopText

if TYPE_CHECKING:
    from hybrid.local.engine import EngineJob


@dataclass(eq=False)
class BatchRequest:
    """One request in the scheduler: its prompt, where it is, and how to answer."""

    tokens: tuple[int, ...]
    job: EngineJob | None  # None: an embedding
    cancel: threading.Event
    emit: Callable[[GenerationEvent], None]
    started: float
    done: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    vector: np.ndarray | None = None
    evaluated: int = 0
    reused: int = 0
    # The next prompt token to evaluate (== len(tokens) once the last one is in).
    position: int = 0
    sampler: SamplerChain | None = None
    text: StopText | None = None
    decoder: codecs.IncrementalDecoder | None = None
    pending: list[TokenLogprob] = field(default_factory=list)
    generated: int = 0
    first_at: float | None = None
    next_token: int | None = None
    batch_total: int = 0
    batch_steps: int = 0

    def start_answer(self, vocab: Any) -> None:
        """Build an answer's sampler chain, stop text and decoder (nothing for an embedding).

        Args:
            vocab: The model's vocabulary (``llama_vocab *``).
        """
        job = self.job
        if job is not None:
            self.sampler = SamplerChain(
                vocab,
                temperature=job.temperature,
                top_p=job.top_p,
                top_k=job.top_k,
                seed=job.seed,
                grammar=job.grammar,
                logit_bias=job.logit_bias,
                frequency_penalty=job.frequency_penalty,
                presence_penalty=job.presence_penalty,
                prompt=self.tokens,
            )
            self.text = StopText(job.stop, strip=job.strip, own=job.request_stop)
            self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    @property
    def wants_logprobs(self) -> bool:
        """Whether the next token's log-probabilities are computed: the request asked for them
        (``top_logprobs``) and its consumer has not said since that the rest of the answer
        needs none (``logprobs_stopped``).  Read on the scheduler's thread; the flag may be
        set from any other."""
        job = self.job
        if job is None or job.top_logprobs is None:
            return False
        stopped = job.logprobs_stopped
        return stopped is None or not stopped.is_set()

    def take(self, token: int, logits: np.ndarray | None, pieces: Pieces) -> None:
        """Count a sampled token (not an end of generation) and pass its text on.

        Args:
            token: The token.
            logits: Its position's raw logits, when its log-probabilities are computed
                (:attr:`wants_logprobs`); None: it gets none.
            pieces: Token text.
        """
        assert self.job is not None and self.text is not None and self.decoder is not None
        self.generated += 1
        piece = pieces(token)
        if logits is not None:
            self.pending.append(pieces.logprob(logits, token, self.job.top_logprobs or 0))
        text = self.text
        released = text.feed(self.decoder.decode(piece))
        if released or text.stopped:
            self.emit(TextDelta(released, tuple(self.pending)))
            self.pending = []

    def flush(self) -> None:
        """Emit the text still held back (none after a stop sequence) and pending
        log-probabilities, when there are any."""
        assert self.text is not None and self.decoder is not None
        text = self.text
        tail = "" if text.stopped else text.flush() + self.decoder.decode(b"", final=True)
        if tail or self.pending:
            self.emit(TextDelta(tail, tuple(self.pending)))

    def done_event(self, finish: FinishReason, *, cancelled: bool) -> GenerationDone:
        """The answer's closing event, as of now.

        Args:
            finish: Why it ended.
            cancelled: It ended because its ``cancel`` was set.
        """
        assert self.job is not None and self.text is not None
        job, text = self.job, self.text
        finished = time.perf_counter()
        first_at, generated = self.first_at, self.generated
        rate = None
        if first_at is not None and generated > 1 and finished > first_at:
            rate = (generated - 1) / (finished - first_at)
        matched = text.matched if text.matched in job.request_stop else None
        return GenerationDone(
            finish_reason=finish,
            stop_sequence=matched,
            usage=Usage(
                prompt_tokens=len(self.tokens),
                completion_tokens=generated,
                cache_read_tokens=self.reused,
            ),
            time_to_first_token_s=None if first_at is None else first_at - self.started,
            decode_tokens_per_s=rate,
            cancelled=cancelled,
            batch_size=self.batch_total / self.batch_steps if self.batch_steps else None,
        )
