"""Labelled traffic for the refit tests: synthetic requests wrong when they mention a zebra
(or hold a number), a difficulty model fitted to the numbers, and a replay of requests, their
signals and labels through the ledger's writer, as the server writes them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from random import Random

import numpy as np

from hybrid.generation import Message
from hybrid.ledger.learning import Label, Signal
from hybrid.ledger.record import LedgerRecord
from hybrid.ledger.writer import LedgerWriter
from hybrid.routing.calibration.fitting import train_model
from hybrid.routing.calibration.metrics import auroc
from hybrid.routing.difficulty.features import FEATURE_VERSION, extract
from hybrid.routing.difficulty.labelled import LabelledScores
from hybrid.routing.difficulty.model import DifficultyModel
from hybrid.routing.difficulty.probe import Blend, ProbeStage

SHA = "ab" * 32
T0 = 1_795_000_000.0
WORDS = (
    "please tell me about the weather garden river music table window story colour "
    "morning friend letter city travel dinner house bridge summer winter paper"
).split()


def prompt(rng: Random, *, zebra: bool, number: bool) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 18))]
    if zebra:
        words.insert(rng.randrange(len(words) + 1), "zebra")
    if number:
        words.insert(rng.randrange(len(words) + 1), str(rng.randint(10, 99)))
    return " ".join(words)


def traffic(seed: int, n: int, wrong_when: str) -> list[tuple[str, bool]]:
    """``n`` prompts, each with a zebra and a number independently, and whether it was wrong."""
    rng = Random(seed)
    prompts = []
    for _ in range(n):
        zebra, number = rng.random() < 0.4, rng.random() < 0.4
        wrong = zebra if wrong_when == "zebra" else number
        prompts.append((prompt(rng, zebra=zebra, number=number), wrong))
    return prompts


def kinds(seed: int, n: int) -> list[tuple[str, bool]]:
    """``n`` prompts of two kinds the model in use (:func:`model_in_use`) misjudges: code
    questions without a number, mostly wrong, and chat, half of it with a number, mostly
    right."""
    rng = Random(seed)
    prompts = []
    for _ in range(n):
        if rng.random() < 0.5:
            name = rng.choice(("merge", "flatten", "dedupe", "rotate", "chunk"))
            body = rng.choice(("sorted(items, key=len)[::-1]", "[x for x in items if x]"))
            text = f"def {name}(items):\n    return {body}\n\nWhy does {name} fail here?"
            prompts.append((text, rng.random() < 0.8))
        else:
            text = prompt(rng, zebra=False, number=rng.random() < 0.5)
            prompts.append((text, rng.random() < 0.1))
    return prompts


def ranked_beside(
    memory: LabelledScores, model: DifficultyModel, fresh: list[tuple[str, bool]]
) -> tuple[float, float]:
    """The AUROC of ``model``'s scores of new requests, alone and read beside ``memory``'s
    labelled requests."""
    X = np.stack([features(text) for text, _ in fresh])
    wrong = np.array([w for _, w in fresh], dtype=np.float64)
    own = model.scores(X)
    read = np.array([memory.read(model, row, s) for row, s in zip(X, own, strict=True)])
    return auroc(own, wrong), auroc(read, wrong)


def features(text: str) -> np.ndarray:
    return extract((Message("user", text),))


def model_in_use() -> DifficultyModel:
    """What the router uses now: fitted to requests that were wrong when they held a number."""
    seen = traffic(1, 300, "number")
    X = np.stack([features(text) for text, _ in seen])
    model, _ = train_model(X, np.array([wrong for _, wrong in seen], dtype=np.float64), seed=0)
    return DifficultyModel(
        weights=model.weights,
        bias=model.bias,
        threshold=model.threshold,
        feature_version=FEATURE_VERSION,
        mean=model.mean,
        scale=model.scale,
        meta={"model_sha256": SHA, "created": "2026-11-01"},
    )


def carried_probe(dim: int) -> ProbeStage:
    """A model stage that reads nothing the traffic below depends on (its last dimension)."""
    weights = np.zeros(dim)
    weights[-1] = 1.0
    return ProbeStage(
        weights=weights,
        bias=0.0,
        mean=np.zeros(dim),
        scale=np.ones(dim),
        band=(0.0, 0.01),
        threshold=0.5,
        blend=Blend(feature=(0.0, 1.0), probe=(0.0, 1.0)),
    )


def hidden_traffic(
    seed: int, n: int, dim: int, *, zebras: bool = True
) -> tuple[list[tuple[str, bool]], list[np.ndarray]]:
    """Requests wrong when they mention a zebra (unless ``zebras`` is false), or when the local
    model's vector of the prompt says it is hard (its first value: something the prompt's
    features cannot see)."""
    rng = np.random.default_rng(seed)
    labelled, vectors = [], []
    for text, zebra in traffic(seed, n, "zebra"):
        hard = bool(rng.random() < 0.3)
        vector = rng.normal(size=dim).astype(np.float32)
        vector[0] += 3.0 if hard else 0.0
        labelled.append((text, (zebra and zebras) or hard))
        vectors.append(vector)
    return labelled, vectors


def replay(
    ledger: Path,
    labelled: list[tuple[str, bool]],
    sha: str = SHA,
    *,
    url: str | None = None,
    cascade: bool = False,
    vectors: Sequence[np.ndarray | None] | None = None,
    escalations_shadowed: bool = False,
    first: int = 0,
    keep_signals: int = 10_000,
) -> None:
    """Write each request as the server does: its record, its signal, and a label (into the
    shared ledger's database at ``url``, when given); ``vectors`` are the local model's
    vectors of the prompts, one per request, kept with the signals. The requests are numbered
    (their ids and times) from ``first``; the writer keeps ``keep_signals`` signals.

    With ``cascade``, the labels are the cascade's: a wrong local answer declined, so the cloud
    answered and the request has a ``cascade`` label; a right one was kept, and every third of
    those was shadowed (and agreed). Otherwise every third label came from a person, the rest
    from shadow comparisons; with ``escalations_shadowed``, the requests answered in the cloud
    are labelled by shadow comparisons of local answers given in the background
    (``routing.learn.local_shadow_rate``) instead of by people.
    """
    writer = LedgerWriter(ledger, retention_days=0, keep_signals=keep_signals, url=url)
    writer.start()
    try:
        for index, (text, wrong) in enumerate(labelled, start=first):
            request_id = f"req-{index}"
            label: Label | None
            if cascade:
                cloud = wrong
                label = (
                    Label(request_id, "cascade", False, T0 + index)
                    if wrong
                    else (Label(request_id, "shadow", True, T0 + index) if index % 3 == 0 else None)
                )
            else:
                # A person's label of a cloud answer teaches nothing about the local model.
                cloud = index % 9 == 4
                source = (
                    "shadow" if index % 3 != 1 or (cloud and escalations_shadowed) else "feedback"
                )
                label = Label(request_id, source, not wrong, T0 + index)
            writer.write_nowait(answered(request_id, "cloud" if cloud else "local"))
            writer.learn_nowait(
                Signal.of(
                    request_id=request_id,
                    time=T0 + index,
                    model_sha256=sha,
                    feature_version=FEATURE_VERSION,
                    features=features(text),
                    route="cloud" if cloud else "local",
                    score=0.3,
                    prompt_chars=len(text),
                    vector=None if vectors is None else vectors[index - first],
                )
            )
            if label is not None:
                writer.learn_nowait(label)
    finally:
        writer.close()


def answered(request_id: str, route: str) -> LedgerRecord:
    return LedgerRecord(
        id=request_id,
        time=T0,
        api="openai",
        route="local" if route == "local" else "cloud",
        reasons=("difficulty:0.30<=0.60",),
        verdicts=(),
        score=0.3,
        model_requested="hybrid",
        model="gemma" if route == "local" else "openai/gpt-4.1-mini",
        provider="local" if route == "local" else "openai",
        prompt_tokens=20,
        completion_tokens=5,
        tokens_estimated=False,
        ttft_s=0.05,
        latency_s=0.2,
        status="ok",
        error=None,
        cloud_cost_usd=0.0,
        counterfactual_model=None,
        counterfactual_cost_usd=None,
        energy_cost_usd=0.0,
        cost_avoided_usd=0.0,
        price_known=True,
        leg=None,
    )
