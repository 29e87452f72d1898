"""``hybrid models``: list the GGUF models hybrid can find, and how each would run here.

For every model found (see :mod:`hybrid.models.catalog`: models folders, and the Ollama, LM
Studio, Hugging Face and llama.cpp stores) it shows one line: the name ``--model`` takes, where
it came from, the size, quantization, trained context length, whether the file carries a chat
template and whether that template takes tools, and the hardware plan's verdict: does it fit,
the predicted decode speed, and the context ``hybrid serve`` would give it.  ``--verbose`` adds
each model's path, parts, other names and what its store records (Ollama's template and
parameters), and the files skipped as not models.  Models that cannot be served, folders that
cannot be read (their models are not listed), and ``local.models_dirs`` entries that are missing
or not folders (not searched) are listed under "Problems:" with what to do.  For the model
``hybrid serve`` loads it shows the difficulty router's calibration in use (shipped with hybrid,
or this machine's ``hybrid calibrate`` file).  It lists; it never assembles the embedded model.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

if TYPE_CHECKING:
    from hybrid.hardware.plan import ModelFootprint, RuntimePlan
    from hybrid.hardware.snapshot import HardwareSnapshot
    from hybrid.models.catalog import Discovery, ModelEntry
    from hybrid.routing.calibration.background import BackgroundProgress
    from hybrid.routing.difficulty.model import DifficultyModel
    from hybrid.routing.difficulty.store import StoredModel
    from hybrid.settings import Settings

HELP = "list the GGUF models hybrid can find, and whether each fits this machine"

Planner = Callable[["ModelFootprint"], "RuntimePlan"]


class SnapshotSource(Protocol):
    """What ``hybrid models`` needs of the hardware probe."""

    def snapshot(self, *, measure_bandwidth: bool = True) -> HardwareSnapshot:
        """Take a hardware snapshot (the bandwidth figure may come from a cache)."""
        ...


@dataclass(frozen=True)
class ModelRow:
    """One line of the listing: a model found and, when it could be planned, its plan.

    Attributes:
        entry: The model found.
        plan: How it would run here; None when unreadable, unplanned, or planning failed.
        problem: Why planning failed, when it did.
    """

    entry: ModelEntry
    plan: RuntimePlan | None
    problem: str | None = None


@dataclass(frozen=True)
class CalibrationInUse:
    """The difficulty router's calibration for the model ``hybrid serve`` loads.

    Attributes:
        model: That model's name.
        found: The calibration, or None when there is none (or it is unusable).
        problem: Why it cannot be used or looked up, when it cannot.
        prior: The prior from the model's size and family it runs on when it has no
            calibration (None when it has one, or the header cannot be read).
        background: The last background calibration progress a server recorded for it.
    """

    model: str
    found: StoredModel | None
    problem: str | None = None
    prior: DifficultyModel | None = None
    background: BackgroundProgress | None = None

    def line(self) -> str:
        """The lines for the listing (one, or two with background calibration progress)."""
        head = f"Calibration in use for {self.model}:"
        if self.problem is not None:
            text = f"{head} unusable: {self.problem}"
        elif self.found is not None:
            text = f"{head} {self.found.describe()}."
        elif self.prior is not None:
            expected = self.prior.meta.get("expected_accuracy")
            guess = f"expected accuracy {expected:.0%}, " if isinstance(expected, float) else ""
            text = (
                f"{head} none yet; it runs on a prior from its size and family ({guess}"
                f"threshold {self.prior.threshold:.2f}) until `hybrid serve` calibrates it in "
                "the background, or you run `hybrid calibrate`."
            )
        else:
            text = f"{head} none; run `hybrid calibrate` to fit the difficulty router to it."
        if self.background is not None:
            when = f" (as of {self.background.updated})" if self.background.updated else ""
            text += f"\nBackground calibration: {self.background.line()}{when}."
        return text

    def to_json(self) -> dict[str, Any]:
        """``model``, ``problem``, the calibration's ``source`` (``user``, ``shipped``,
        ``prior``, or None when there is none), ``path``, ``created``, ``items``,
        ``held_out_auroc`` and ``model_stage``; ``prior`` (``expected_accuracy``,
        ``threshold``, or None) and ``background`` (the recorded progress, or None)."""
        from hybrid.routing.difficulty.store import SUMMARY_KEYS

        if self.found is not None:
            summary = self.found.summary()
        else:
            summary = dict.fromkeys(SUMMARY_KEYS)
        prior: dict[str, Any] | None = None
        if self.prior is not None and self.found is None:
            summary["source"] = "prior"
            prior = {
                "expected_accuracy": self.prior.meta.get("expected_accuracy"),
                "threshold": round(self.prior.threshold, 4),
            }
        return {
            "model": self.model,
            **summary,
            "problem": self.problem,
            "prior": prior,
            "background": self.background.to_json() if self.background is not None else None,
        }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``hybrid models``."""
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="also show each model's path, other names and store metadata, and skipped files",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """List the models.

    Returns:
        0, also when no model is found (the output says how to add one).
    """
    from hybrid.hardware.probe import probe_for

    probe = probe_for(settings.home)
    return list_models(
        settings,
        probe,
        as_json=bool(args.json),
        out=sys.stdout,
        err=sys.stderr,
        verbose=bool(getattr(args, "verbose", False)),
    )


