"""Per-request sampling on a shared llama.cpp context: sampler chains, token text, logprobs.

Each request decoding in the batch has its own llama.cpp sampler chain (its grammar, temperature,
nucleus mass and seed), so requests with different settings decode side by side.  The chain is
the one llama-cpp-python builds for ``Llama.generate``: the grammar first, then greedy for
temperature 0, or top-k, top-p, min-p, temperature and a seeded draw.

A request's logit bias and repetition penalties (OpenAI's ``logit_bias``, ``frequency_penalty``
and ``presence_penalty``) come right after the grammar and before the rest, in the order of
llama.cpp's common sampler (``common/sampling.cpp``): the bias, then the penalties, so a token
banned by its bias is never chosen, greedy decoding included.  The penalties count the last
:data:`PENALTY_LAST_N` tokens, the prompt's included, as llama.cpp's server counts them (it
passes the prompt through the chain, not the grammar, before the first token is sampled).
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from hybrid.errors import GenerationError
from hybrid.generation import TokenLogprob, TopLogprob

# llama.cpp's ``llama_token_data``: a token, its logit and its probability.
_TOKEN_DATA = np.dtype([("id", np.int32), ("logit", np.float32), ("p", np.float32)])

# llama.cpp's defaults for the samplers hybrid does not expose.
TOP_K = 40
MIN_P = 0.05
# How many of the last tokens the penalties count (llama.cpp's and Ollama's default).
PENALTY_LAST_N = 64


class SamplerChain:
    """A llama.cpp sampler chain for one request; free it with :meth:`close`.

    Args:
        vocab: The model's vocabulary (``llama_vocab *``).
        temperature: 0 samples greedily.
        top_p: Nucleus sampling mass.
        top_k: Sample among that many most likely tokens only (0: no limit); None for
            :data:`TOP_K`.
        seed: The draw's seed, or None for a random one.
        grammar: A ``LlamaGrammar`` the output must follow, or None.
        logit_bias: ``(token id, bias)`` pairs added to those tokens' logits.
        frequency_penalty: Subtracted from a token's logit per occurrence among the last
            :data:`PENALTY_LAST_N` tokens.
        presence_penalty: Subtracted from a token's logit when it occurs among them.
        prompt: The prompt's tokens, which the penalties count as llama.cpp's server does.

    Raises:
        ValueError: llama.cpp rejected the grammar, or a biased token id is outside the
            vocabulary.
    """

    def __init__(
        self,
        vocab: Any,
        *,
        temperature: float,
        top_p: float,
        seed: int | None,
        grammar: Any,
        top_k: int | None = None,
        logit_bias: Sequence[tuple[int, float]] = (),
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        prompt: Sequence[int] = (),
    ) -> None:
        import llama_cpp

        self._n_vocab = int(llama_cpp.llama_vocab_n_tokens(vocab))
        if any(not 0 <= token < self._n_vocab for token, _ in logit_bias):
            # llama.cpp's bias sampler would write outside the candidate array.
            raise ValueError("a logit_bias token id is outside the vocabulary")
        penalized = frequency_penalty != 0.0 or presence_penalty != 0.0
        # Greedy and free: the most likely token, read straight from the logits.  llama.cpp's
        # sampler would copy every logit into a candidate array first (3 MB for Gemma's 262k
        # vocabulary), a millisecond per token for each sequence in the batch.
        self._argmax = temperature == 0.0 and grammar is None and not logit_bias and not penalized
        self._chain: Any = None
        if self._argmax:
            return
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        self._chain = chain
        add = llama_cpp.llama_sampler_chain_add
        if grammar is not None:
            rules = llama_cpp.llama_sampler_init_grammar(
                vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
            )
            if not rules:
                self.close()
                raise ValueError("llama.cpp rejected the grammar")
            add(chain, rules)
        if logit_bias:
            entries = (llama_cpp.llama_logit_bias * len(logit_bias))(
                *(llama_cpp.llama_logit_bias(token, bias) for token, bias in logit_bias)
            )
            add(
                chain,
                llama_cpp.llama_sampler_init_logit_bias(self._n_vocab, len(logit_bias), entries),
            )
        if penalized:
            penalties = llama_cpp.llama_sampler_init_penalties(
                PENALTY_LAST_N, 1.0, frequency_penalty, presence_penalty
            )
            # Fed to this sampler alone: the grammar must not read the prompt as output.
            for token in prompt[-PENALTY_LAST_N:]:
                llama_cpp.llama_sampler_accept(penalties, token)
            add(chain, penalties)
        if temperature == 0.0:
            add(chain, llama_cpp.llama_sampler_init_greedy())
        else:
            add(chain, llama_cpp.llama_sampler_init_top_k(TOP_K if top_k is None else top_k))
            add(chain, llama_cpp.llama_sampler_init_top_p(top_p, 1))
            add(chain, llama_cpp.llama_sampler_init_min_p(MIN_P, 1))
            add(chain, llama_cpp.llama_sampler_init_temp(temperature))
            add(chain, llama_cpp.llama_sampler_init_dist(_seed(seed)))

    def sample(self, ctx: Any, index: int) -> int:
        """Sample from the logits of the batch's ``index``-th output, and accept the token."""
        import llama_cpp

        if self._argmax:
            pointer = llama_cpp.llama_get_logits_ith(ctx, index)
            return int(np.ctypeslib.as_array(pointer, shape=(self._n_vocab,)).argmax())
        return int(llama_cpp.llama_sampler_sample(self._chain, ctx, index))

    def sample_row(self, logits: np.ndarray) -> int:
        """Sample from a row of logits kept from an earlier decode, and accept the token.

        The chain is applied to the row as ``llama_sampler_sample`` applies it to a row of the
        context's output: every token a candidate, then the samplers in order.
        """
        import llama_cpp

        if self._argmax:
            return int(logits.argmax())
        data = np.empty(len(logits), dtype=_TOKEN_DATA)
        data["id"] = np.arange(len(logits), dtype=np.int32)
        data["logit"] = logits
        data["p"] = 0.0
        candidates = llama_cpp.llama_token_data_array(
            data.ctypes.data_as(llama_cpp.llama_token_data_p), len(logits), -1, False
        )
        llama_cpp.llama_sampler_apply(self._chain, ctypes.byref(candidates))
        if not 0 <= candidates.selected < candidates.size:
            raise GenerationError("llama.cpp's sampler selected no token")
        token = int(candidates.data[candidates.selected].id)
        llama_cpp.llama_sampler_accept(self._chain, token)
        return token

    def close(self) -> None:
        """Free the chain (and the samplers it holds)."""
        import llama_cpp

        if self._chain is not None:
            llama_cpp.llama_sampler_free(self._chain)
            self._chain = None


