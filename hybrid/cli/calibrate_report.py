"""What ``hybrid calibrate`` shows while it runs and when it ends: the progress bar on stderr
and the summary of the fit (accuracy per category, held-out AUROC, the threshold).

``scripts/eval_router.py`` and ``scripts/eval_prompt.py`` draw their progress with the same bar.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from hybrid.routing.calibration.fitting import Calibration
    from hybrid.routing.calibration.item import CalibrationItem


def render_summary(
    calibration: Calibration,
    items: list[CalibrationItem],
    correct: list[bool],
    model_name: str,
    elapsed_s: float,
    path: Path | None,
    *,
    reused: int = 0,
) -> str:
    """The report printed at the end: accuracy per category, held-out AUROC, the threshold.

    Args:
        calibration: The fit.
        items: The calibration set.
        correct: Whether each item was answered right.
        model_name: The model's id.
        elapsed_s: How long answering took.
        path: Where the fit was saved; None when it was not.
        reused: How many answers came from an earlier run's record instead of the model.

    Returns:
        Lines joined with newlines, without a trailing newline.
    """
    model = calibration.model
    by_category: dict[str, list[bool]] = {}
    for item, ok in zip(items, correct, strict=True):
        by_category.setdefault(item.category, []).append(ok)
    reuse = f", {reused} answers reused from an earlier run" if reused else ""
    lines = [
        f"Calibrated {model_name} (sha256 {str(model.meta['model_sha256'])[:12]}...) on "
        f"{len(items)} items, seed {model.meta['seed']}, in {elapsed_s:.0f} s{reuse}.",
        "",
        f"  {'category':<14}{'items':>6}  local answers right",
    ]
    for category, oks in by_category.items():
        lines.append(f"  {category:<14}{len(oks):>6}  {sum(oks):>4} ({sum(oks) / len(oks):.0%})")
    total = sum(correct)
    lines.append(f"  {'all':<14}{len(correct):>6}  {total:>4} ({total / max(len(correct), 1):.0%})")
    from hybrid.routing.calibration.fitting import feature_matrix

    scores = model.scores(feature_matrix(items))
    escalated = float((scores > model.threshold).mean()) if len(scores) else 0.0
    lines += [
        "",
        f"Held-out AUROC ({len(calibration.held_out)} items, scored by a fit on the other "
        f"{len(calibration.train)}): {_auroc(calibration.held_out_auroc)} (prompt length alone: "
        f"{_auroc(calibration.held_out_length_auroc)}); the model saved is then fitted on all "
        f"{len(items)} items.",
        f"Default threshold: {model.threshold:.3f} (escalate when the difficulty score is "
        f"above it; {escalated:.0%} of the calibration items score above it)",
        *_probe_lines(calibration),
        f"Saved to {path}; restart a running `hybrid serve` to use it."
        if path is not None
        else "Not saved.",
    ]
    return "\n".join(lines)


def _probe_lines(calibration: Calibration) -> list[str]:
    """The model stage's line of the summary, when the fit has one."""
    probe = calibration.model.probe
    if probe is None:
        return []
    meta = calibration.model.meta
    two_stage = meta.get("held_out_two_stage_auroc")
    low, high = probe.band
    measured = _auroc(math.nan if two_stage is None else float(str(two_stage)))
    if low >= high:
        return [
            "Model stage: none of the feature scores is left to the probe on the prompt vector "
            "(cross-validation found no band where both stages rank better than the feature "
            f"stage alone), so it is never asked; held-out AUROC of both stages, as fitted on "
            f"the split: {measured}"
        ]
    how = "blended with the feature score " if probe.blend is not None else ""
    return [
        f"Model stage: a probe on the prompt vector, {how}settles feature scores in "
        f"[{low:.3f}, {high:.3f}]; held-out AUROC of both stages, as fitted on the split: "
        f"{measured}"
    ]


def _auroc(value: float) -> str:
    return "n/a (one class only)" if math.isnan(value) else f"{value:.3f}"


class ProgressBar:
    """A plain-text progress bar: redrawn in place on a terminal, a line per 10 % otherwise.

    Args:
        stream: Where to draw (stderr).
        label: What is progressing.
        clock: Seconds, for the elapsed and remaining time.
    """

    _WIDTH = 30

    def __init__(
        self, stream: TextIO, label: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._stream = stream
        self._label = label
        self._clock = clock
        self._started = clock()
        self._interactive = stream.isatty()
        self._last_step = -1
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        """Report ``done`` of ``total`` steps."""
        fraction = done / total if total else 1.0
        if not self._interactive:
            step = int(fraction * 10)
            if step > self._last_step:
                self._last_step = step
                print(self._line(done, total, fraction), file=self._stream, flush=True)
            return
        self._stream.write("\r" + self._line(done, total, fraction))
        self._stream.flush()
        self._drawn = True

    def finish(self) -> None:
        """End the bar's line on a terminal."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()

    def _line(self, done: int, total: int, fraction: float) -> str:
        filled = int(fraction * self._WIDTH)
        elapsed = self._clock() - self._started
        remaining = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * filled + "-" * (self._WIDTH - filled)
        return (
            f"{self._label} [{bar}] {done}/{total} {fraction:4.0%} "
            f"{elapsed:.0f} s elapsed, ~{remaining:.0f} s left"
        )
