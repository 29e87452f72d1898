"""Settings for the in-process model and the hardware probe that sizes it."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# llama.cpp numbers a context's positions with 32-bit signed integers: none holds more tokens.
MAX_CONTEXT_TOKENS = 2**31 - 1

StoreName = Literal["ollama", "lmstudio", "hf", "llama.cpp"]
"""A model store of another tool that discovery reads in place (see ``hybrid.models.stores``)."""

STORE_NAMES: tuple[StoreName, ...] = ("ollama", "lmstudio", "hf", "llama.cpp")


class LocalSettings(BaseModel):
    """The quantized GGUF model answered in-process through llama.cpp."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Path | None = Field(
        default=None,
        description=(
            "GGUF file to serve, or a model name as `hybrid models` lists it (llama3.2:3b, "
            "org/repo:Q4_K_M; prefix ollama:, lmstudio:, hf:, llama.cpp: or folder: to pick "
            "a store); unset serves the embedded default model."
        ),
    )
    models_dirs: list[Path] = Field(
        default_factory=list,
        description="Extra folders searched for *.gguf files (a JSON list in the environment).",
    )
    stores: list[StoreName] = Field(
        default_factory=lambda: list(STORE_NAMES),
        description=(
            "Other tools' model stores listed and served in place: ollama (OLLAMA_MODELS), "
            "lmstudio, hf (HF_HUB_CACHE / HF_HOME) and llama.cpp (LLAMA_CACHE); [] reads none."
        ),
    )
    n_ctx: int | None = Field(
        default=None,
        ge=256,
        le=MAX_CONTEXT_TOKENS,
        description=(
            "Context window in tokens; unset plans it from the hardware. A value whose KV "
            "cache does not fit this machine's memory is refused at start."
        ),
    )
    max_ctx: int = Field(
        default=8192,
        ge=256,
        le=MAX_CONTEXT_TOKENS,
        description="Upper bound on the context window planned from the hardware.",
    )
    n_threads: int | None = Field(
        default=None,
        ge=1,
        description="CPU threads for generation; unset plans it from the hardware.",
    )
    n_gpu_layers: int | None = Field(
        default=None,
        ge=-1,
        description="Layers offloaded to the GPU (-1 = all, 0 = none); unset plans it.",
    )
    n_batch: int = Field(
        default=512,
        ge=1,
        description="Prompt tokens evaluated per llama.cpp batch.",
    )
    parallel: int | None = Field(
        default=None,
        ge=1,
        le=64,
        description=(
            "Requests the local model answers at once, decoded together in one batch (each "
            "slot holds its own context and KV cache); unset plans up to 4 from memory."
        ),
    )
    kv_cache_type: Literal["auto", "f16", "q8_0"] = Field(
        default="auto",
        description=(
            "KV cache precision: q8_0 halves its memory (with flash attention); auto uses "
            "q8_0 where llama.cpp supports it for the model, else f16."
        ),
    )
    max_queue: int = Field(
        default=8,
        ge=0,
        description="Requests that may wait for a free slot; more get HTTP 429.",
    )
    default_max_tokens: int = Field(
        default=1024,
        ge=1,
        description="Output token cap for a request that sets no max_tokens.",
    )
    temperature: float = Field(
        default=0.0,
        ge=0.0,
        le=2.0,
        description=(
            "Sampling temperature for a request that sets none; 0 is greedy, which suits "
            "small local models best."
        ),
    )
    keep_alive: float = Field(
        default=300.0,
        description=(
            "Seconds with no request queued or running after which the model is unloaded to "
            "give its memory back (background calibration does not count and pauses); the "
            "next request reloads it. Negative never unloads; 0 unloads after each request."
        ),
    )
    background_on_battery: bool = Field(
        default=False,
        description=(
            "Let the local model's background work (background calibration, local shadow "
            "answers, refits from traffic) run on battery power too; off, it waits for AC "
            "power. A machine with no battery, or whose power source is unknown, never waits."
        ),
    )

    @field_validator("model")
    @classmethod
    def _expand_model(cls, value: Path | None) -> Path | None:
        return value.expanduser() if value is not None else None

    @field_validator("models_dirs")
    @classmethod
    def _expand_models_dirs(cls, value: list[Path]) -> list[Path]:
        return [path.expanduser() for path in value]


class ProbeSettings(BaseModel):
    """The hardware probe that sizes the local model and watches load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sample_interval_s: float = Field(
        default=1.0,
        gt=0,
        description="Seconds between hardware samples (CPU, memory, GPU load).",
    )
    measure_bandwidth: bool = Field(
        default=True,
        description="Measure memory bandwidth at start-up to estimate generation speed.",
    )
