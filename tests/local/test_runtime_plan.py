"""The local runtime will not load the model at an explicit context size memory cannot hold.

The load fails with the memory needed and available, which ``/health`` and every request then
report, rather than llama.cpp failing to allocate its KV cache (and the message blaming the
GGUF file) or the machine swapping.  The model file is the embedded model's header without its
weights: the refusal comes before llama.cpp reads anything.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from gguf_writer import embedded_header
from hardware_fakes import GIB, build_snapshot

from hybrid.errors import ModelNotReadyError
from hybrid.local.runtime import LocalRuntime
from hybrid.settings import Settings


def test_an_explicit_context_that_does_not_fit_fails_the_load_with_the_numbers(
    tmp_path: Path,
) -> None:
    model = embedded_header(tmp_path / "gemma-3-270m-q4_k_m.gguf")
    local = {"model": model, "n_ctx": 10_000_000}
    settings = Settings.model_validate({"home": tmp_path / "home", "local": local})
    machine = build_snapshot(total=16 * GIB, available=12 * GIB)
    runtime = LocalRuntime(settings, snapshot=lambda: machine)

    asyncio.run(runtime.load())

    assert runtime.state == "failed"
    # 10M tokens of 1,632 bytes of q8_0 KV cache each (the 3 layers that do not slide; the 15
    # sliding ones keep 768 cells), the weights and what the compute buffer keeps resident (a
    # batch's activations): 15.5 GiB.
    assert runtime.error == (
        "context size 10,000,000 (local.n_ctx) does not fit this machine: the model needs "
        "15.5 GiB of RAM, but only 12.0 GiB of free RAM is left and 819 MiB of it is kept free; "
        "set a smaller context (--ctx or HYBRID_LOCAL__N_CTX; at most 7,203,584 fits here), or "
        "leave it unset to let hybrid choose"
    )
    with pytest.raises(ModelNotReadyError, match="does not fit this machine"):
        runtime.backend()
