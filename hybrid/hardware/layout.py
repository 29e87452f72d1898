"""The memory model behind the runtime plan: where a model's bytes go, and how fast it decodes.

The layout follows llama.cpp's own and the estimators of llama.cpp's ``--fit`` and Ollama (see
:mod:`hybrid.hardware.plan`): offloaded blocks take their weights and their share of the KV
cache to the GPU, every device that runs part of the graph reserves a compute buffer, GPUs and
RAM keep a safety margin free, and decode speed is bounded by the bytes each device reads per
token over its memory bandwidth.
"""

from __future__ import annotations

from dataclasses import dataclass

from hybrid.hardware.snapshot import GpuInfo, HardwareSnapshot

MIB = 1024**2
GIB = 1024**3

# llama.cpp reserves a compute graph for a 512-token batch on each device it uses.  The logits of
# that batch alone take n_vocab x 512 x 4 bytes: 512 MiB for Gemma 3's 262k vocabulary (measured:
# 513 MiB at any n_ctx), ~250 MiB for Llama 3's 128k.  The footprint does not carry n_vocab, so
# the larger figure is assumed: overestimating keeps the plan on the safe side of an OOM.
COMPUTE_BUFFER_BYTES = 512 * MIB

# Share of the memory-bandwidth bound that llama.cpp's decode reaches.  On the reference machine
# (2-core EPYC VM, 28 GB/s copy bandwidth) Gemma 3 270M Q4_K_M has a bound of 112 tok/s and
# decodes at 57-78 tok/s depending on load and context size, i.e. 0.5-0.7 of the bound.
DECODE_EFFICIENCY = 0.6


@dataclass(frozen=True)
class ModelFootprint:
    """What a model needs, read from its GGUF header (built by ``hybrid.models``).

    Attributes:
        file_bytes: Size of the file on disk.
        n_layers: Repeating blocks (``block_count``).
        layer_bytes: Weight bytes of each block ``blk.N.*``; ``len == n_layers``.
        other_bytes: Token embedding, output head, norms: everything outside the blocks.
        kv_bytes_per_token: f16 K+V cache bytes per context token, all layers together.
        context_length: Context length the model was trained with.
        swa_kv_bytes_per_token: Of ``kv_bytes_per_token``, what sliding-window layers take.
        sliding_window: Tokens those layers attend to (0: no layer slides).
    """

    file_bytes: int
    n_layers: int
    layer_bytes: tuple[int, ...]
    other_bytes: int
    kv_bytes_per_token: int
    context_length: int
    swa_kv_bytes_per_token: int = 0
    sliding_window: int = 0


# Bytes per value of each KV cache type: f16, and q8_0's 32 values in 34 bytes.
KV_VALUE_BYTES = {"f16": 2.0, "q8_0": 34 / 32}
# Tokens llama.cpp evaluates at once in a batch (n_ubatch, hybrid.local.engine.MAX_UBATCH): a
# sliding-window layer's cache holds its window plus one batch (swa_full off).
UBATCH_TOKENS = 256


@dataclass(frozen=True)
class KvCache:
    """How the KV cache is kept: slots (one sequence each, each ``n_ctx`` tokens) and type."""

    slots: int = 1
    type: str = "f16"

    def slot_bytes(self, model: ModelFootprint, n_ctx: int) -> int:
        """One slot's KV cache at ``n_ctx`` tokens: full layers hold every token, sliding
        layers their window and one batch."""
        scale = KV_VALUE_BYTES[self.type] / KV_VALUE_BYTES["f16"]
        full = model.kv_bytes_per_token - model.swa_kv_bytes_per_token
        window = min(n_ctx, model.sliding_window + UBATCH_TOKENS) if model.sliding_window else 0
        return int(scale * (full * n_ctx + model.swa_kv_bytes_per_token * window))

    def total_bytes(self, model: ModelFootprint, n_ctx: int) -> int:
        """Every slot's KV cache."""
        return self.slots * self.slot_bytes(model, n_ctx)


