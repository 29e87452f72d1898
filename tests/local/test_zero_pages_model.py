"""The real embedded model: its cleared KV cache is given back at load, and answers are the same.

Each load runs in a fresh process, as ``hybrid serve`` does: in this one, earlier tests'
mappings may lie around the new cache, where a glibc arena could be, and such memory is left
alone (see :mod:`hybrid.local.zero_pages`).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid.models.embedded import ensure_embedded_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(platform.system() != "Linux", reason="needs /proc/self/maps"),
]

HELPERS = Path(__file__).resolve().parents[1] / "helpers"
# The embedded model's KV cache at one slot of 8,192 tokens (q8_0): 12.75 MiB for its three
# global layers and 5.98 MiB for the window of its fifteen sliding ones.
KV_BYTES = int((12.75 + 5.98) * 2**20)

LOAD_AND_ANSWER = """
import json, sys
from pathlib import Path

import hybrid.local.zero_pages as zero_pages
from greedy import greedy_text
from hybrid.local.engine import LlamaEngine, LoadOptions

PROMPTS = (
    "The three most important inventions of the nineteenth century were",
    "The three most important inventions of the nineteenth century were the telegraph,",
)
given = []
real = zero_pages.give_back

def recorded(before):
    given.append(real(before) if sys.argv[2] == "on" else 0)
    return given[-1]

zero_pages.give_back = recorded
engine = LlamaEngine.load(
    Path(sys.argv[1]),
    LoadOptions(n_ctx=8192, n_threads=2, n_gpu_layers=0, n_batch=64, kv_cache_type="q8_0"),
)
try:
    # The second reuses the first's cache.
    answers = [greedy_text(engine, prompt, max_tokens=48) for prompt in PROMPTS]
finally:
    engine.close()
print(json.dumps({"given": given, "answers": answers}))
"""


def load_and_answer(path: Path, give_back: str) -> dict[str, list[int] | list[str]]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HELPERS), os.environ.get("PYTHONPATH")])),
    }
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_ANSWER, str(path), give_back],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_kv_cache_given_back_and_answers_unchanged(tmp_path: Path) -> None:
    path = ensure_embedded_model(tmp_path / "home")
    given_back = load_and_answer(path, "on")
    kept = load_and_answer(path, "off")

    assert len(given_back["given"]) == 1
    assert given_back["given"][0] >= 0.95 * KV_BYTES  # type: ignore[operator]
    assert given_back["answers"] == kept["answers"]
    assert all(str(text).strip() for text in kept["answers"])
