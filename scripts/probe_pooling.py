"""Which view of the prompt should the probe read: the last token's state, or the mean of all?

The probe that ships reads the local model's final hidden state at the last prompt token,
which llama.cpp computes anyway for the next token's logits.  A mean over every position
(the pooled embedding) needs every position's output, which for a generative model means its
logits too: this script measures what that costs and what it buys.  For each item of the
generated calibration set and of the external sets (``scripts/eval_router.py``'s items, whose
labels it reads from the answer records that script leaves in the data dir), it evaluates the
prompt once with every position's output on and keeps:

- ``last``: the last position's final hidden state (the shipped probe's input);
- ``mean``: the mean over every position (mean pooling);
- ``entropy`` and ``top``: the entropy and the largest probability of the next-token
  distribution at the end of the prompt (the model's own uncertainty, no fitting).

It scores probes (``train_probe``, as ``hybrid calibrate`` fits them) on ``last``, ``mean`` and
both, leave-one-family-out and on the external sets (fitted on every generated item), with 95 %
bootstrap intervals, and times a prefill with and without every position's output on the
same prompts.  Writes docs/router-pooling.md; the vectors are kept in the data dir
(``<sha256>.pooling.npz``) and reused unless ``--rerun``.

Usage:
    python scripts/probe_pooling.py [--per-category 60] [--external 200] [--seed 0]
        [--resamples 1000] [--timing 40] [--rerun]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from eval_router import labelled, served_model
from external_sets import load_all
from router_folds import Figure, Labelled, lofo_splits

from hybrid.cli.calibrate_run import DEFAULT_MAX_TOKENS, DEFAULT_PER_CATEGORY, DEFAULT_SEED
from hybrid.generation import GenerationRequest, SamplingParams
from hybrid.routing.calibration.item import CalibrationItem
from hybrid.routing.calibration.metrics import auroc, bootstrap_ci
from hybrid.routing.calibration.probe_fitting import train_probe
from hybrid.routing.calibration.record import load_record
from hybrid.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
VIEWS = ("last", "mean", "entropy", "top")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-category", type=int, default=DEFAULT_PER_CATEGORY)
    parser.add_argument("--external", type=int, default=200, help="items per external set")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument("--timing", type=int, default=40, help="prompts timed each way")
    parser.add_argument("--rerun", action="store_true", help="compute the vectors again")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "router-pooling.md")
    args = parser.parse_args()

    settings = load_settings().settings
    path, sha256 = served_model(settings)
    sets = {
        "answers": calibration_items(args.seed, args.per_category),
        "external": load_all(n=args.external, seed=args.seed),
    }
    data = {name: labels(settings, sha256, name, items) for name, items in sets.items()}
    cache = settings.home / "calibration" / f"{sha256}.pooling.npz"
    tokens = asyncio.run(tokenize(settings, [item for items in sets.values() for item in items]))
    views, timing = pooled_views(path, tokens, cache, rerun=args.rerun, timed=args.timing)
    split = len(sets["answers"])
    rows = score_views(
        data["answers"],
        data["external"],
        {name: (value[:split], value[split:]) for name, value in views.items()},
        seed=args.seed,
        resamples=args.resamples,
    )
    report = render(rows, timing, model=path.stem, sha256=sha256, args=args, data=data)
    args.out.write_text(report, encoding="utf-8")
    print(report)
    return 0


def calibration_items(seed: int, per_category: int) -> list[CalibrationItem]:
    from hybrid.routing.calibration.items import calibration_set

    return calibration_set(seed, per_category=per_category)


def labels(settings: Settings, sha256: str, name: str, items: list[CalibrationItem]) -> Labelled:
    """The items with the local model's grades from ``eval_router.py``'s answer record."""
    record = load_record(settings.home, sha256, name)
    known = {} if record is None else {a.item_id: a for a in record.answers}
    missing = [item.id for item in items if item.id not in known]
    if missing:
        sys.exit(
            f"no recorded answer for {len(missing)} {name} items (first: {missing[0]}); run "
            "`python scripts/eval_router.py` with the same --per-category, --external and "
            "--seed first"
        )
    return labelled(items, [known[item.id] for item in items])


async def tokenize(settings: Settings, items: list[CalibrationItem]) -> list[list[int] | None]:
    """Each item's prompt as the local backend formats and tokenizes it (None: refused)."""
    from hybrid.errors import HybridError
    from hybrid.local.runtime import LocalRuntime

    runtime = LocalRuntime.for_settings(settings)
    await runtime.load()
    try:
        backend = runtime.backend()
        result: list[list[int] | None] = []
        for item in items:
            request = GenerationRequest(
                request_id=f"pooling-{item.id}",
                messages=item.presentations[0],
                params=SamplingParams(max_tokens=DEFAULT_MAX_TOKENS, temperature=0.0),
            )
            try:
                result.append(list((await backend.prepare(request)).tokens))
            except HybridError:
                result.append(None)
        return result
    finally:
        await runtime.close()


