"""The llama.cpp model in this process, driven token by token.

Generation uses llama-cpp-python's token generator rather than its ``create_completion``: that
gives hybrid the cancellation point after every token, the exact token counts, and
log-probabilities computed from the last token's logits alone.  ``create_completion`` can only
report log-probabilities with ``logits_all=True``, which keeps a context-by-vocabulary matrix in
memory (8.6 GB for an 8k context with Gemma's 262k vocabulary).

The context keeps the tokens it last evaluated (its KV cache).  A prompt is evaluated after
the longest prefix the cache holds, in two steps: every token but the last in batches, then
the last one alone.  :meth:`LlamaEngine.embed` evaluates it the same way, keeping the last
token's hidden state (and its logits): a :meth:`LlamaEngine.run` of the same prompt right after
it samples from those logits and evaluates no prompt token anew, and its answer is the one it
would have given without the embedding, token for token (llama.cpp's sums are not
batch-invariant, so both paths must evaluate the last token the same way).  Evaluating the last
token alone costs one decode step more than batching it with the rest.

Every method but :meth:`LlamaEngine.tokenize` and :meth:`LlamaEngine.longest_token_bytes` must
run on the model's queue thread.
"""

from __future__ import annotations

import codecs
import ctypes
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.errors import GenerationError, ModelFileError
from hybrid.generation import (
    FinishReason,
    GenerationDone,
    GenerationEvent,
    TextDelta,
    TokenLogprob,
    TopLogprob,
    Usage,
)
from hybrid.local.text import StopText

log = logging.getLogger("hybrid.llama")

# ggml_log_level (DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5) mapped onto Python's levels.
# llama.cpp warns about benign facts ("n_ctx_per_seq < n_ctx_train"), so its warnings are info
# here and its info is debug.
_LLAMA_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}
_LLAMA_LOG_CONTINUE = 5

# llama.cpp's defaults for the samplers hybrid does not expose.
_TOP_K = 40
_MIN_P = 0.05


@dataclass(frozen=True)
class EngineJob:
    """Everything the worker thread needs to generate one answer.

    Attributes:
        tokens: The tokenized prompt.
        max_tokens: Tokens to generate at most.
        stop: Stop sequences (the format's and the request's).
        request_stop: The request's own stop sequences, reported when one ends the output.
        strip: Trim whitespace around the answer.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        seed: Sampling seed, or None for a random one.
        top_logprobs: None for no log-probabilities, else the number of alternatives.
        grammar: A compiled ``LlamaGrammar`` constraining the output, or None.
        owner: The backend that prepared it (its tokens are that model's); another model's
            backend prepares the request again.
    """

    tokens: Sequence[int]
    max_tokens: int
    stop: tuple[str, ...]
    strip: bool
    temperature: float
    top_p: float
    seed: int | None
    top_logprobs: int | None
    grammar: Any = None
    request_stop: tuple[str, ...] = ()
    owner: object = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: the runtime plan's figures."""

    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    n_batch: int


