"""The llama.cpp model in this process: one context, ``n_parallel`` slots decoded together.

The model is loaded through llama-cpp-python's bindings of llama.cpp's C API (the same library
``Llama`` wraps), because serving several requests at once needs what ``Llama`` does not
expose: a context of several sequences and a batch that mixes them.  A
:class:`~hybrid.local.batching.BatchScheduler` owns the context: each running request decodes
in the same batch as the others, with its own sampler chain, stop sequences and
log-probabilities, and a new one joins at the next token boundary (continuous batching).  Each
slot keeps its KV cache between requests, and a request goes to the slot that already holds
the longest start of its prompt.

Log-probabilities are computed from the request's own output row of the batch's logits (one
row per sequence generating), never from a context-by-vocabulary matrix.

On Linux with transparent huge pages, a model computed on the CPU is copied into memory and its
weights moved into huge pages rather than mapped from its file (see :mod:`hybrid.local.weights`:
the repacked matrices are then held once, as fast to read).  The KV cache, which llama.cpp
clears as it creates the context, is not kept resident for that: its zeroed pages are given
back and come back as tokens are written (:mod:`hybrid.local.zero_pages`).

:meth:`LlamaEngine.run` and :meth:`LlamaEngine.embed` block until their request ends and may be
called from several threads at once (the model's work queue runs up to ``n_parallel`` jobs).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.errors import GenerationError, ModelFileError
from hybrid.generation import GenerationEvent
from hybrid.local import zero_pages
from hybrid.local.batching import BatchScheduler
from hybrid.local.sampling import Pieces
from hybrid.local.weights import load_model

log = logging.getLogger("hybrid.llama")

# ggml_log_level (DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5) mapped onto Python's levels.
# llama.cpp warns about benign facts ("n_ctx_per_seq < n_ctx_train"), so its warnings are info
# here and its info is debug.
_LLAMA_LOG_LEVELS = {1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO, 4: logging.ERROR}
_LLAMA_LOG_CONTINUE = 5

# Tokens llama.cpp computes at once inside a batch (n_ubatch).  Its compute buffers are sized
# by it: measured with the embedded model on 2 cores, 256 instead of llama.cpp's default 512
# keeps 20 MB less resident after a long prompt and reads prompts as fast.
MAX_UBATCH = 256

_backend_ready = threading.Lock()
_backend_initialized = False


@dataclass(frozen=True)
class EngineJob:
    """Everything the engine needs to generate one answer.

    Attributes:
        tokens: The tokenized prompt.
        max_tokens: Tokens to generate at most.
        stop: Stop sequences (the format's and the request's).
        request_stop: The request's own stop sequences, reported when one ends the output.
        strip: Trim whitespace around the answer.
        temperature: Sampling temperature; 0 is greedy.
        top_p: Nucleus sampling mass.
        top_k: Sample among that many most likely tokens (0: no limit), or None for the
            sampler's default.
        seed: Sampling seed, or None for a random one.
        top_logprobs: None for no log-probabilities, else the number of alternatives.
        grammar: A compiled ``LlamaGrammar`` constraining the output, or None.
        logit_bias: ``(token id, bias)`` pairs added to those tokens' logits before sampling;
            every id is in the vocabulary.
        frequency_penalty: Subtracted from a token's logit per occurrence among the last
            tokens (see :data:`~hybrid.local.sampling.PENALTY_LAST_N`); 0 for none.
        presence_penalty: Subtracted from a token's logit when it occurs among them; 0 for
            none.
        owner: The backend that prepared it (its tokens are that model's); another model's
            backend prepares the request again.
        logprobs_stopped: Set, from any thread, once the rest of the answer needs no
            log-probabilities (:meth:`~hybrid.backend.Generation.stop_logprobs`): the tokens
            sampled after it get none, and their logits are neither copied nor normalized;
            None: ``top_logprobs`` holds to the end.
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
    top_k: int | None = None
    request_stop: tuple[str, ...] = ()
    logit_bias: tuple[tuple[int, float], ...] = ()
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    owner: object = field(default=None, compare=False, repr=False)
    logprobs_stopped: threading.Event | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LoadOptions:
    """How to load a model: the runtime plan's figures.

    Attributes:
        n_ctx: Tokens each slot holds (a request's prompt and answer together).
        n_threads: CPU threads.
        n_gpu_layers: Blocks offloaded to the GPU.
        n_batch: Tokens per decode step at most (prompt tokens and generating slots).
        n_parallel: Slots: requests decoded together.
        kv_cache_type: ``f16`` or ``q8_0`` (q8_0 needs flash attention).
        flash_attn: Use flash attention.
        huge_page_weights: Copy the weights into huge pages instead of mapping the file (see
            :mod:`hybrid.local.weights`); None: where that works and fits (Linux with
            transparent huge pages, no layer on a GPU, memory for the copy).  Elsewhere the
            file is mapped.
    """

    n_ctx: int
    n_threads: int
    n_gpu_layers: int
    n_batch: int
    n_parallel: int = 1
    kv_cache_type: str = "f16"
    flash_attn: bool = False
    huge_page_weights: bool | None = None


class LlamaEngine:
    """A loaded GGUF model, its context and the scheduler that decodes its slots together.

    Args:
        model: The model (``llama_model *``).
        ctx: Its context (``llama_context *``), of ``options.n_parallel`` sequences.
        options: What it was loaded with (the KV cache type as created).
        weights: Where its weights are: ``mapped`` from the file or in ``huge pages``.
    """

    def __init__(self, model: Any, ctx: Any, options: LoadOptions, weights: str = "mapped") -> None:
        import llama_cpp

        self._model = model
        self._weights = weights
        self._ctx = ctx
        self._options = options
        self._vocab = llama_cpp.llama_model_get_vocab(model)
        self._pieces = Pieces(self._vocab, int(llama_cpp.llama_vocab_n_tokens(self._vocab)))
        self._n_embd = int(llama_cpp.llama_model_n_embd(model))
        self._vocab_lock = threading.Lock()
        self._longest: int | None = None
        self._longest_known = False
        self._closed = False
        self._scheduler = BatchScheduler(
            ctx,
            self._vocab,
            self._pieces,
            n_parallel=options.n_parallel,
            n_ctx=options.n_ctx,
            n_batch=_batch_size(options),
            n_embd=self._n_embd,
            n_swa=int(llama_cpp.llama_model_n_swa(model)),
        )

    @classmethod
    def load(cls, path: Path, options: LoadOptions) -> LlamaEngine:
        """Load a GGUF file (a split model: its first part) and create its context.

        A quantized KV cache the context cannot take (llama.cpp refuses a q8_0 V cache without
        flash attention, which some models and devices lack) falls back to f16, logged.  Weights
        that were to go into huge pages but found none (an old kernel) are mapped instead.

        Args:
            path: The model file.
            options: Context per slot, slots, threads, GPU layers, batch and KV cache type.

        Returns:
            The loaded engine.

        Raises:
            ModelFileError: llama.cpp could not load the file or create its context.
        """
        import llama_cpp

        _route_llama_logs()
        _init_backend()
        if not path.is_file():
            raise ModelFileError(
                f"llama.cpp could not load {path}: the file does not exist; choose another "
                f"with --model (hybrid models lists those found)"
            )
        model, weights = load_model(path, options.n_gpu_layers, options.huge_page_weights)
        if not model:
            raise ModelFileError(
                f"llama.cpp could not load {path}. Check that the file is a complete GGUF "
                f"model supported by llama-cpp-python, or choose another with --model."
            )
        ctx = _new_context(model, options)
        if not ctx and options.kv_cache_type != "f16":
            log.info("llama.cpp refused a %s KV cache here; using f16", options.kv_cache_type)
            options = replace(options, kv_cache_type="f16", flash_attn=False)
            ctx = _new_context(model, options)
        if not ctx:
            llama_cpp.llama_model_free(model)
            raise ModelFileError(
                f"llama.cpp could not create a context for {path} ({options.n_parallel} "
                f"slots of {options.n_ctx} tokens): lower local.n_ctx or local.parallel"
            )
        return cls(model, ctx, options, weights)

    @property
    def n_ctx(self) -> int:
        """Tokens each slot holds: a request's prompt and answer together."""
        return self._options.n_ctx

    @property
    def n_parallel(self) -> int:
        """Slots: requests decoded together."""
        return self._options.n_parallel

    @property
    def kv_cache_type(self) -> str:
        """The KV cache's type as created (``f16`` after a fallback)."""
        return self._options.kv_cache_type

    @property
    def weights(self) -> str:
        """Where the weights are: ``mapped`` from the model file, or copied into ``huge pages``."""
        return self._weights

    @property
    def n_embd(self) -> int:
        """Size of the model's hidden state: the length of :meth:`embed`'s vectors."""
        return self._n_embd

    @property
    def n_vocab(self) -> int:
        """Tokens in the model's vocabulary: token ids run from 0 to ``n_vocab - 1``."""
        return self._pieces.n_vocab

    @property
    def prompt_tokens_evaluated(self) -> int:
        """Prompt tokens the last :meth:`run` or :meth:`embed` to end evaluated anew, set
        before its answer's last event is emitted.

        The rest of that prompt came from its slot's cache: a generation right after an
        embedding of the same prompt evaluates none (it starts from the logits the embedding
        left).
        """
        return self._scheduler.last_evaluated

    def token_text(self, token: int) -> str:
        """The text of a special token (e.g. BOS), for chat templates."""
        import llama_cpp

        text = llama_cpp.llama_vocab_get_text(self._vocab, token)
        return text.decode("utf-8", errors="replace") if text else ""

    @property
    def bos_token(self) -> int:
        """The BOS token id."""
        import llama_cpp

        return int(llama_cpp.llama_vocab_bos(self._vocab))

    @property
    def eos_token(self) -> int:
        """The EOS token id."""
        import llama_cpp

        return int(llama_cpp.llama_vocab_eos(self._vocab))

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
        """Stop the scheduler and free the context and the model."""
        import llama_cpp

        if self._closed:
            return
        self._closed = True
        self._scheduler.close()
        llama_cpp.llama_free(self._ctx)
        llama_cpp.llama_model_free(self._model)

    def run(
        self, job: EngineJob, cancel: threading.Event, emit: Callable[[GenerationEvent], None]
    ) -> None:
        """Generate one answer, emitting text as it becomes final; blocks until it ends.

        Args:
            job: The prepared request.
            cancel: Set by the consumer to stop at the next token boundary.
            emit: Receives each :class:`TextDelta` and finally one :class:`GenerationDone`
                (``usage.cache_read_tokens``: the prompt tokens its slot's cache supplied;
                ``batch_size``: the sequences decoded beside it, on average), marked
                ``cancelled`` when the consumer stopped it (what was generated counts).  It
                is called on the scheduler's thread and must not block.

        Raises:
            InvalidRequestError: The prompt is empty, longer than a slot holds, or holds a
                token outside the vocabulary (only this request fails).
            GenerationError: llama.cpp failed while evaluating or sampling.
        """
        self._scheduler.run(job, cancel, emit)

    def embed(self, tokens: Sequence[int], cancel: threading.Event | None = None) -> np.ndarray:
        """The model's own vector for a prompt: the final hidden state at its last token.

        The last token's state is what llama.cpp gives without another prefill: it is the one
        position whose output the context computes anyway (for the next token's logits).  A
        mean over every position would make every token an output of the batch, paying the
        vocabulary projection (262k rows for Gemma) and a logits row per token, and llama.cpp
        only pools inside a context created for embeddings.  Under a causal mask the last
        position has attended to the whole prompt, so it summarises all of it.

        The prompt is evaluated in a slot as :meth:`run` evaluates it (after the cached start,
        its last token alone) and stays in that slot's cache with its last token's logits: a
        :meth:`run` of the same tokens next evaluates no prompt token.  The same prompt from
        the same cache gives the same vector, bit for bit; from another cache (another start
        reused) it is evaluated in other batches, and differs in the last digits.

        Args:
            tokens: The tokenized prompt (at least one token).
            cancel: Set to stop the evaluation before its end (at the next batch step); what
                it evaluated stays in the slot's cache.

        Returns:
            A float32 vector of :attr:`n_embd` values.

        Raises:
            GenerationError: llama.cpp failed, or gave no hidden state for the prompt.
        """
        if not tokens:
            raise GenerationError("cannot embed an empty prompt")
        return self._scheduler.embed(tokens, cancel)


def _init_backend() -> None:
    """Initialise llama.cpp's backends once per process."""
    global _backend_initialized
    import llama_cpp

    with _backend_ready:
        if not _backend_initialized:
            llama_cpp.llama_backend_init()
            _backend_initialized = True


def _batch_size(options: LoadOptions) -> int:
    """Tokens per decode step: the batch size asked, at least one per slot."""
    return max(options.n_batch, options.n_parallel)


def _new_context(model: Any, options: LoadOptions) -> Any:
    """Create a context (None where llama.cpp refused), its cleared KV cache not resident.

    llama.cpp writes zeros over the whole KV cache as it creates it; those pages are given
    back (see :mod:`hybrid.local.zero_pages`) and come back as tokens are written.
    """
    import llama_cpp

    zero_pages.separate_large_allocations()
    before = zero_pages.snapshot()
    ctx = llama_cpp.llama_init_from_model(model, _context_params(options))
    if ctx:
        zero_pages.give_back(before)
    return ctx


def _context_params(options: LoadOptions) -> Any:
    """llama.cpp's context parameters for a load."""
    import llama_cpp

    params = llama_cpp.llama_context_default_params()
    params.n_seq_max = options.n_parallel
    params.n_ctx = options.n_ctx * options.n_parallel
    params.n_batch = _batch_size(options)
    params.n_ubatch = min(params.n_batch, MAX_UBATCH)
    params.n_threads = options.n_threads
    params.n_threads_batch = options.n_threads
    # Each slot its own part of the cache (a request never takes another's room), and the
    # sliding-window layers keep only their window.
    params.kv_unified = False
    params.swa_full = False
    kv_type = {"f16": llama_cpp.GGML_TYPE_F16, "q8_0": llama_cpp.GGML_TYPE_Q8_0}
    if options.kv_cache_type not in kv_type:
        raise ModelFileError(f"unknown KV cache type {options.kv_cache_type!r}: use f16 or q8_0")
    params.type_k = params.type_v = kv_type[options.kv_cache_type]
    params.flash_attn = options.flash_attn or options.kv_cache_type != "f16"
    params.no_perf = True
    return params


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
