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

# llama.cpp reserves a compute buffer on each device it uses, for the graph of one batch of
# n_ubatch tokens.  Its largest tensor is usually the logits of every token in that batch,
# n_vocab x n_ubatch x 4 bytes; without flash attention the attention scores of one slot's
# context (scores and their softmax, n_head x n_ctx x n_ubatch x 4 bytes each) can be larger.
# A GPU commits all of it.  In RAM only the pages a graph writes are resident, and hybrid asks
# for one row of logits per sequence, so what stays resident is the activations and, without
# flash attention, the scores.  Measured with Gemma 3 270M on 2 CPU cores at n_ubatch 256: a
# 256.6 MiB buffer (the same at 2,048 to 32,768 tokens of context, 1 to 8 slots, with or without
# flash attention), of which 15 MiB resident with flash attention after 256 or 4,096 prompt
# tokens, and 36 / 72 MiB without it after 4,096 / 8,192.  A model whose vocabulary or width is
# unknown is planned with this figure, a 512-token batch of Gemma's 262k vocabulary: on the safe
# side of an OOM.
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
        n_vocab: Tokens in the vocabulary (0: unknown, compute buffers sized for a large one).
        n_head: Attention heads (sizes the attention scores without flash attention).
        n_embd: Width of the hidden state (sizes the activations of a batch).
        flash_attn_ok: Whether llama.cpp runs flash attention for it (keys and values of one
            width), which a quantized V cache needs.
    """

    file_bytes: int
    n_layers: int
    layer_bytes: tuple[int, ...]
    other_bytes: int
    kv_bytes_per_token: int
    context_length: int
    swa_kv_bytes_per_token: int = 0
    sliding_window: int = 0
    n_vocab: int = 0
    n_head: int = 0
    n_embd: int = 0
    flash_attn_ok: bool = True


# Bytes per value of each KV cache type: f16, and q8_0's 32 values in 34 bytes.
KV_VALUE_BYTES = {"f16": 2.0, "q8_0": 34 / 32}
# Tokens llama.cpp evaluates at once in a batch (n_ubatch, hybrid.local.engine.MAX_UBATCH): a
# sliding-window layer's cache holds its window plus one batch (swa_full off).
UBATCH_TOKENS = 256
# Activations of one batch, in hidden-state widths (n_embd x 4 bytes) per token: 24 matches the
# 15 MiB measured for Gemma 3 270M (n_embd 640) at n_ubatch 256.
ACTIVATION_WIDTHS = 24
# One float32 logit per vocabulary entry: llama.cpp's output buffer keeps a row for every
# sequence decoded together (measured: 1, 4 and 8 MiB at 1, 4 and 8 slots of Gemma's 262k).
LOGIT_BYTES = 4


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

    @property
    def flash_attn(self) -> bool:
        """Flash attention: on with a quantized cache (llama.cpp needs it for a q8_0 V cache)."""
        return self.type != "f16"

    def slot_cost(self, model: ModelFootprint, n_ctx: int) -> int:
        """What one more slot costs: its KV cache and its row of logits in the output buffer.
        The compute buffer does not grow with slots (:func:`compute_buffer_bytes`)."""
        return self.slot_bytes(model, n_ctx) + LOGIT_BYTES * model.n_vocab

    def compute_bytes(self, model: ModelFootprint, n_ctx: int, *, resident: bool) -> int:
        """The compute buffer: reserved on a GPU, or resident in RAM
        (:func:`compute_buffer_bytes`)."""
        return compute_buffer_bytes(model, n_ctx, flash_attn=self.flash_attn, resident=resident)


def compute_buffer_bytes(
    model: ModelFootprint, n_ctx: int, *, flash_attn: bool, resident: bool
) -> int:
    """The compute buffer llama.cpp keeps on a device for one batch of :data:`UBATCH_TOKENS`
    tokens, as :data:`COMPUTE_BUFFER_BYTES` explains.

    Args:
        model: The model; without ``n_vocab`` or ``n_embd`` the answer is
            :data:`COMPUTE_BUFFER_BYTES`.
        n_ctx: Context per slot: without flash attention a batch's attention scores span it.
        flash_attn: Whether flash attention runs (its scores are computed in tiles).
        resident: What RAM holds of it (activations and scores; the batch's logits are not
            written) rather than what a GPU reserves (the larger of logits and scores, and the
            activations).

    Returns:
        Bytes.
    """
    if model.n_vocab <= 0 or model.n_embd <= 0:
        return COMPUTE_BUFFER_BYTES
    activations = ACTIVATION_WIDTHS * 4 * model.n_embd * UBATCH_TOKENS
    scores = 0 if flash_attn else 2 * 4 * model.n_head * n_ctx * UBATCH_TOKENS
    if resident:
        return activations + scores
    return max(LOGIT_BYTES * model.n_vocab * UBATCH_TOKENS, scores) + activations


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
    compute_bytes: int = COMPUTE_BUFFER_BYTES

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + (self.compute_bytes if self.items else 0)


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
        compute = self.kv.compute_bytes(model, n_ctx, resident=False)
        kv_layer = kv_bytes // model.n_layers if model.n_layers else 0
        # Offload order: last block first (llama.cpp offloads a suffix), the head once all are in.
        items = [(weight, kv_layer) for weight in reversed(self.layer_weights)]
        items.append((model.other_bytes, 0))
        limit = len(items) if wanted_items is None else min(wanted_items, len(items))
        loads: list[GpuLoad] = []
        placed = 0
        for gpu in self.gpus:
            budget = gpu.vram_free_bytes - vram_margin(gpu) - compute
            count = weight = kv = 0
            while placed < limit and weight + kv + sum(items[placed]) <= budget:
                weight += items[placed][0]
                kv += items[placed][1]
                count += 1
                placed += 1
            loads.append(GpuLoad(gpu, count, weight, kv, compute))
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
                compute,
            )
            placed = limit
        on_gpu = [load for load in loads if load.items]
        gpu_weights = sum(load.weight_bytes for load in on_gpu)
        gpu_kv = sum(load.kv_bytes for load in on_gpu)
        # RAM: what the CPU's compute buffer and the logits of every slot keep resident.
        cpu_compute = self.kv.compute_bytes(model, n_ctx, resident=True)
        outputs = self.kv.slots * LOGIT_BYTES * model.n_vocab
        cpu_bytes = self.weight_bytes - gpu_weights + kv_bytes - gpu_kv + cpu_compute + outputs
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


def memory_phrase(snapshot: HardwareSnapshot) -> str:
    """The free RAM a snapshot saw, with its container limit: "5.5 GiB of free RAM"."""
    memory = snapshot.memory
    phrase = f"{size_text(memory.usable_available_bytes)} of free RAM"
    if memory.cgroup_limit_bytes is not None and memory.cgroup_limit_bytes < memory.total_bytes:
        phrase += f" (container limit {size_text(memory.cgroup_limit_bytes)})"
    return phrase


def size_text(size_bytes: int) -> str:
    """A size for notes: "1.5 GiB", "272 MiB"."""
    # GiB with one decimal from 1 GiB up, whole MiB below: "0.2 GiB" hides a 256 MiB margin.
    if size_bytes >= GIB:
        return f"{size_bytes / GIB:.1f} GiB"
    return f"{size_bytes / MIB:.0f} MiB"
