"""The runtime plan: how to run one model on the machine a snapshot describes.

:func:`plan_for` chooses llama.cpp's ``n_threads``, ``n_gpu_layers`` and ``n_ctx``, says whether
the model fits, and predicts decode speed.  The memory model follows llama.cpp's own layout and
the estimators of llama.cpp's ``--fit`` and Ollama:

* ``n_gpu_layers = k`` puts the *last* ``k`` repeating blocks on the GPU; ``k > n_layers``
  (llama.cpp's "all", conventionally ``n_layers + 1`` or ``-1``) also moves the output head.
  Each offloaded block takes its weights and its share of the KV cache to the GPU.
* Every device that runs part of the graph keeps a compute buffer
  (:func:`~hybrid.hardware.layout.compute_buffer_bytes`: reserved whole on a GPU, in RAM only
  what a batch writes); each slot adds its KV cache and its row of logits.
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
from hybrid.hardware.layout import (
    COMPUTE_BUFFER_BYTES,
    DECODE_EFFICIENCY,
    GIB,
    KV_VALUE_BYTES,
    MIB,
    KvCache,
    Layout,
    ModelFootprint,
    Planner,
    memory_phrase,
    ram_margin,
    size_text,
    vram_margin,
)
from hybrid.hardware.slots import DEFAULT_SLOTS, choose_kv_type, plan_slots
from hybrid.hardware.snapshot import CpuInfo, HardwareSnapshot

if TYPE_CHECKING:
    from hybrid.settings import LocalSettings

__all__ = [
    "BUSY_ROUNDING",
    "COMPUTE_BUFFER_BYTES",
    "CTX_STEP",
    "DECODE_EFFICIENCY",
    "DEFAULT_SLOTS",
    "GIB",
    "MIB",
    "MIN_CTX",
    "ModelFootprint",
    "RuntimePlan",
    "busy_cores",
    "derive_threads",
    "plan_for",
    "plan_with_settings",
    "ram_margin",
    "serving_plan",
    "vram_margin",
]

MIN_CTX = 512
CTX_STEP = 256

# A core counts as busy from 0.75 of it up (0.2 s of sampling reads an idle machine at 5-25 %).
BUSY_ROUNDING = 0.25

# llama.cpp's decode threads wait for each other at every layer: one thread that shares its core
# with another program stalls them all.  Measured on 2 cores with one kept busy: 2 threads decoded
# 13 tok/s, 1 thread 55 tok/s.  So one core is always left for the server, the client and the OS,
# and cores that other programs keep busy when the model loads are left to them too.


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
        n_parallel: Slots: requests decoded together, each with ``n_ctx`` tokens of context.
        kv_cache_type: ``f16`` or ``q8_0``.
        flash_attn: Flash attention (needed by a quantized KV cache).
        kv_bytes_per_slot: One slot's KV cache.
        slot_bytes: What each slot costs: its KV cache and its row of logits (the compute
            buffer is shared and does not grow with slots).
    """

    n_threads: int
    n_gpu_layers: int
    n_ctx: int
    fits: bool
    predicted_tokens_per_s: float | None
    memory_required_bytes: int
    notes: tuple[str, ...]
    n_parallel: int = 1
    kv_cache_type: str = "f16"
    flash_attn: bool = False
    kv_bytes_per_slot: int = 0
    slot_bytes: int = 0


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
        parallel=local.parallel,
        kv_cache_type=local.kv_cache_type,
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
    planner = Planner(snapshot, model, KvCache(plan.n_parallel, plan.kv_cache_type))
    wanted = _wanted_items(snapshot, model, local.n_gpu_layers, [])
    layout = planner.layout(n_ctx, wanted)
    if layout.vram_short:
        load = layout.loads[0]
        needs = (
            f"{size_text(load.total_bytes)} on {load.gpu.name}, which has "
            f"{size_text(load.gpu.vram_free_bytes)} free and keeps "
            f"{size_text(vram_margin(load.gpu))} of it free"
        )
    else:
        margin = ram_margin(snapshot.memory.usable_total_bytes)
        needs = (
            f"{size_text(layout.ram_bytes)} of RAM, but only {memory_phrase(snapshot)} is left "
            f"and {size_text(margin)} of it is kept free"
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
    parallel: int | None = None,
    kv_cache_type: str = "auto",
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
    * ``n_parallel``: ``parallel`` (else :data:`DEFAULT_SLOTS`) slots of ``n_ctx`` tokens
      each, or as many as fit beside the first (each costs its KV cache), with a note saying
      why when fewer fit.
    * ``kv_cache_type``: ``auto`` is q8_0 (half of f16's bytes, with flash attention) where
      llama.cpp runs flash attention for the model, else f16.

    Args:
        snapshot: The machine.
        model: The model's footprint.
        max_ctx: Upper bound for a derived ``n_ctx`` (the ``local.max_ctx`` setting).
        n_ctx: Use this context size instead of deriving one; ``fits`` says whether it fits.
        n_threads: Use this thread count instead of deriving one.
        n_gpu_layers: Offload exactly this many blocks (negative or above ``n_layers`` = all
            and the head); ``fits`` is False when the GPUs cannot hold them.
        parallel: Slots asked for instead of :data:`DEFAULT_SLOTS`; fewer are planned when
            they do not fit.
        kv_cache_type: ``auto``, ``f16`` or ``q8_0``.

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
    if parallel is not None and parallel <= 0:
        raise ConfigError(
            f"parallel must be a positive number, got {parallel}; fix local.parallel or leave "
            "it unset to let hybrid choose"
        )
    if kv_cache_type != "auto" and kv_cache_type not in KV_VALUE_BYTES:
        raise ConfigError(f"kv_cache_type must be auto, f16 or q8_0, got {kv_cache_type!r}")
    notes: list[str] = []
    kv_type = choose_kv_type(model, kv_cache_type, notes)
    planner = Planner(snapshot, model, KvCache(1, kv_type))

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
                f"{memory_phrase(snapshot)}"
            )
    planner, layout = plan_slots(snapshot, model, kv_type, layout, parallel, wanted, notes)
    fits = planner.fits(layout)
    if not fits:
        notes.append(_shortfall(planner, layout))

    if n_gpu_layers is not None:
        gpu_layers = n_gpu_layers
    else:
        gpu_layers = model.n_layers + 1 if layout.gpu_items > model.n_layers else layout.gpu_items
        notes.extend(_offload_notes(planner, layout))

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
        n_parallel=planner.kv.slots,
        kv_cache_type=kv_type,
        flash_attn=planner.kv.flash_attn,
        kv_bytes_per_slot=planner.kv.slot_bytes(model, layout.n_ctx),
        slot_bytes=planner.kv.slot_cost(model, layout.n_ctx),
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


def _largest_fitting(planner: Planner, floor_ctx: int, target: int, wanted: int | None) -> Layout:
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


def _offload_notes(planner: Planner, layout: Layout) -> list[str]:
    snapshot, model = planner.snapshot, planner.model
    if not (snapshot.gpu_offload_supported and snapshot.gpus):
        return [f"CPU only: {_no_offload_reason(snapshot)}"]
    if not layout.loads:
        roomiest = max(snapshot.gpus, key=lambda gpu: gpu.vram_free_bytes)
        return [
            f"CPU only: no layer fits in the {size_text(roomiest.vram_free_bytes)} free on "
            f"{roomiest.name} after keeping {size_text(vram_margin(roomiest))} free and "
            f"{size_text(planner.kv.compute_bytes(model, layout.n_ctx, resident=False))} for "
            "compute"
        ]
    where = ", ".join(
        f"{load.items} on {load.gpu.name} ({size_text(load.gpu.vram_free_bytes)} free)"
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


def _shortfall(planner: Planner, layout: Layout) -> str:
    if layout.vram_short:
        load = layout.loads[0]
        return (
            f"does not fit: the requested GPU layers need {size_text(load.total_bytes)} on "
            f"{load.gpu.name}, which has {size_text(load.gpu.vram_free_bytes)} free and keeps "
            f"{size_text(vram_margin(load.gpu))} of it free; lower n_gpu_layers or leave it unset"
        )
    margin = ram_margin(planner.snapshot.memory.usable_total_bytes)
    return (
        f"does not fit: needs {size_text(layout.ram_bytes)} of RAM at n_ctx {layout.n_ctx:,}, but "
        f"only {memory_phrase(planner.snapshot)} is left and {size_text(margin)} of it is kept "
        "free; close other programs, raise the memory limit or pick a smaller model"
    )


def _speed_note(snapshot: HardwareSnapshot, layout: Layout, seconds: float | None) -> str:
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