def list_models(
    settings: Settings,
    probe: SnapshotSource,
    *,
    as_json: bool,
    out: TextIO,
    err: TextIO,
    cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
    verbose: bool = False,
) -> int:
    """Find the models, plan each on this machine, and print the listing.

    Args:
        settings: Where to look (``home``, ``local.*``) and the planning limits.
        probe: Takes the hardware snapshot (running the bandwidth benchmark unless it is cached
            or ``probe.measure_bandwidth`` is off); asked only when some model can be planned.
            If it fails, the models are still listed, without a verdict, and ``err`` says why.
        as_json: Print JSON instead of a table.
        out: Where the listing goes.
        err: Where warnings go.
        cwd: Folder ``./models`` is relative to (default: the current working directory).
        environ: The environment the stores' variables are read from (default: the process's).
        verbose: Add each model's details and the skipped files.

    Returns:
        The exit code: 0.
    """
    from hybrid.models.catalog import discover

    found = discover(settings, cwd=cwd, environ=environ)
    entries = list(found.entries)
    planner: Planner | None = None
    probe_error: str | None = None
    if any(entry.info is not None for entry in entries):
        try:
            snapshot = probe.snapshot(measure_bandwidth=settings.probe.measure_bandwidth)
            planner = _planner(settings, snapshot)
        except Exception as exc:  # the verdict is extra: the list must print without it
            probe_error = f"the hardware probe failed ({exc}); fit and speed are not shown"
            print(f"hybrid: warning: {probe_error}", file=err)
    rows = plan_rows(entries, planner)
    calibration = calibration_in_use(settings.home, entries, err=err)
    if as_json:
        payload = models_json(rows, found.folders, discovery=found)
        payload["probe_error"] = probe_error
        payload["calibration"] = calibration.to_json() if calibration is not None else None
        print(json.dumps(payload, indent=2), file=out)
    else:
        text = render_table(
            rows, found.folders, settings, calibration, discovery=found, verbose=verbose
        )
        print(text, end="", file=out)
    return 0


def calibration_in_use(
    home: Path, entries: Sequence[ModelEntry], *, err: TextIO
) -> CalibrationInUse | None:
    """Find the calibration the router would use for the model ``hybrid serve`` loads.

    Args:
        home: The data dir.
        entries: The models found.
        err: Receives a line before a model file is hashed (the embedded model's hash is read
            from its marker).

    Returns:
        The calibration, or None when no readable model is the one ``hybrid serve`` loads.
    """
    from hybrid.errors import HybridError
    from hybrid.routing.calibration.background import read_progress
    from hybrid.routing.difficulty.prior import prior_for_file
    from hybrid.routing.difficulty.store import find, gguf_sha256

    entry = next((e for e in entries if e.default and e.info is not None), None)
    if entry is None:
        return None
    try:
        sha256 = gguf_sha256(entry.path, progress=lambda line: print(line, file=err))
        found = find(home, sha256)
    except HybridError as exc:
        return CalibrationInUse(entry.name, None, str(exc))
    background = read_progress(home, sha256)
    if found is not None:
        return CalibrationInUse(entry.name, found, background=background)
    try:
        prior = prior_for_file(entry.path, sha256)
    except HybridError:
        prior = None
    return CalibrationInUse(entry.name, None, prior=prior, background=background)


