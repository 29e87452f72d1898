"""``hybrid recommend``: a short curated list of instruct GGUFs, ranked for this machine.

The list ships as data (``hybrid/models/data/recommended.json``): for each model its repository,
file, quantization, size, parameters, context, licence, the shape figures the planner needs
(layers, KV heads, head size: from the model's ``config.json``), and quality figures only where
a model card states them (with the source).  :func:`rank` plans each model on this machine with
the same planner ``hybrid serve`` uses (:func:`hybrid.hardware.plan.plan_with_settings`) and
orders them:

1. models that fit and decode at least :data:`READING_SPEED_TOK_S`, largest first (within a
   family, more parameters answer better; the fastest is not the point once it is fast enough);
2. models that fit but decode slower than that, fastest first;
3. models that do not fit, smallest first.

The file's weights are spread evenly over the layers for planning (the GGUF header, which says
exactly where they go, is not downloaded yet), and the KV cache is costed at f16, like a GGUF's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any

from hybrid.errors import ConfigError, HybridError
from hybrid.hardware.plan import ModelFootprint, RuntimePlan, plan_with_settings

if TYPE_CHECKING:
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.settings import LocalSettings

READING_SPEED_TOK_S = 10.0
"""Decode speed below which answers arrive slower than people read (about 7 words a second)."""

_DATA_PACKAGE = "hybrid.models"
_DATA_FILE = "data/recommended.json"
_F16_BYTES = 2


@dataclass(frozen=True)
class Quality:
    """A quality figure a model card states.

    Attributes:
        benchmark: What was measured (``MMLU (5-shot)``).
        score: The figure, as the card states it.
        source: Where it is stated.
    """

    benchmark: str
    score: float
    source: str


@dataclass(frozen=True)
class Recommended:
    """One curated model.

    Attributes:
        id: A short id.
        repo: The Hugging Face repository.
        file: The GGUF file in it.
        quant: Its quantization.
        size_bytes: The file's size.
        size_exact: Whether ``size_bytes`` is the hub's exact figure.
        parameters: The parameter count as the model card states it (``1.54B``).
        context: Trained context length in tokens.
        layers: Transformer blocks.
        kv_heads: Key/value heads per block.
        head_dim: Size of each head.
        licence: The licence identifier.
        summary: One line on what it is good for.
        quality: Quality figures with their sources (may be empty).
    """

    id: str
    repo: str
    file: str
    quant: str
    size_bytes: int
    size_exact: bool
    parameters: str
    context: int
    layers: int
    kv_heads: int
    head_dim: int
    licence: str
    summary: str
    quality: tuple[Quality, ...]

    @property
    def pull_command(self) -> str:
        """The command that fetches it."""
        return f"hybrid pull {self.repo}:{self.quant}"

    def footprint(self) -> ModelFootprint:
        """Its size and shape for the planner (weights spread evenly over the layers)."""
        per_layer = self.size_bytes // self.layers
        return ModelFootprint(
            file_bytes=self.size_bytes,
            n_layers=self.layers,
            layer_bytes=(per_layer,) * self.layers,
            other_bytes=self.size_bytes - per_layer * self.layers,
            kv_bytes_per_token=2 * self.layers * self.kv_heads * self.head_dim * _F16_BYTES,
            context_length=self.context,
        )


@dataclass(frozen=True)
class Ranked:
    """A curated model with its plan on this machine.

    Attributes:
        model: The model.
        plan: How it would run here; None when planning failed.
        why: One line: why it ranks where it does.
    """

    model: Recommended
    plan: RuntimePlan | None
    why: str

    def to_json(self) -> dict[str, Any]:
        """The model's fields, its plan's verdict, the reason and the pull command."""
        model = self.model
        return {
            "id": model.id,
            "repo": model.repo,
            "file": model.file,
            "quant": model.quant,
            "size_bytes": model.size_bytes,
            "size_exact": model.size_exact,
            "parameters": model.parameters,
            "context": model.context,
            "licence": model.licence,
            "summary": model.summary,
            "quality": [
                {"benchmark": q.benchmark, "score": q.score, "source": q.source}
                for q in model.quality
            ],
            "fits": self.plan.fits if self.plan is not None else None,
            "predicted_tokens_per_s": (
                round(self.plan.predicted_tokens_per_s, 1)
                if self.plan is not None and self.plan.predicted_tokens_per_s is not None
                else None
            ),
            "n_ctx": self.plan.n_ctx if self.plan is not None else None,
            "memory_required_bytes": (
                self.plan.memory_required_bytes if self.plan is not None else None
            ),
            "why": self.why,
            "pull": model.pull_command,
        }


def load_recommended(text: str | None = None) -> list[Recommended]:
    """Read the curated list.

    Args:
        text: The JSON to read (default: the list shipped with hybrid).

    Returns:
        The models, in the file's order.

    Raises:
        ConfigError: The list is malformed (a broken installation: reinstall hybrid).
    """
    if text is None:
        text = resources.files(_DATA_PACKAGE).joinpath(_DATA_FILE).read_text("utf-8")
    try:
        raw = json.loads(text)["models"]
        return [_model(item) for item in raw]
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"the list of recommended models ({_DATA_FILE}) is malformed ({exc}); reinstall hybrid"
        ) from exc


def rank(
    models: list[Recommended], snapshot: HardwareSnapshot, local: LocalSettings
) -> list[Ranked]:
    """Plan each model on the machine ``snapshot`` describes and order them (module docstring).

    Args:
        models: The curated models.
        snapshot: This machine.
        local: The ``local.*`` settings ``hybrid serve`` would plan with.

    Returns:
        The models, best first, each with its plan and a one-line reason.
    """
    planned: list[tuple[Recommended, RuntimePlan | None, str | None]] = []
    for model in models:
        try:
            planned.append((model, plan_with_settings(snapshot, model.footprint(), local), None))
        except HybridError as exc:
            planned.append((model, None, str(exc)))
    fast = [p for p in planned if _tier(p[1]) == 0]
    largest_fast = max(fast, key=lambda p: p[0].size_bytes)[0] if fast else None
    ordered = sorted(planned, key=_order)
    return [
        Ranked(model, plan, problem or _why(model, plan, model is largest_fast))
        for model, plan, problem in ordered
    ]


def _tier(plan: RuntimePlan | None) -> int:
    if plan is None or not plan.fits:
        return 2
    speed = plan.predicted_tokens_per_s
    return 0 if speed is None or speed >= READING_SPEED_TOK_S else 1


def _order(item: tuple[Recommended, RuntimePlan | None, str | None]) -> tuple[int, float]:
    model, plan, _ = item
    tier = _tier(plan)
    if tier == 0:
        return (0, -model.size_bytes)
    if tier == 1 and plan is not None:
        return (1, -(plan.predicted_tokens_per_s or 0.0))
    return (2, model.size_bytes)


def _why(model: Recommended, plan: RuntimePlan | None, best: bool) -> str:
    if plan is None:
        return "could not be planned on this machine"
    memory = _gib(plan.memory_required_bytes)
    speed = plan.predicted_tokens_per_s
    pace = f"predicted {speed:.0f} tok/s" if speed is not None else "speed unknown (no bandwidth)"
    if not plan.fits:
        return f"does not fit: needs about {memory} at a context of {plan.n_ctx:,} tokens"
    if speed is not None and speed < READING_SPEED_TOK_S:
        return f"fits ({memory}), but {pace}: slower than reading speed here"
    lead = "the largest that fits and keeps up with reading" if best else "fits and keeps up"
    return f"{lead}: {memory} at a context of {plan.n_ctx:,} tokens, {pace}"


def _gib(count: int) -> str:
    return f"{count / (1 << 30):.1f} GiB"


def _model(item: dict[str, Any]) -> Recommended:
    quality = tuple(
        Quality(str(q["benchmark"]), float(q["score"]), str(q["source"]))
        for q in item.get("quality") or []
    )
    return Recommended(
        id=str(item["id"]),
        repo=str(item["repo"]),
        file=str(item["file"]),
        quant=str(item["quant"]),
        size_bytes=int(item["size_bytes"]),
        size_exact=bool(item["size_exact"]),
        parameters=str(item["parameters"]),
        context=int(item["context"]),
        layers=int(item["layers"]),
        kv_heads=int(item["kv_heads"]),
        head_dim=int(item["head_dim"]),
        licence=str(item["licence"]),
        summary=str(item["summary"]),
        quality=quality,
    )