def vram_margin(gpu: GpuInfo) -> int:
    """VRAM kept free on a GPU: max(512 MiB, 10 % of its total), for the driver and CUDA context."""
    return max(512 * MIB, gpu.vram_total_bytes // 10)


def ram_margin(usable_total_bytes: int) -> int:
    """RAM left free: max(256 MiB, 5 % of usable RAM), for the server, the OS and page cache."""
    return max(256 * MIB, usable_total_bytes // 20)


@dataclass(frozen=True)
class GpuLoad:
    """What one GPU holds under a placement."""

    gpu: GpuInfo
    items: int
    weight_bytes: int
    kv_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + (COMPUTE_BUFFER_BYTES if self.items else 0)


@dataclass(frozen=True)
class Layout:
    """A placement of the model at one context size, and what it costs where."""

    n_ctx: int
    gpu_items: int  # blocks offloaded, plus one when the output head is too
    loads: tuple[GpuLoad, ...]
    vram_short: bool  # an explicit n_gpu_layers asked for more than the GPUs hold
    ram_bytes: int
    total_bytes: int


class Planner:
    """The arithmetic behind :func:`~hybrid.hardware.plan.plan_for`: one snapshot, one model."""

    def __init__(
        self, snapshot: HardwareSnapshot, model: ModelFootprint, kv: KvCache | None = None
    ) -> None:
        self.snapshot = snapshot
        self.model = model
        self.kv = kv if kv is not None else KvCache()
        self.layer_weights = model.layer_bytes[: model.n_layers]
        weights = sum(self.layer_weights) + model.other_bytes
        self.weight_bytes = weights if weights > 0 else model.file_bytes
        usable_total = snapshot.memory.usable_total_bytes
        self.ram_budget = snapshot.memory.usable_available_bytes - ram_margin(usable_total)
        self.gpus = (
            sorted(snapshot.gpus, key=lambda gpu: gpu.vram_free_bytes, reverse=True)
            if snapshot.gpu_offload_supported
            else []
        )

    def layout(self, n_ctx: int, wanted_items: int | None) -> Layout:
        """Place the model at ``n_ctx``: as much as fits, or exactly ``wanted_items``."""
        model = self.model
        kv_bytes = self.kv.total_bytes(model, n_ctx)
        kv_layer = kv_bytes // model.n_layers if model.n_layers else 0
        # Offload order: last block first (llama.cpp offloads a suffix), the head once all are in.
        items = [(weight, kv_layer) for weight in reversed(self.layer_weights)]
        items.append((model.other_bytes, 0))
        limit = len(items) if wanted_items is None else min(wanted_items, len(items))
        loads: list[GpuLoad] = []
        placed = 0
        for gpu in self.gpus:
            budget = gpu.vram_free_bytes - vram_margin(gpu) - COMPUTE_BUFFER_BYTES
            count = weight = kv = 0
            while placed < limit and weight + kv + sum(items[placed]) <= budget:
                weight += items[placed][0]
                kv += items[placed][1]
                count += 1
                placed += 1
            loads.append(GpuLoad(gpu, count, weight, kv))
        vram_short = placed < limit and wanted_items is not None and bool(self.gpus)
        if vram_short:
            # Account the overflow to the roomiest GPU: that is where llama.cpp would fail.
            extra = items[placed:limit]
            first = loads[0]
            loads[0] = GpuLoad(
                first.gpu,
                first.items + len(extra),
                first.weight_bytes + sum(weight for weight, _ in extra),
                first.kv_bytes + sum(kv for _, kv in extra),
            )
            placed = limit
        on_gpu = [load for load in loads if load.items]
        gpu_weights = sum(load.weight_bytes for load in on_gpu)
        gpu_kv = sum(load.kv_bytes for load in on_gpu)
        cpu_bytes = self.weight_bytes - gpu_weights + kv_bytes - gpu_kv + COMPUTE_BUFFER_BYTES
        unified = sum(load.total_bytes for load in on_gpu if load.gpu.unified_memory)
        return Layout(
            n_ctx=n_ctx,
            gpu_items=placed,
            loads=tuple(on_gpu),
            vram_short=vram_short,
            ram_bytes=cpu_bytes + unified,
            total_bytes=cpu_bytes + sum(load.total_bytes for load in on_gpu),
        )

    def fits(self, layout: Layout) -> bool:
        return not layout.vram_short and layout.ram_bytes <= self.ram_budget

    def seconds_per_token(self, layout: Layout) -> float | None:
        """Estimated decode time per token, ``None`` when a needed bandwidth is unknown."""
        cpu_bandwidth = self.snapshot.memory_bandwidth_bytes_per_s
        gpu_bytes = 0
        seconds = 0.0
        for load in layout.loads:
            bandwidth = load.gpu.memory_bandwidth_bytes_per_s or cpu_bandwidth
            if bandwidth is None:
                return None
            seconds += load.weight_bytes / bandwidth
            gpu_bytes += load.weight_bytes
        cpu_bytes = max(0, self.model.file_bytes - gpu_bytes)
        if cpu_bytes:
            if cpu_bandwidth is None:
                return None
            seconds += cpu_bytes / cpu_bandwidth
        return seconds / DECODE_EFFICIENCY if seconds > 0 else None