def _planner(settings: Settings, snapshot: HardwareSnapshot) -> Planner:
    from hybrid.hardware.plan import plan_with_settings

    def plan(footprint: ModelFootprint) -> RuntimePlan:
        # The plan `hybrid serve` would make, so the verdict is what serve would do.
        return plan_with_settings(snapshot, footprint, settings.local)

    return plan


def plan_rows(entries: Sequence[ModelEntry], planner: Planner | None) -> list[ModelRow]:
    """Pair each entry with its plan (None when unreadable or when there is no planner)."""
    from hybrid.errors import HybridError

    rows = []
    for entry in entries:
        footprint = entry.footprint
        if planner is None or footprint is None:
            rows.append(ModelRow(entry, None))
            continue
        try:
            rows.append(ModelRow(entry, planner(footprint)))
        except HybridError as exc:  # e.g. a context setting the planner rejects
            rows.append(ModelRow(entry, None, f"no plan: {exc}"))
    return rows


def render_table(
    rows: Sequence[ModelRow],
    searched: Sequence[Path],
    settings: Settings,
    calibration: CalibrationInUse | None = None,
    *,
    discovery: Discovery | None = None,
    verbose: bool = False,
) -> str:
    """The listing as an aligned table with a legend, or advice when nothing was found.

    Args:
        rows: The models and their plans.
        searched: The models folders searched.
        settings: For the embedded model's folder and whether a model is configured.
        calibration: The calibration in use for the model ``hybrid serve`` loads, if any.
        discovery: What discovery saw (the stores searched, the skipped files), when known.
        verbose: Add each model's details and the skipped files.

    Returns:
        Lines joined with newlines, ending in a newline.
    """
    from hybrid.cli.models_details import details, skipped_lines, where_searched
    from hybrid.hardware.render import size
    from hybrid.models.embedded import DEFAULT_MODEL_ID, embedded_model_path

    where = where_searched(searched, discovery)
    unread = [f"  {problem}" for problem in (discovery.problems if discovery else ())]
    if not rows:
        return (
            f"No models found (searched {where}).\n"
            "Put a .gguf file in one of these folders (or add a folder to local.models_dirs), "
            "pull one with Ollama, LM Studio or `hybrid pull`, serve one directly with "
            "`hybrid serve --model PATH`, or run `hybrid serve` once to assemble the embedded "
            f"default model ({DEFAULT_MODEL_ID}) into "
            f"{embedded_model_path(settings.home).parent}.\n"
            + "".join(line + "\n" for line in skipped_lines(discovery, verbose=verbose))
            + "".join(line + "\n" for line in (["Problems:", *unread] if unread else []))
        )
    header = (
        "", "NAME", "SOURCE", "SIZE", "QUANT", "CONTEXT", "CHAT", "TOOLS", "FITS", "TOK/S",
        "N_CTX",
    )  # fmt: skip
    table: list[tuple[str, ...]] = [header]
    problems = list(unread)
    for row in rows:
        entry, info, plan = row.entry, row.entry.info, row.plan
        name = entry.name + (" (embedded)" if entry.embedded else "")
        mark = "*" if entry.default else ""
        if info is None:
            problems.append(f"  {entry.name}: {entry.error}")
            table.append((mark, name, entry.source, *["-"] * 8))
            continue
        if row.problem is not None:
            problems.append(f"  {entry.name}: {row.problem}")
        table.append(
            (
                mark,
                name,
                entry.source,
                size(info.file_bytes),
                info.file_type,
                f"{info.context_length:,}",
                _yes(entry.chat_template),
                _yes(entry.tools),
                _fits(plan),
                _speed(plan),
                f"{plan.n_ctx:,}" if plan is not None else "?",
            )
        )
    widths = [max(len(cells[i]) for cells in table) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in table
    ]
    lines.append("")
    if any(row.entry.default for row in rows):
        lines.append("* the model `hybrid serve` loads")
    if calibration is not None:
        lines.append(calibration.line())
    elif settings.local.model is None:
        lines.append(
            f"`hybrid serve` loads the embedded default {DEFAULT_MODEL_ID}, assembled into "
            f"{embedded_model_path(settings.home).parent} on its first run."
        )
    lines.append(
        "CHAT: the file carries a chat template; TOOLS: it takes tools; N_CTX: the context "
        "serve would plan. Serve one with `hybrid serve --model NAME`."
    )
    lines.append(f"Searched {where}.")
    if verbose:
        lines.extend(details(rows))
    lines.extend(skipped_lines(discovery, verbose=verbose))
    if problems:
        lines.append("Problems:")
        lines.extend(problems)
    return "\n".join(lines) + "\n"