class LlamaEngine:
    """A loaded GGUF model and its context.

    Args:
        llama: A ``llama_cpp.Llama`` instance.
    """

    def __init__(self, llama: Any) -> None:
        self._llama = llama
        self._vocab = llama._model.vocab
        self._n_vocab = int(llama.n_vocab())
        self._pieces: dict[int, bytes] = {}
        self._vocab_lock = threading.Lock()
        self._longest: int | None = None
        self._longest_known = False
        self._evaluated = 0
        # The prompt whose last-token logits the context holds (an embedding just computed),
        # with its vector; None once anything else is decoded.
        self._primed: tuple[tuple[int, ...], np.ndarray] | None = None

    @classmethod
    def load(cls, path: Path, options: LoadOptions) -> LlamaEngine:
        """Load a GGUF file.

        Args:
            path: The model file.
            options: Context size, threads, GPU layers and batch size.

        Returns:
            The loaded engine.

        Raises:
            ModelFileError: llama.cpp could not load the file.
        """
        from llama_cpp import Llama

        _route_llama_logs()
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=options.n_ctx,
                n_threads=options.n_threads,
                n_threads_batch=options.n_threads,
                n_gpu_layers=options.n_gpu_layers,
                n_batch=options.n_batch,
                verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as exc:
            raise ModelFileError(
                f"llama.cpp could not load {path}: {exc}. Check that the file is a complete "
                f"GGUF model supported by llama-cpp-python, or choose another with --model."
            ) from exc
        return cls(llama)

    @property
    def n_ctx(self) -> int:
        """Tokens the context holds."""
        return int(self._llama.n_ctx())

    @property
    def n_embd(self) -> int:
        """Size of the model's hidden state: the length of :meth:`embed`'s vectors."""
        return int(self._llama.n_embd())

    @property
    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens the last :meth:`run` or :meth:`embed` evaluated anew.

        The rest of that prompt came from the cache: a generation right after an embedding of
        the same prompt reports 0 here (it samples from the logits the embedding left).
        """
        return self._evaluated

    def token_text(self, token: int) -> str:
        """The text of a special token (e.g. BOS), for chat templates."""
        return str(self._llama._model.token_get_text(token))

    @property
    def bos_token(self) -> int:
        """The BOS token id."""
        return int(self._llama.token_bos())

    @property
    def eos_token(self) -> int:
        """The EOS token id."""
        return int(self._llama.token_eos())

    def tokenize(self, text: str, *, add_bos: bool) -> list[int]:
        """Tokenize a prompt, parsing special tokens written by a chat template.

        Safe on any thread: it reads only the vocabulary.  llama.cpp releases the GIL while it
        tokenizes, so a long prompt tokenized on a worker thread leaves the event loop free.
        """
        import llama_cpp

        data = text.encode("utf-8")
        # Every token covers at least one byte; BOS, EOS and a leading space marker add at
        # most three.  Sized this way the buffer holds the answer at the first call, where
        # llama-cpp-python's own tokenize() runs the whole tokenizer twice for long texts.
        capacity = len(data) + 3
        while True:
            buffer = (llama_cpp.llama_token * capacity)()
            count = llama_cpp.llama_tokenize(
                self._vocab, data, len(data), buffer, capacity, add_bos, True
            )
            if count >= 0:
                return buffer[:count]
            capacity = -count

    def longest_token_bytes(self) -> int | None:
        """The most bytes of text one token stands for, when that bounds the token count.

        With it, a text of ``n`` bytes is at least ``ceil(n / longest)`` tokens: SentencePiece
        and byte-level BPE tokenizers split the text into pieces that together spell all of
        it (a byte the vocabulary lacks becomes a byte token, or an unknown token per byte),
        and no piece is longer than the longest token, special tokens included.  Other
        tokenizers (WordPiece, Unigram) normalize text and drop whitespace, and a special
        token that strips the whitespace beside it swallows any amount of it: for those,
        None (no bound).

        Computed once, on first use (a pass over the vocabulary: about half a second for
        262k tokens); safe on any thread.
        """
        with self._vocab_lock:
            if not self._longest_known:
                self._longest = _longest_token_bytes(self._vocab)
                self._longest_known = True
            return self._longest

    def close(self) -> None:
        """Free the model and context."""
        self._primed = None
        self._llama.close()

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        """Generate one answer, emitting text as it becomes final.

        Args:
            job: The prepared request.
            cancel: Set by the consumer to stop after the current token.
            emit: Receives each :class:`TextDelta` and finally one :class:`GenerationDone`,
                marked ``cancelled`` when the consumer stopped it (what was generated counts).

        Raises:
            GenerationError: llama.cpp failed while evaluating or sampling.
        """
        import llama_cpp

        llama = self._llama
        started = time.perf_counter()
        llama.set_seed(job.seed if job.seed is not None else llama_cpp.LLAMA_DEFAULT_SEED)
        text = StopText(job.stop, strip=job.strip)
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        pending_logprobs: list[TokenLogprob] = []
        generated = 0
        first_at: float | None = None
        finish: FinishReason = "length"
        cancelled = False
        try:
            primed, self._primed = self._primed, None
            if primed is not None and primed[0] == tuple(job.tokens):
                # The whole prompt and its last logits are in the context: sample from them.
                self._evaluated, prompt, reset = 0, [], False
            else:
                # All but the last token now; generate() finds them cached and evaluates the
                # last one alone, as embed() does.
                self._evaluated = self._prefill(job.tokens) + 1
                prompt, reset = list(job.tokens), True
            tokens = llama.generate(
                prompt,
                reset=reset,
                top_k=_TOP_K,
                top_p=job.top_p,
                min_p=_MIN_P,
                temp=job.temperature,
                repeat_penalty=1.0,
                grammar=job.grammar,
            )
            for token in tokens:
                if cancel.is_set():
                    cancelled = True
                    break
                if first_at is None:
                    first_at = time.perf_counter()
                if llama_cpp.llama_vocab_is_eog(self._vocab, token):
                    finish = "stop"
                    break
                generated += 1
                piece = self._piece(token)
                if job.top_logprobs is not None:
                    pending_logprobs.append(self._logprob(token, piece, job.top_logprobs))
                released = text.feed(decoder.decode(piece))
                if released or text.stopped:
                    emit(TextDelta(released, tuple(pending_logprobs)))
                    pending_logprobs = []
                if text.stopped:
                    finish = "stop"
                    break
                if generated >= job.max_tokens:
                    break
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise GenerationError(f"llama.cpp failed while generating: {exc}") from exc
        tail = "" if text.stopped else text.flush() + decoder.decode(b"", final=True)
        if tail or pending_logprobs:
            emit(TextDelta(tail, tuple(pending_logprobs)))
        finished = time.perf_counter()
        decode_rate = None
        if first_at is not None and generated > 1 and finished > first_at:
            decode_rate = (generated - 1) / (finished - first_at)
        matched = text.matched if text.matched in job.request_stop else None
        emit(
            GenerationDone(
                finish_reason=finish,
                stop_sequence=matched,
                usage=Usage(prompt_tokens=len(job.tokens), completion_tokens=generated),
                time_to_first_token_s=None if first_at is None else first_at - started,
                decode_tokens_per_s=decode_rate,
                cancelled=cancelled,
            )
        )

    def embed(self, tokens: Sequence[int]) -> np.ndarray:
        """The model's own vector for a prompt: the final hidden state at its last token.

        The last token's state is what llama.cpp gives without another prefill: it is the one
        position whose output the context computes anyway (for the next token's logits).  A
        mean over every position would make every token an output of the batch, paying the
        vocabulary projection (262k rows for Gemma) and a logits row per token, and llama.cpp
        only pools inside a context created for embeddings.  Under a causal mask the last
        position has attended to the whole prompt, so it summarises all of it.

        The prompt is evaluated as :meth:`run` evaluates it (after the same cached prefix, in
        the same batches, the last token alone), in this context, and stays there with its
        last logits: a :meth:`run` of the same tokens next evaluates nothing anew.  The same
        prompt from the same cache gives the same vector, bit for bit; from another cache
        (another prefix reused) it is evaluated in other batches, and differs in the last
        digits.

        Args:
            tokens: The tokenized prompt (at least one token).

        Returns:
            A float32 vector of :attr:`n_embd` values.

        Raises:
            GenerationError: llama.cpp failed, or gave no hidden state for the prompt.
        """
        import llama_cpp

        if not tokens:
            raise GenerationError("cannot embed an empty prompt")
        key = tuple(tokens)
        primed, self._primed = self._primed, None
        if primed is not None and primed[0] == key:
            self._primed, self._evaluated = primed, 0
            return primed[1].copy()
        llama = self._llama
        try:
            evaluated = self._prefill(tokens) + 1
            llama_cpp.llama_set_embeddings(llama.ctx, True)
            try:
                # Alone: with embeddings on, llama.cpp outputs every token of a batch, logits
                # included, which would double the cost of a batch.
                llama.eval(tokens[-1:])
                pointer = llama_cpp.llama_get_embeddings_ith(llama.ctx, -1)
                vector = (
                    None
                    if not pointer
                    else np.ctypeslib.as_array(pointer, shape=(self.n_embd,)).astype(np.float32)
                )
            finally:
                llama_cpp.llama_set_embeddings(llama.ctx, False)
        except (RuntimeError, ValueError, AssertionError) as exc:
            raise GenerationError(f"llama.cpp failed while embedding the prompt: {exc}") from exc
        self._evaluated = evaluated
        if vector is None:
            raise GenerationError(
                "llama.cpp gave no hidden state for the prompt (a context pooled for "
                "embeddings?); load a generative model to use the probe"
            )
        self._primed = (key, vector)
        return vector.copy()

    def _prefill(self, tokens: Sequence[int]) -> int:
        """Evaluate every prompt token but the last, after the prefix the cache holds.

        llama-cpp-python's ``generate`` then finds them all cached and evaluates only the last
        token, as :meth:`embed` does.

        Returns:
            The tokens evaluated.
        """
        llama = self._llama
        head = list(tokens[:-1])
        limit = min(int(llama.n_tokens), len(head))
        reused = 0
        if limit > 0:
            differ = np.flatnonzero(llama.input_ids[:limit] != np.asarray(head[:limit]))
            reused = int(differ[0]) if differ.size else limit
        llama.n_tokens = reused
        if len(head) > reused:
            llama.eval(head[reused:])
        return len(head) - reused

    def _piece(self, token: int) -> bytes:
        """The bytes of one token, cached: most answers reuse a small set of tokens."""
        piece = self._pieces.get(token)
        if piece is None:
            import llama_cpp

            size = 64
            while True:
                buffer = ctypes.create_string_buffer(size)
                n = llama_cpp.llama_token_to_piece(self._vocab, token, buffer, size, 0, False)
                if n >= 0:
                    piece = buffer.raw[:n]
                    break
                size = -n
            self._pieces[token] = piece
        return piece

    def _logprob(self, token: int, piece: bytes, top: int) -> TokenLogprob:
        """Log-probabilities of the token just sampled, from the last position's logits."""
        import llama_cpp

        pointer = llama_cpp.llama_get_logits_ith(self._llama.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self._n_vocab,))
        shifted = logits - logits.max()
        logprobs = shifted - np.log(np.exp(shifted).sum())
        alternatives: tuple[TopLogprob, ...] = ()
        if top > 0:
            best = np.argpartition(-logprobs, top)[:top]
            best = best[np.argsort(-logprobs[best])]
            alternatives = tuple(_top(self._piece(int(i)), float(logprobs[i])) for i in best)
        chosen = _top(piece, float(logprobs[token]))
        return TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, alternatives)


