"""The runtime plan: how to run one model on the machine a snapshot describes.

:func:`plan_for` chooses llama.cpp's ``n_threads``, ``n_gpu_layers`` and ``n_ctx``, says whether
the model fits, and predicts decode speed.  The memory model follows llama.cpp's own layout and
the estimators of llama.cpp's ``--fit`` and Ollama:

* ``n_gpu_layers = k`` puts the *last* ``k`` repeating blocks on the GPU; ``k > n_layers``
  (llama.cpp's "all", conventionally ``n_layers + 1`` or ``-1``) also moves the output head.
  Each offloaded block takes its weights and its share of the KV cache to the GPU.
* Every device that runs part of the graph reserves a compute buffer (:data:`COMPUTE_BUFFER_BYTES`).
* A GPU keeps a safety margin free (:func:`vram_margin`); so does RAM (:func:`ram_margin`).
* Unified memory (Apple Silicon) is RAM: what is "offloaded" is still counted against RAM.
* Decode reads every weight once per token: the bandwidth bound is bytes read on the CPU / CPU
  bandwidth + bytes read on each GPU / that GPU's bandwidth.  llama.cpp reaches only part of
  that bound (:data:`DECODE_EFFICIENCY`): dequantisation, attention and the logits add work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hybrid.errors import ConfigError
from hybrid.hardware.snapshot import CpuInfo, GpuInfo, HardwareSnapshot

if TYPE_CHECKING:
    from hybrid.settings import LocalSettings

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

MIN_CTX = 512
CTX_STEP = 256

# A core counts as busy from 0.75 of it up (0.2 s of sampling reads an idle machine at 5-25 %).
BUSY_ROUNDING = 0.25

# llama.cpp's decode threads wait for each other at every layer: one thread that shares its core
# with another program stalls them all.  Measured on 2 cores with one kept busy: 2 threads decoded
# 13 tok/s, 1 thread 55 tok/s.  So one core is always left for the server, the client and the OS,
# and cores that other programs keep busy when the model loads are left to them too.


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
    """

    file_bytes: int
    n_layers: int
    layer_bytes: tuple[int, ...]
    other_bytes: int
    kv_bytes_per_token: int
    context_length: int


@dataclass(frozen=True)
class RuntimePlan:
    """How to run a model here.

    Attributes:
        n_threads: CPU threads for llama.cpp.
        n_gpu_layers: Blocks offloaded (0 = CPU only); ``n_layers + 1`` means every block and
            the output head.  An explicit value is passed through unchanged.
        n_ctx: Context size in tokens.
        fits: Whether the weights, KV cache and compute buffers fit this machine's usable
            memory (RAM after the container limit, VRAM after a margin).
        predicted_tokens_per_s: Estimated decode speed, ``None`` without a known bandwidth.
        memory_required_bytes: RAM and VRAM the plan needs together (weights + KV cache +
            compute buffers; safety margins not included).
        notes: Why the plan is what it is, one human-readable sentence each.
    """

    n_threads: int
    n_gpu_layers: int
    n_ctx: int
    fits: bool
    predicted_tokens_per_s: float | None
    memory_required_bytes: int
    notes: tuple[str, ...]


