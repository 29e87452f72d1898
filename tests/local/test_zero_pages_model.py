"""The real embedded model: its cleared KV cache is given back at load, and answers are the same."""

from __future__ import annotations

import platform
from pathlib import Path

import pytest
from greedy import greedy_text

import hybrid.local.zero_pages as zero_pages
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.zero_pages import Span
from hybrid.models.embedded import ensure_embedded_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.system() != "Linux", reason="needs /proc/self/maps"),
]

PROMPTS = (
    "The three most important inventions of the nineteenth century were",
    "The three most important inventions of the nineteenth century were the telegraph,",
)
# The embedded model's KV cache at one slot of 8,192 tokens (q8_0): 12.75 MiB for its three
# global layers and 5.98 MiB for the window of its fifteen sliding ones.
KV_BYTES = int((12.75 + 5.98) * 2**20)


def answers(path: Path) -> list[str]:
    engine = LlamaEngine.load(
        path,
        LoadOptions(n_ctx=8192, n_threads=2, n_gpu_layers=0, n_batch=64, kv_cache_type="q8_0"),
    )
    try:
        # The second reuses the first's cache.
        return [greedy_text(engine, prompt, max_tokens=48) for prompt in PROMPTS]
    finally:
        engine.close()


def test_kv_cache_given_back_and_answers_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ensure_embedded_model(tmp_path / "home")
    given: list[int] = []
    real = zero_pages.give_back

    def recorded(before: tuple[Span, ...]) -> int:
        given.append(real(before))
        return given[-1]

    monkeypatch.setattr(zero_pages, "give_back", recorded)
    kept_out = answers(path)
    assert len(given) == 1
    assert given[0] >= 0.95 * KV_BYTES

    monkeypatch.setattr(zero_pages, "give_back", lambda before: 0)
    assert answers(path) == kept_out
    assert all(text.strip() for text in kept_out)
