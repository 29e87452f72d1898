"""``hybrid calibrate --from-ledger``: refit the difficulty model from labelled traffic.

No model runs: the examples are the calibration answers ``hybrid calibrate`` recorded for the
local model, and the requests in the ledger that carry a label (``POST /v1/hybrid/feedback``,
or a shadow comparison) and whose prompt features were kept.  The refit replaces the model
in use only under :func:`hybrid.routing.calibration.refit_acceptance.review`; either way the
command prints what it used and how the held-out figures compare.  A damaged record of those
answers stops it with the file's name and what to do; the file is left as it is.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from hybrid.ledger.learning import LabelledSignal
    from hybrid.routing.calibration.learning import Refit
    from hybrid.routing.calibration.probe_refit import ProbeRefit
    from hybrid.routing.difficulty.model import DifficultyModel


def refit_from_ledger(
    *,
    home: Path,
    ledger: Path | str,
    sha256: str,
    model_name: str,
    seed: int,
    held_out: float,
    out: TextIO,
    model_file: Path | None = None,
    shipped: Traversable | Path | None = None,
) -> Refit:
    """Refit a local model's difficulty model from its calibration answers and labels.

    Args:
        home: The data dir (calibrations and recorded answers live there).
        ledger: The ledger file, or the shared ledger's database URL (``ledger.url``).
        sha256: The local model's GGUF SHA-256.
        model_name: The model's id, for the summary.
        seed: Seeds the split and the folds.
        held_out: Share held out to measure the fits.
        out: Where the summary goes.
        model_file: The GGUF file: without a calibration, its prior (what the router uses
            then) is the model the refit must beat.
        shipped: Folder of shipped calibrations (default: the package's).

    Returns:
        The refit; it was saved when :attr:`Refit.adopted`.

    Raises:
        ConfigError: There is nothing to learn from, the recorded calibration answers are
            damaged (the file is left as it is), or the data dir cannot be written.
        LedgerError: The ledger cannot be read.
        CalibrationRejectedError: The refit was not adopted (the message says why); the
            calibration in use is unchanged.
    """
    from hybrid import __version__
    from hybrid.errors import CalibrationRejectedError, ConfigError
    from hybrid.ledger.store import LedgerStore, describe_source
    from hybrid.routing.calibration.fitting import WORD_WEIGHT
    from hybrid.routing.calibration.learning import refit
    from hybrid.routing.calibration.record import read_record
    from hybrid.routing.calibration.refit_examples import ledger_examples
    from hybrid.routing.difficulty.store import find, save

    # Read first, and strictly: a damaged record is not "no answers recorded".
    record = read_record(home, sha256)
    labelled: list[LabelledSignal] = []
    if not isinstance(ledger, Path) or ledger.is_file():
        store = LedgerStore.open_source(ledger)
        try:
            labelled = store.labelled(sha256)
        finally:
            store.close()
    found = ledger_examples(record, labelled)
    calibration, traffic, examples = found.calibration, found.traffic, found.examples
    if not examples:
        raise ConfigError(
            f"nothing to refit {model_name} from: no calibration answers are recorded for it "
            f"and the ledger {describe_source(ledger)} has no labelled requests of it. Label "
            "answers with POST /v1/hybrid/feedback, or set routing.learn.shadow_rate, then run "
            "again."
        )
    in_use = find(home, sha256, shipped=shipped)
    current = in_use.model if in_use is not None else _prior(model_file, sha256, shipped)
    meta = {
        "model": model_name,
        "model_sha256": sha256,
        "created": datetime.now(UTC).date().isoformat(),
        "hybrid_version": __version__,
    }
    try:
        result = refit(
            current,
            examples,
            seed=seed,
            held_out=held_out,
            meta=meta,
        )
    except ValueError as exc:
        raise ConfigError(f"cannot refit {model_name}: {exc}") from exc
    path = save(home, sha256, result.model) if result.adopted else None
    used = "none recorded" if record is None else "recorded answers no longer match the items"
    lines = [
        f"Refit the difficulty model of {model_name} (sha256 {sha256[:12]}...) from the ledger.",
        "",
        f"  calibration answers  {len(calibration) if calibration is not None else used}",
        f"  labelled requests    {len(traffic)} (feedback {result.counts['feedback']}, "
        f"shadow {result.counts['shadow']}, cascade {result.counts['cascade']})",
    ]
    if result.traffic_weight != 1.0:
        lines.append(
            f"  each labelled request counted as {result.traffic_weight:g} calibration answers "
            "(chosen by cross-validation)"
        )
    if result.word_weight != WORD_WEIGHT:
        lines.append(
            f"  hashed words         weighed {result.word_weight:g} against the hand-made "
            f"features (default {WORD_WEIGHT:g}; chosen by cross-validation on the labelled "
            "requests)"
        )
    if found.unused:
        lines.append(f"  not used             {found.unused} (feedback on cloud answers only)")
    if found.stale:
        lines.append(f"  not used             {found.stale} (features of another hybrid version)")
    lines += [
        f"  held out             {result.held_out} ({result.held_out_traffic} labelled "
        f"requests), {result.held_out_wrong} answered wrong",
        "",
        f"Held-out AUROC: {_auroc(result.before_auroc)} in use, {_auroc(result.after_auroc)} "
        f"refitted (prompt length alone: {_auroc(result.length_auroc)})",
        f"  on labelled requests: {_auroc(result.before_traffic_auroc)} in use, "
        f"{_auroc(result.after_traffic_auroc)} refitted",
    ]
    if result.probe is not None:
        lines.append(_model_stage_line(result.probe))
    if path is not None:
        lines += [
            f"Default threshold: {result.model.threshold:.3f}",
            f"Adopted: saved to {path}; restart a running `hybrid serve` to use it.",
        ]
    print("\n".join(lines), file=out)
    if result.rejection is not None:
        if in_use is not None:
            kept = f"The router keeps using {in_use.describe()}."
        elif current is not None:
            kept = "The router keeps using the prior from the model's size and family."
        else:
            kept = "Nothing was written: this model still has no calibration."
        raise CalibrationRejectedError(f"refit not adopted: {result.rejection}. {kept}")
    return result


def _model_stage_line(probe: ProbeRefit) -> str:
    """What became of the model stage (the probe on the local model's prompt vectors)."""
    from hybrid.routing.calibration.refit_examples import MIN_TRAFFIC_PER_CLASS

    if probe.probe is None:
        return (
            f"Model stage: carried over ({probe.labelled} labelled requests carry a prompt "
            f"vector; {MIN_TRAFFIC_PER_CLASS} right and {MIN_TRAFFIC_PER_CLASS} wrong are "
            "needed to refit it: routing.learn.prompt_vectors keeps them)"
        )
    figures = (
        f"both stages on the {probe.labelled} labelled requests with a prompt vector: "
        f"{_auroc(probe.carried_auroc)} carried over, {_auroc(probe.refit_auroc)} refitted"
    )
    if probe.adopted:
        return f"Model stage: refitted, band {probe.band_share:.0%} of the examples ({figures})"
    return f"Model stage: carried over, the refit does not rank better ({figures})"


def _prior(
    model_file: Path | None, sha256: str, shipped: Traversable | Path | None
) -> DifficultyModel | None:
    """The prior the router uses for an uncalibrated file; None when none can be built."""
    from hybrid.errors import HybridError
    from hybrid.routing.difficulty.prior import prior_for_file

    if model_file is None:
        return None
    try:
        return prior_for_file(model_file, sha256, shipped=shipped)
    except HybridError:
        return None


def _auroc(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.3f}"