def _route_llama_logs() -> None:
    """Send llama.cpp's own log lines to the ``hybrid.llama`` logger instead of raw stderr."""
    import llama_cpp

    if getattr(_route_llama_logs, "callback", None) is not None:
        return
    last_level = logging.DEBUG

    def forward(level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        nonlocal last_level
        if level != _LLAMA_LOG_CONTINUE:
            last_level = _LLAMA_LOG_LEVELS.get(level, logging.DEBUG)
        message = text.decode("utf-8", errors="replace").rstrip()
        if message:
            log.log(last_level, "%s", message)

    callback = llama_cpp.llama_log_callback(forward)
    # llama.cpp keeps only the function pointer: the ctypes object must outlive every call.
    _route_llama_logs.callback = callback  # type: ignore[attr-defined]
    llama_cpp.llama_log_set(callback, ctypes.c_void_p(0))


def _longest_token_bytes(vocab: Any) -> int | None:
    """See :meth:`LlamaEngine.longest_token_bytes`."""
    import llama_cpp

    if llama_cpp.llama_vocab_type(vocab) not in (
        llama_cpp.LLAMA_VOCAB_TYPE_SPM,
        llama_cpp.LLAMA_VOCAB_TYPE_BPE,
    ):
        return None
    strips = llama_cpp.LLAMA_TOKEN_ATTR_LSTRIP | llama_cpp.LLAMA_TOKEN_ATTR_RSTRIP
    size = 256
    buffer = ctypes.create_string_buffer(size)
    longest = 1
    for token in range(llama_cpp.llama_vocab_n_tokens(vocab)):
        if llama_cpp.llama_vocab_get_attr(vocab, token) & strips:
            return None
        # special=True: a control token written in a chat template is parsed as one token.
        n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        if n < 0:
            size = -n
            buffer = ctypes.create_string_buffer(size)
            n = llama_cpp.llama_token_to_piece(vocab, token, buffer, size, 0, True)
        longest = max(longest, n)
    return longest


def _top(piece: bytes, logprob: float) -> TopLogprob:
    return TopLogprob(piece.decode("utf-8", errors="replace"), logprob, tuple(piece))