def vram_margin(gpu: GpuInfo) -> int:
    """VRAM kept free on a GPU: max(512 MiB, 10 % of its total), for the driver and CUDA context."""
    return max(512 * MIB, gpu.vram_total_bytes // 10)


def ram_margin(usable_total_bytes: int) -> int:
    """RAM left free: max(256 MiB, 5 % of usable RAM), for the server, the OS and page cache."""
    return max(256 * MIB, usable_total_bytes // 20)


def busy_cores(cpu: CpuInfo) -> float:
    """Cores that other programs kept busy while the snapshot was taken.

    ``load_percent`` is the share of all logical CPUs in use.  Each busy logical CPU is counted
    as a whole physical core: a decode thread beside a busy hyperthread runs at half speed.
    """
    busy = cpu.load_percent / 100.0 * max(cpu.logical_cores, cpu.physical_cores)
    return max(0.0, min(float(cpu.physical_cores), busy))


def derive_threads(physical_cores: int, busy: float = 0.0) -> int:
    """Threads for llama.cpp: the physical cores less one, less those other programs keep busy.

    Hyperthreads are not counted: decode is memory-bound and two threads on one core only
    fight over it.  At least one thread.

    Args:
        physical_cores: Physical cores of the machine (after any container limit).
        busy: Cores other programs keep busy (:func:`busy_cores`).
    """
    return max(1, physical_cores - 1 - math.floor(busy + BUSY_ROUNDING))


@dataclass(frozen=True)
class _GpuLoad:
    """What one GPU holds under a placement."""

    gpu: GpuInfo
    items: int
    weight_bytes: int
    kv_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.weight_bytes + self.kv_bytes + (COMPUTE_BUFFER_BYTES if self.items else 0)


@dataclass(frozen=True)
class _Layout:
    """A placement of the model at one context size, and what it costs where."""

    n_ctx: int
    gpu_items: int  # blocks offloaded, plus one when the output head is too
    loads: tuple[_GpuLoad, ...]
    vram_short: bool  # an explicit n_gpu_layers asked for more than the GPUs hold
    ram_bytes: int
    total_bytes: int


class _Planner:
    """The arithmetic behind :func:`plan_for`, for one snapshot and one model."""

    def __init__(self, snapshot: HardwareSnapshot, model: ModelFootprint) -> None:
        self.snapshot = snapshot
        self.model = model
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

    def layout(self, n_ctx: int, wanted_items: int | None) -> _Layout:
        """Place the model at ``n_ctx``: as much as fits, or exactly ``wanted_items``."""
        model = self.model
        kv_layer = model.kv_bytes_per_token * n_ctx // model.n_layers if model.n_layers else 0
        # Offload order: last block first (llama.cpp offloads a suffix), the head once all are in.
        items = [(weight, kv_layer) for weight in reversed(self.layer_weights)]
        items.append((model.other_bytes, 0))
        limit = len(items) if wanted_items is None else min(wanted_items, len(items))
        loads: list[_GpuLoad] = []
        placed = 0
        for gpu in self.gpus:
            budget = gpu.vram_free_bytes - vram_margin(gpu) - COMPUTE_BUFFER_BYTES
            count = weight = kv = 0
            while placed < limit and weight + kv + sum(items[placed]) <= budget:
                weight += items[placed][0]
                kv += items[placed][1]
                count += 1
                placed += 1
            loads.append(_GpuLoad(gpu, count, weight, kv))
        vram_short = placed < limit and wanted_items is not None and bool(self.gpus)
        if vram_short:
            # Account the overflow to the roomiest GPU: that is where llama.cpp would fail.
            extra = items[placed:limit]
            first = loads[0]
            loads[0] = _GpuLoad(
                first.gpu,
                first.items + len(extra),
                first.weight_bytes + sum(weight for weight, _ in extra),
                first.kv_bytes + sum(kv for _, kv in extra),
            )
            placed = limit
        on_gpu = [load for load in loads if load.items]
        gpu_weights = sum(load.weight_bytes for load in on_gpu)
        gpu_kv = sum(load.kv_bytes for load in on_gpu)
        cpu_bytes = (
            self.weight_bytes
            - gpu_weights
            + model.kv_bytes_per_token * n_ctx
            - gpu_kv
            + COMPUTE_BUFFER_BYTES
        )
        unified = sum(load.total_bytes for load in on_gpu if load.gpu.unified_memory)
        return _Layout(
            n_ctx=n_ctx,
            gpu_items=placed,
            loads=tuple(on_gpu),
            vram_short=vram_short,
            ram_bytes=cpu_bytes + unified,
            total_bytes=cpu_bytes + sum(load.total_bytes for load in on_gpu),
        )

    def fits(self, layout: _Layout) -> bool:
        return not layout.vram_short and layout.ram_bytes <= self.ram_budget

    def seconds_per_token(self, layout: _Layout) -> float | None:
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


def plan_with_settings(
    snapshot: HardwareSnapshot, model: ModelFootprint, local: LocalSettings
) -> RuntimePlan:
    """Plan the way ``hybrid serve`` does: :func:`plan_for` with the user's ``local.*`` settings.

    Raises:
        ConfigError: A setting is out of range for planning.
    """
    return plan_for(
        snapshot,
        model,
        max_ctx=local.max_ctx,
        n_ctx=local.n_ctx,
        n_threads=local.n_threads,
        n_gpu_layers=local.n_gpu_layers,
    )


def serving_plan(
    snapshot: HardwareSnapshot, model: ModelFootprint, local: LocalSettings
) -> RuntimePlan:
    """The plan ``hybrid serve`` loads the model with: :func:`plan_with_settings`, except that
    an explicit ``local.n_ctx`` that does not fit is refused.

    A derived context is already the largest that fits.  An explicit one that does not would
    have llama.cpp fail to allocate its KV cache, or push the machine into swap, once the
    server runs; refused here, it is one line at start that says how much memory it needs,
    how much there is, and which context size fits.

    Raises:
        ConfigError: A setting is out of range for planning, or ``local.n_ctx`` is set and the
            model does not fit this machine's memory at that context.
    """
    plan = plan_with_settings(snapshot, model, local)
    n_ctx = local.n_ctx
    if plan.fits or n_ctx is None:
        return plan
    planner = _Planner(snapshot, model)
    wanted = _wanted_items(snapshot, model, local.n_gpu_layers, [])
    layout = planner.layout(n_ctx, wanted)
    if layout.vram_short:
        load = layout.loads[0]
        needs = (
            f"{_size(load.total_bytes)} on {load.gpu.name}, which has "
            f"{_size(load.gpu.vram_free_bytes)} free and keeps {_size(vram_margin(load.gpu))} "
            "of it free"
        )
    else:
        margin = ram_margin(snapshot.memory.usable_total_bytes)
        needs = (
            f"{_size(layout.ram_bytes)} of RAM, but only {_memory_phrase(snapshot)} is left "
            f"and {_size(margin)} of it is kept free"
        )
    floor_ctx = min(MIN_CTX, n_ctx)
    largest = _largest_fitting(planner, floor_ctx, n_ctx, wanted)
    if planner.fits(largest):
        advice = (
            f"set a smaller context (--ctx or HYBRID_LOCAL__N_CTX; at most {largest.n_ctx:,} "
            "fits here), or leave it unset to let hybrid choose"
        )
    elif layout.vram_short:
        advice = (
            f"not even {floor_ctx:,} tokens fit with these GPU layers: lower n_gpu_layers "
            "(--gpu-layers) or leave it unset"
        )
    else:
        advice = (
            f"not even {floor_ctx:,} tokens fit: close other programs, raise the memory limit "
            "or pick a smaller model"
        )
    raise ConfigError(
        f"context size {n_ctx:,} (local.n_ctx) does not fit this machine: the model needs "
        f"{needs}; {advice}"
    )


def plan_for(
    snapshot: HardwareSnapshot,
    model: ModelFootprint,
    *,
    max_ctx: int = 8192,
    n_ctx: int | None = None,
    n_threads: int | None = None,
    n_gpu_layers: int | None = None,
) -> RuntimePlan:
    """Plan how to run ``model`` on the machine ``snapshot`` describes.

    Derived values:

    * ``n_threads``: :func:`derive_threads` of the physical cores and the cores other programs
      keep busy (:func:`busy_cores` of the snapshot's load).
    * ``n_gpu_layers``: 0 unless the llama.cpp build can offload and a GPU exists; then, last
      block first, every block whose weights and KV share still fit in free VRAM less
      :func:`vram_margin` and a compute buffer, spilling onto further GPUs; the output head
      goes with the last block (``n_layers + 1`` = everything).
    * ``n_ctx``: the largest of min(context_length, ``max_ctx``) rounded down to a multiple of
      256 that fits usable free RAM after the weights, a compute buffer and :func:`ram_margin`
      (and, when layers are offloaded, VRAM); at least 512 (or context_length or ``max_ctx``
      if smaller).  If not even that fits, ``fits`` is False and ``n_ctx`` is that minimum.

    Args:
        snapshot: The machine.
        model: The model's footprint.
        max_ctx: Upper bound for a derived ``n_ctx`` (the ``local.max_ctx`` setting).
        n_ctx: Use this context size instead of deriving one; ``fits`` says whether it fits.
        n_threads: Use this thread count instead of deriving one.
        n_gpu_layers: Offload exactly this many blocks (negative or above ``n_layers`` = all
            and the head); ``fits`` is False when the GPUs cannot hold them.

    Returns:
        The plan, with a note for every choice that was capped, overridden or failed.

    Raises:
        ConfigError: ``max_ctx``, ``n_ctx`` or ``n_threads`` is given but not positive.
    """
    for name, value in (("max_ctx", max_ctx), ("n_ctx", n_ctx), ("n_threads", n_threads)):
        if value is not None and value <= 0:
            raise ConfigError(
                f"{name} must be a positive number, got {value}; fix the setting or flag that "
                "sets it, or leave it unset to let hybrid choose"
            )
    planner = _Planner(snapshot, model)
    notes: list[str] = []

    threads = _threads(snapshot, n_threads, notes)
    wanted = _wanted_items(snapshot, model, n_gpu_layers, notes)

    # Never below 512 unless the model or the user's max_ctx asks for less.
    trained = model.context_length if model.context_length > 0 else MIN_CTX
    floor_ctx = min(MIN_CTX, trained, max_ctx)
    if n_ctx is not None:
        layout = planner.layout(n_ctx, wanted)
        notes.append(f"n_ctx {n_ctx:,} set explicitly")
        if 0 < model.context_length < n_ctx:
            notes.append(
                f"n_ctx {n_ctx:,} is beyond the {model.context_length:,} tokens the model was "
                "trained for; answers may degrade past that point"
            )
    else:
        cap = min(model.context_length, max_ctx) if model.context_length > 0 else max_ctx
        target = max(floor_ctx, cap // CTX_STEP * CTX_STEP)
        if max_ctx < model.context_length:
            notes.append(
                f"n_ctx capped at {target:,} by settings (local.max_ctx; the model was trained "
                f"for {model.context_length:,})"
            )
        layout = _largest_fitting(planner, floor_ctx, target, wanted)
        if planner.fits(layout) and layout.n_ctx < target:
            notes.append(
                f"n_ctx reduced to {layout.n_ctx:,} (of {target:,}) to fit "
                f"{_memory_phrase(snapshot)}"
            )
    fits = planner.fits(layout)
    if not fits:
        notes.append(_shortfall(planner, layout))

    if n_gpu_layers is not None:
        gpu_layers = n_gpu_layers
    else:
        gpu_layers = model.n_layers + 1 if layout.gpu_items > model.n_layers else layout.gpu_items
        notes.extend(_offload_notes(snapshot, model, layout))

    seconds = planner.seconds_per_token(layout)
    notes.append(_speed_note(snapshot, layout, seconds))
    if snapshot.power.on_battery:
        percent = snapshot.power.battery_percent
        level = f" ({percent:.0f} %)" if percent is not None else ""
        notes.append(
            f"on battery{level}: the OS may throttle the CPU and GPU, so expect slower "
            "generation than predicted"
        )
    return RuntimePlan(
        n_threads=threads,
        n_gpu_layers=gpu_layers,
        n_ctx=layout.n_ctx,
        fits=fits,
        predicted_tokens_per_s=None if seconds is None else 1.0 / seconds,
        memory_required_bytes=layout.total_bytes,
        notes=tuple(notes),
    )


def _threads(snapshot: HardwareSnapshot, explicit: int | None, notes: list[str]) -> int:
    cpu = snapshot.cpu
    physical = cpu.physical_cores
    if explicit is not None:
        notes.append(f"n_threads {explicit} set explicitly ({physical} physical cores)")
        if explicit >= physical > 1:
            notes.append(
                f"n_threads {explicit} leaves no core free: decode slows sharply whenever "
                "another program or the server needs a core"
            )
        return explicit
    busy = busy_cores(cpu)
    threads = derive_threads(physical, busy)
    if physical == 1:
        return threads
    why = f"n_threads {threads}: {physical} physical cores, one left for the server and the OS"
    others = physical - 1 - threads
    if others > 0:
        why += (
            f", {others} more for other programs ({cpu.load_percent:.0f} % CPU load when the "
            "model was planned)"
        )
    notes.append(
        f"{why}; llama.cpp's threads wait for each other, so one that shares a core with "
        "another program slows every token"
    )
    return threads


def _wanted_items(
    snapshot: HardwareSnapshot, model: ModelFootprint, explicit: int | None, notes: list[str]
) -> int | None:
    """Translate an explicit ``n_gpu_layers`` into placement items (blocks, +1 for the head)."""
    if explicit is None:
        return None
    if explicit != 0 and not (snapshot.gpu_offload_supported and snapshot.gpus):
        notes.append(
            f"n_gpu_layers {explicit} set explicitly but has no effect: "
            f"{_no_offload_reason(snapshot)}"
        )
        return 0
    notes.append(f"n_gpu_layers {explicit} set explicitly")
    if explicit < 0 or explicit > model.n_layers:
        return model.n_layers + 1
    return explicit


def _largest_fitting(planner: _Planner, floor_ctx: int, target: int, wanted: int | None) -> _Layout:
    """Return the layout at the largest fitting context among ``floor_ctx``, ``target`` and the
    multiples of 256 between them.

    Fitting is monotone in the context size (a larger context needs more KV cache and leaves
    fewer blocks room on the GPU), so a binary search finds it, over the multiples' indices
    (a target of billions of tokens takes some 25 steps).  When nothing fits, the layout at
    ``floor_ctx`` is returned.
    """
    best = planner.layout(target, wanted)
    if planner.fits(best):
        return best
    best = planner.layout(floor_ctx, wanted)
    if not planner.fits(best):
        return best
    # Multiples of the step: low * CTX_STEP <= floor_ctx fits, high * CTX_STEP >= target does
    # not; every multiple strictly between them lies strictly between floor_ctx and target.
    low, high = floor_ctx // CTX_STEP, (target - 1) // CTX_STEP + 1
    while high - low > 1:
        middle = (low + high) // 2
        layout = planner.layout(middle * CTX_STEP, wanted)
        if planner.fits(layout):
            low, best = middle, layout
        else:
            high = middle
    return best


def _offload_notes(snapshot: HardwareSnapshot, model: ModelFootprint, layout: _Layout) -> list[str]:
    if not (snapshot.gpu_offload_supported and snapshot.gpus):
        return [f"CPU only: {_no_offload_reason(snapshot)}"]
    if not layout.loads:
        roomiest = max(snapshot.gpus, key=lambda gpu: gpu.vram_free_bytes)
        return [
            f"CPU only: no layer fits in the {_size(roomiest.vram_free_bytes)} free on "
            f"{roomiest.name} after keeping {_size(vram_margin(roomiest))} free and "
            f"{_size(COMPUTE_BUFFER_BYTES)} for compute"
        ]
    where = ", ".join(
        f"{load.items} on {load.gpu.name} ({_size(load.gpu.vram_free_bytes)} free)"
        for load in layout.loads
    )
    if layout.gpu_items > model.n_layers:
        return [f"every layer and the output head on the GPU: {where}"]
    return [
        f"{layout.gpu_items} of {model.n_layers} layers on the GPU: {where}; "
        "the rest run on the CPU"
    ]


def _no_offload_reason(snapshot: HardwareSnapshot) -> str:
    if not snapshot.gpus:
        return "no GPU found"
    names = ", ".join(gpu.name for gpu in snapshot.gpus)
    return (
        f"this llama.cpp build cannot offload to a GPU (found {names}); reinstall "
        "llama-cpp-python with CUDA, Metal, Vulkan or HIP enabled to use it"
    )


def _memory_phrase(snapshot: HardwareSnapshot) -> str:
    memory = snapshot.memory
    phrase = f"{_size(memory.usable_available_bytes)} of free RAM"
    if memory.cgroup_limit_bytes is not None and memory.cgroup_limit_bytes < memory.total_bytes:
        phrase += f" (container limit {_size(memory.cgroup_limit_bytes)})"
    return phrase


def _shortfall(planner: _Planner, layout: _Layout) -> str:
    if layout.vram_short:
        load = layout.loads[0]
        return (
            f"does not fit: the requested GPU layers need {_size(load.total_bytes)} on "
            f"{load.gpu.name}, which has {_size(load.gpu.vram_free_bytes)} free and keeps "
            f"{_size(vram_margin(load.gpu))} of it free; lower n_gpu_layers or leave it unset"
        )
    margin = ram_margin(planner.snapshot.memory.usable_total_bytes)
    return (
        f"does not fit: needs {_size(layout.ram_bytes)} of RAM at n_ctx {layout.n_ctx:,}, but "
        f"only {_memory_phrase(planner.snapshot)} is left and {_size(margin)} of it is kept "
        "free; close other programs, raise the memory limit or pick a smaller model"
    )


def _speed_note(snapshot: HardwareSnapshot, layout: _Layout, seconds: float | None) -> str:
    if seconds is None:
        return "no speed prediction: memory bandwidth not measured (run `hybrid probe`)"
    parts: list[str] = []
    cpu_bandwidth = snapshot.memory_bandwidth_bytes_per_s
    if cpu_bandwidth is not None:
        parts.append(f"CPU {cpu_bandwidth / 1e9:.1f} GB/s")
    for load in layout.loads:
        bandwidth = load.gpu.memory_bandwidth_bytes_per_s
        if bandwidth is None:
            parts.append(f"{load.gpu.name} bandwidth unknown, assumed no faster than the CPU")
        else:
            parts.append(f"{load.gpu.name} {bandwidth / 1e9:.0f} GB/s")
    return (
        f"predicted {1.0 / seconds:.1f} tok/s: {DECODE_EFFICIENCY:.0%} of the memory-bandwidth "
        f"bound ({'; '.join(parts)})"
    )


def _size(size_bytes: int) -> str:
    # GiB with one decimal from 1 GiB up, whole MiB below: "0.2 GiB" hides a 256 MiB margin.
    if size_bytes >= GIB:
        return f"{size_bytes / GIB:.1f} GiB"
    return f"{size_bytes / MIB:.0f} MiB"
