"""Ledger records for tests: a plausible local answer, changed field by field."""

from __future__ import annotations

import dataclasses
from typing import Any

from hybrid.ledger.record import LedgerRecord, VerdictRecord

T0 = 1_795_000_000.0
"""2026-11-18 08:26:40 UTC: a fixed moment for records and fake clocks."""


def local_record(**changes: Any) -> LedgerRecord:
    """A local answer like the one in docs/events.md, with ``changes`` applied."""
    record = LedgerRecord(
        id="3f2a",
        time=T0,
        api="openai",
        route="local",
        reasons=("difficulty:0.21<=0.52",),
        verdicts=(
            VerdictRecord("privacy", "pass", "privacy:none", None),
            VerdictRecord("difficulty", "local", "difficulty:0.21<=0.52", 0.21),
        ),
        score=0.21,
        model_requested="gpt-4.1-mini",
        model="gemma-3-270m-q4_k_m",
        provider="local",
        prompt_tokens=31,
        completion_tokens=12,
        tokens_estimated=False,
        ttft_s=0.041,
        latency_s=0.232,
        status="ok",
        error=None,
        cloud_cost_usd=0.0,
        counterfactual_model="openai/gpt-4.1-mini",
        counterfactual_cost_usd=0.0000316,
        energy_cost_usd=0.0000004,
        cost_avoided_usd=0.0000312,
        price_known=True,
        leg=None,
    )
    return dataclasses.replace(record, **changes)


def cloud_record(**changes: Any) -> LedgerRecord:
    """A cloud answer from OpenAI, with ``changes`` applied."""
    base = {
        "id": "9c1e",
        "route": "cloud",
        "reasons": ("difficulty:0.81>0.52",),
        "verdicts": (VerdictRecord("difficulty", "cloud", "difficulty:0.81>0.52", 0.81),),
        "score": 0.81,
        "model": "gpt-4.1-mini",
        "provider": "openai",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "ttft_s": 0.4,
        "latency_s": 2.5,
        "cloud_cost_usd": 0.0012,
        "counterfactual_model": None,
        "counterfactual_cost_usd": None,
        "energy_cost_usd": 0.0,
        "cost_avoided_usd": 0.0,
    }
    base.update(changes)
    return local_record(**base)


def lan_record(**changes: Any) -> LedgerRecord:
    """An answer from a team's LAN server (``gpu-box``), priced at $0.10 per 1M tokens, with
    ``changes`` applied."""
    base = {
        "id": "7e4c",
        "route": "lan",
        "reasons": ("lan:gpu-box/qwen2.5-32b", "capacity:eta_14s>8s"),
        "verdicts": (VerdictRecord("capacity", "cloud", "capacity:eta_14s>8s", None),),
        "score": None,
        "model": "gpu-box/qwen2.5-32b",
        "provider": "gpu-box",
        "prompt_tokens": 1000,
        "completion_tokens": 500,
        "ttft_s": 0.2,
        "latency_s": 1.5,
        "cloud_cost_usd": 0.0,
        "counterfactual_model": "openai/gpt-4.1-mini",
        "counterfactual_cost_usd": 0.0012,
        "energy_cost_usd": 0.00015,
        "cost_avoided_usd": 0.00105,
    }
    base.update(changes)
    return local_record(**base)


def refused_record(**changes: Any) -> LedgerRecord:
    """A request refused before any model ran (a full local queue), with ``changes`` applied."""
    base = {
        "id": "5b7d",
        "route": "none",
        "reasons": ("error:rate_limit_exceeded",),
        "verdicts": (),
        "score": None,
        "model": "none",
        "provider": "none",
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "ttft_s": None,
        "latency_s": 0.002,
        "status": "refused",
        "error": "the local model's queue is full",
        "counterfactual_model": None,
        "counterfactual_cost_usd": None,
        "energy_cost_usd": 0.0,
        "cost_avoided_usd": 0.0,
    }
    base.update(changes)
    return local_record(**base)