class Pieces:
    """The bytes each token stands for, cached (most answers reuse a small set of tokens).

    Safe on any thread: it reads only the vocabulary.
    """

    def __init__(self, vocab: Any, n_vocab: int) -> None:
        self._vocab = vocab
        self.n_vocab = n_vocab
        self._cache: dict[int, bytes] = {}
        self._lock = threading.Lock()

    def __call__(self, token: int) -> bytes:
        piece = self._cache.get(token)
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
            with self._lock:
                self._cache[token] = piece
        return piece

    def logprob(self, logits: np.ndarray, token: int, top: int) -> TokenLogprob:
        """Log-probabilities of a sampled token from its position's raw logits.

        Args:
            logits: The position's logits (one float per vocabulary entry).
            token: The token sampled.
            top: How many most likely alternatives to list (0: none, and only the chosen
                token's log-probability is computed).
        """
        shifted = logits - logits.max()
        if top <= 0:
            # The chosen token's alone: the normalizer (a log-sum-exp, exponentiated in place),
            # without the vocabulary's log-probabilities.
            picked = shifted[token]
            total = np.exp(shifted, out=shifted).sum()
            chosen = _top(self(token), float(picked - np.log(total)))
            return TokenLogprob(chosen.token, chosen.logprob, chosen.bytes)
        logprobs = shifted - np.log(np.exp(shifted).sum())
        best = np.argpartition(-logprobs, top)[:top]
        best = best[np.argsort(-logprobs[best])]
        alternatives = tuple(_top(self(int(i)), float(logprobs[i])) for i in best)
        chosen = _top(self(token), float(logprobs[token]))
        return TokenLogprob(chosen.token, chosen.logprob, chosen.bytes, alternatives)


def _seed(seed: int | None) -> int:
    import llama_cpp

    if seed is None:
        return int(llama_cpp.LLAMA_DEFAULT_SEED)
    return seed & 0xFFFFFFFF


def _top(piece: bytes, logprob: float) -> TopLogprob:
    return TopLogprob(piece.decode("utf-8", errors="replace"), logprob, tuple(piece))