def models_json(
    rows: Sequence[ModelRow], searched: Sequence[Path], *, discovery: Discovery | None = None
) -> dict[str, Any]:
    """The listing as a JSON-ready dict (``hybrid models --json``).

    Returns:
        ``{"models": [...], "searched": [folder, ...], "stores": [{"store", "path"}],
        "skipped": [{"path", "reason"}], "problems": [message, ...]}``; each model has
        ``name``, ``source``, ``aliases``, ``path``, ``parts``, ``embedded``, ``default``,
        ``error``, and (``None`` when unreadable) ``size_bytes``, ``architecture``,
        ``quantization``, ``context_length``, ``chat_template`` and ``tools`` (bools),
        ``block_count``; ``fits`` and
        ``predicted_tokens_per_s`` (from the plan, ``None`` without one), ``plan`` (the plan's
        fields, or ``None``), ``plan_problem`` (why planning failed, or ``None``) and ``store``
        (what the store records: ``manifest``, ``template``, ``system``, ``params`` and the
        ``defaults`` hybrid reads from them; ``None`` when it records nothing).  ``problems``
        lists the folders that could not be read, each a message naming it and what to do.
    """
    from hybrid.cli.models_details import store_json

    models = []
    for row in rows:
        entry, info = row.entry, row.entry.info
        plan: dict[str, Any] | None = None
        if row.plan is not None:
            plan = asdict(row.plan)
            plan["notes"] = list(row.plan.notes)
        models.append(
            {
                "name": entry.name,
                "source": entry.source,
                "aliases": list(entry.aliases),
                "path": str(entry.path),
                "parts": [str(part) for part in entry.parts],
                "embedded": entry.embedded,
                "default": entry.default,
                "error": entry.error,
                "size_bytes": entry.size_bytes,
                "architecture": info.architecture if info else None,
                "quantization": entry.quantization,
                "context_length": entry.context_length,
                "chat_template": entry.chat_template,
                "tools": entry.tools,
                "block_count": info.block_count if info else None,
                "fits": row.plan.fits if row.plan is not None else None,
                "predicted_tokens_per_s": (
                    row.plan.predicted_tokens_per_s if row.plan is not None else None
                ),
                "plan": plan,
                "plan_problem": row.problem,
                "store": store_json(entry),
            }
        )
    return {
        "models": models,
        "searched": [str(folder) for folder in searched],
        "stores": [
            {"store": store, "path": str(path)}
            for store, path in (discovery.stores if discovery else ())
        ],
        "skipped": [
            {"path": str(item.path), "reason": item.reason}
            for item in (discovery.skipped if discovery else ())
        ],
        "problems": list(discovery.problems if discovery else ()),
    }


def _yes(flag: bool | None) -> str:
    return "?" if flag is None else "yes" if flag else "no"


def _fits(plan: RuntimePlan | None) -> str:
    if plan is None:
        return "?"
    return "yes" if plan.fits else "no"


def _speed(plan: RuntimePlan | None) -> str:
    if plan is None or plan.predicted_tokens_per_s is None:
        return "?"
    return f"~{plan.predicted_tokens_per_s:.0f}"