def pooled_views(
    model: Path, tokens: list[list[int] | None], cache: Path, *, rerun: bool, timed: int
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Every view of every prompt (NaN rows for refused prompts), and the prefill timing."""
    import llama_cpp

    longest = max(len(t) for t in tokens if t is not None) + 1
    llama = llama_cpp.Llama(
        str(model),
        n_ctx=longest,
        n_batch=longest,
        n_ubatch=longest,
        embedding=True,
        pooling_type=llama_cpp.LLAMA_POOLING_TYPE_NONE,
        verbose=False,
    )
    dim, vocab = llama.n_embd(), llama.n_vocab()

    def evaluate(prompt: list[int], outputs: bool) -> None:
        llama.reset()
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(llama.ctx), True)
        llama_cpp.llama_set_embeddings(llama.ctx, outputs)
        llama.eval(prompt)

    timing = prefill_timing(evaluate, [t for t in tokens if t is not None][:timed])
    if cache.exists() and not rerun:
        stored = np.load(cache)
        if stored["last"].shape[0] == len(tokens):
            return {name: stored[name] for name in VIEWS}, timing
    views = {
        "last": np.full((len(tokens), dim), np.nan),
        "mean": np.full((len(tokens), dim), np.nan),
        "entropy": np.full((len(tokens), 1), np.nan),
        "top": np.full((len(tokens), 1), np.nan),
    }
    started = time.monotonic()
    for index, prompt in enumerate(tokens):
        if prompt is None:
            continue
        evaluate(prompt, True)
        states = np.array(
            [
                np.ctypeslib.as_array(llama_cpp.llama_get_embeddings_ith(llama.ctx, i), (dim,))
                for i in range(len(prompt))
            ]
        )
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llama.ctx, -1), (vocab,))
        p = np.exp(logits - logits.max())
        p /= p.sum()
        views["last"][index], views["mean"][index] = states[-1], states.mean(axis=0)
        views["entropy"][index] = -(p * np.log(p + 1e-30)).sum()
        views["top"][index] = p.max()
        if index % 100 == 0:
            print(f"{index}/{len(tokens)} {time.monotonic() - started:.0f} s", file=sys.stderr)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, **views)
    return views, timing


def prefill_timing(
    evaluate: Callable[[list[int], bool], None], prompts: list[list[int]]
) -> dict[str, float]:
    """Seconds to prefill the same prompts with only the last position's output (as the
    shipped probe does) and with every position's (mean pooling), interleaved."""
    spent = {"last": 0.0, "every": 0.0}
    for prompt in prompts:
        for name, outputs in (("last", False), ("every", True)):
            started = time.perf_counter()
            evaluate(prompt, outputs)
            spent[name] += time.perf_counter() - started
    return spent | {"prompts": float(len(prompts))}


