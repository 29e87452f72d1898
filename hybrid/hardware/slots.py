"""Slots in the runtime plan: how many sequences one llama.cpp context decodes together, and
the KV cache type they keep.

Each slot holds its own KV cache of ``n_ctx`` tokens (llama.cpp's non-unified cache) and a row
of logits; the weights and the compute buffer are shared.  So a slot beside the first costs
:meth:`~hybrid.hardware.layout.KvCache.slot_cost`, and as many are planned as fit.
"""

from __future__ import annotations

from hybrid.hardware.layout import (
    KvCache,
    Layout,
    ModelFootprint,
    Planner,
    memory_phrase,
    ram_margin,
    size_text,
)
from hybrid.hardware.snapshot import HardwareSnapshot

__all__ = ["DEFAULT_SLOTS", "choose_kv_type", "plan_slots"]

# Slots planned when local.parallel is unset (llama.cpp's server and Ollama default to 4), as
# many as fit.
DEFAULT_SLOTS = 4


def choose_kv_type(model: ModelFootprint, asked: str, notes: list[str]) -> str:
    """The KV cache type: ``auto`` is q8_0 where the model runs flash attention, else f16."""
    if model.flash_attn_ok:
        return "q8_0" if asked == "auto" else asked
    reason = "its keys and values differ in width, so llama.cpp runs no flash attention"
    if asked == "q8_0":
        notes.append(f"KV cache q8_0 set explicitly, but {reason}, which a q8_0 V cache needs")
        return asked
    if asked == "auto":
        notes.append(f"KV cache f16: {reason}, which a q8_0 V cache needs")
    return "f16"


def plan_slots(
    snapshot: HardwareSnapshot,
    model: ModelFootprint,
    kv_type: str,
    single: Layout,
    parallel: int | None,
    wanted: int | None,
    notes: list[str],
) -> tuple[Planner, Layout]:
    """The slots beside the first, at the context one slot was planned with: as many as asked
    (``local.parallel``, else :data:`DEFAULT_SLOTS`) that fit, with a note when fewer do.

    Returns:
        The planner of the chosen slots and the model's layout with them.
    """
    n_ctx = single.n_ctx
    asked = DEFAULT_SLOTS if parallel is None else parallel
    chosen = Planner(snapshot, model, KvCache(1, kv_type))
    layout = single
    for slots in range(2, asked + 1):
        planner = Planner(snapshot, model, KvCache(slots, kv_type))
        candidate = planner.layout(n_ctx, wanted)
        if not planner.fits(candidate):
            break
        chosen, layout = planner, candidate
    slots = chosen.kv.slots
    each = chosen.kv.slot_cost(model, n_ctx)
    source = "set in local.parallel" if parallel is not None else "planned"
    if slots < asked:
        notes.append(
            f"{slots} slot{'s' if slots > 1 else ''}, not the {asked} {source}: each slot "
            f"({kv_type} KV cache of {n_ctx:,} tokens) takes {size_text(each)}, and of the "
            f"{memory_phrase(snapshot)}, less "
            f"{size_text(ram_margin(snapshot.memory.usable_total_bytes))} kept free, "
            f"{size_text(max(0, chosen.ram_budget - layout.ram_bytes))} is left beside "
            f"{'them' if slots > 1 else 'it'}; a smaller local.n_ctx leaves room for more"
        )
    else:
        notes.append(
            f"{slots} slot{'s' if slots > 1 else ''} of {n_ctx:,} tokens ({source}), each "
            f"taking {size_text(each)} with its own {kv_type} KV cache"
        )
    return chosen, layout