def score_views(
    generated: Labelled,
    external: Labelled,
    views: dict[str, tuple[np.ndarray, np.ndarray]],
    *,
    seed: int,
    resamples: int,
) -> dict[str, tuple[Figure, Figure]]:
    """LOFO pooled and external AUROC (with intervals) of each probe and raw signal."""
    inputs = {
        "probe on the last position (shipped)": views["last"],
        "probe on the mean of every position": views["mean"],
        "probe on both": tuple(
            np.hstack(pair) for pair in zip(views["last"], views["mean"], strict=True)
        ),
    }
    rows = {}
    for label, (gen_x, ext_x) in inputs.items():
        lofo = np.zeros(len(generated.wrong))
        for _, train, test in lofo_splits(generated.families):
            lofo[test] = probe_scores(gen_x[train], generated, train, gen_x[test], seed)
        outside = probe_scores(gen_x, generated, np.arange(len(gen_x)), ext_x, seed)
        rows[label] = (
            figure(lofo, generated.wrong, seed, resamples),
            figure(outside, external.wrong, seed, resamples),
        )
    for label, key, sign in (
        ("next-token entropy at the prompt's end", "entropy", 1.0),
        ("1 - top next-token probability", "top", -1.0),
    ):
        gen_s, ext_s = (np.nan_to_num(sign * v[:, 0]) for v in views[key])
        rows[label] = (
            figure(gen_s, generated.wrong, seed, resamples),
            figure(ext_s, external.wrong, seed, resamples),
        )
    return rows


def probe_scores(
    train_x: np.ndarray, generated: Labelled, train: np.ndarray, test_x: np.ndarray, seed: int
) -> np.ndarray:
    """A probe fitted as ``hybrid calibrate`` fits it (penalty by family-out CV), scoring."""
    ok = ~np.isnan(train_x).any(axis=1)
    families = [generated.families[i] for i, good in zip(train, ok, strict=True) if good]
    fitted = train_probe(
        train_x[ok],
        generated.wrong[train][ok],
        feature_scores=np.zeros(int(ok.sum())),
        feature_threshold=0.5,
        groups=families,
        seed=seed,
        shares=(1.0,),
    )
    return np.array(
        [0.5 if np.isnan(row).any() else fitted.probe.score(row) for row in test_x],
        dtype=np.float64,
    )


def figure(scores: np.ndarray, wrong: np.ndarray, seed: int, resamples: int) -> Figure:
    def statistic(index: np.ndarray) -> float:
        return (
            float("nan")
            if wrong[index].min() == wrong[index].max()
            else auroc(scores[index], wrong[index])
        )

    low, high = bootstrap_ci(statistic, len(wrong), resamples=resamples, seed=seed)
    return Figure(auroc(scores, wrong), low, high)


def render(
    rows: dict[str, tuple[Figure, Figure]],
    timing: dict[str, float],
    *,
    model: str,
    sha256: str,
    args: argparse.Namespace,
    data: dict[str, Labelled],
) -> str:
    table = "\n".join(f"| {label} | {a.text()} | {b.text()} |" for label, (a, b) in rows.items())
    ratio = timing["every"] / timing["last"] if timing["last"] > 0 else float("nan")
    return f"""# Which view of the prompt the probe reads

Generated by `python scripts/probe_pooling.py` on {datetime.now(UTC).date().isoformat()}.
Model `{model}.gguf`, sha256 `{sha256}`. Items: {len(data["answers"].items)} generated
({args.per_category} per family, seed {args.seed}) and {len(data["external"].items)} external
(at most {args.external} per set), labelled by the answer records of `scripts/eval_router.py`
(see [router-eval.md](router-eval.md)). Probes are fitted as `hybrid calibrate` fits them.

| signal | LOFO pooled AUROC | external AUROC (fitted on every generated item) |
|---|---|---|
{table}

Prefill of the same {int(timing["prompts"])} prompts, interleaved: {timing["last"]:.2f} s with
only the last position's output (what the shipped probe costs: nothing beyond the prefill the
answer needs), {timing["every"]:.2f} s with every position's output (what mean pooling needs:
for a generative model llama.cpp then computes every position's logits), a ratio of
{ratio:.2f}.

Intervals: 95 % percentile bootstrap, {args.resamples} resamples of the items.
"""


if __name__ == "__main__":
    sys.exit(main())
