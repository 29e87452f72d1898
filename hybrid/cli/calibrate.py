"""``hybrid calibrate``: fit the difficulty router to the local model, on this machine.

It loads the local model exactly as ``hybrid serve`` would (only when an item must be asked),
asks it every item of a generated
calibration set (arithmetic, facts, unit conversion, counting, reasoning, code, multiple choice,
chat, other languages, instructions, rewriting, summaries, extraction, writing code, multi-turn
conversations), grades the answers (``--judge`` has a cloud model grade those a rule only
approximates), and fits the difficulty model's weights and default threshold to what *this*
model gets right and wrong.  The result goes to
``<home>/calibration/<sha256>.json``, keyed by the GGUF file's SHA-256, where the router finds
it; the answers go beside it (``<sha256>.answers.json``) for ``scripts/eval_router.py`` and the
next run, which asks the model only the items that record does not answer (``--rerun`` asks all).

A fit replaces the calibration in use only when its held-out figures can be trusted and beat
prompt length (:mod:`hybrid.routing.calibration.acceptance`); otherwise nothing is written, the
command says why and how to run again, and exits 1.  ``--reset`` removes this machine's
calibration of the model, so that the one shipped with hybrid is used again.

The run is reproducible: the items, the split and the folds come from ``--seed``, and decoding
is greedy.  The run itself (ask, grade, fit, review, store) is :mod:`hybrid.cli.calibrate_run`;
what it draws and prints (the progress bar, the summary) is :mod:`hybrid.cli.calibrate_report`;
``--judge`` is :mod:`hybrid.cli.calibrate_judge`, and ``--from-ledger``
:mod:`hybrid.cli.calibrate_ledger`.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from hybrid.cli.calibrate_run import (
    DEFAULT_HELD_OUT,
    DEFAULT_MAX_TOKENS,
    DEFAULT_PER_CATEGORY,
    DEFAULT_SEED,
    CalibrateOptions,
    DeferredBackend,
    calibrate_backend,
)

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from hybrid.backend import Backend
    from hybrid.cli.calibrate_judge import JudgePlan
    from hybrid.settings import LanServerSettings, Settings

HELP = "fit the difficulty router to the local model on a graded calibration set"
SETTINGS_FLAGS = {"model": "local.model", "threads": "local.n_threads"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``hybrid calibrate``."""
    parser.add_argument(
        "--model", type=Path, help="GGUF file to calibrate (default: the model serve loads)"
    )
    parser.add_argument(
        "--per-category",
        type=int,
        default=DEFAULT_PER_CATEGORY,
        metavar="N",
        help=f"items per category, 15 categories (default {DEFAULT_PER_CATEGORY})",
    )
    parser.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, help=f"seed (default {DEFAULT_SEED})"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=DEFAULT_MAX_TOKENS,
        metavar="N",
        help=f"output tokens per answer (default {DEFAULT_MAX_TOKENS})",
    )
    parser.add_argument(
        "--held-out",
        type=float,
        default=DEFAULT_HELD_OUT,
        metavar="SHARE",
        help=f"share of items held out to measure the fit (default {DEFAULT_HELD_OUT})",
    )
    parser.add_argument(
        "--rerun",
        action="store_true",
        help="ask the model every item again; by default answers recorded by an earlier run "
        "with the same model, seed, items and --max-tokens are reused",
    )
    parser.add_argument("--threads", type=int, help="CPU threads (default: planned)")
    parser.add_argument(
        "--lan",
        metavar="SERVER/MODEL",
        help="calibrate a model on a LAN server ([[lan.servers]]) instead of the local one; "
        "the fit is stored under the model's name, where the LAN tier finds it",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="remove this machine's calibration of the model, so the shipped one is used again",
    )
    from hybrid.cli.calibrate_judge import add_arguments as add_judge_arguments

    add_judge_arguments(parser)
    parser.add_argument(
        "--from-ledger",
        action="store_true",
        help="refit from the recorded calibration answers and the ledger's labelled requests "
        "(feedback, shadow comparisons), without running the model; adopted only if it "
        "improves the held-out AUROC",
    )


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Calibrate the local model and store the fitted difficulty model (or, with ``--reset``,
    remove it).

    Returns:
        0 on success.

    Raises:
        ConfigError: A flag is out of range, or the data dir cannot be written.
        ModelFileError: The model cannot be found or read.
        ModelNotReadyError: The model failed to load.
        CalibrationRejectedError: The fit was not saved (too few held-out items, or worse than
            prompt length); the calibration in use is unchanged.
    """
    from hybrid.errors import ConfigError
    from hybrid.models.resolve import resolve_model
    from hybrid.routing.difficulty.store import gguf_sha256

    if args.reset:
        path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
        sha256 = gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))
        return reset_calibration(settings.home, sha256, model_name=path.stem, out=sys.stdout)
    if getattr(args, "from_ledger", False):
        from hybrid.cli.calibrate_ledger import refit_from_ledger

        if not 0.0 < args.held_out < 1.0:
            raise ConfigError(f"--held-out must be between 0 and 1 (got {args.held_out})")
        path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
        sha256 = gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))
        refit_from_ledger(
            home=settings.home,
            ledger=settings.ledger.source(settings.home),
            sha256=sha256,
            model_name=path.stem,
            seed=args.seed,
            held_out=args.held_out,
            out=sys.stdout,
            model_file=path,
        )
        return 0
    options = CalibrateOptions(
        per_category=args.per_category,
        seed=args.seed,
        max_tokens=args.max_tokens,
        held_out=args.held_out,
        rerun=args.rerun,
    )
    # Checked before the model is resolved: a typo should not wait for a 253 MB assembly.
    if options.per_category < 1:
        raise ConfigError(f"--per-category must be at least 1 (got {options.per_category})")
    if options.max_tokens < 1:
        raise ConfigError(f"--max-tokens must be at least 1 (got {options.max_tokens})")
    if not 0.0 < options.held_out < 1.0:
        raise ConfigError(f"--held-out must be between 0 and 1 (got {options.held_out})")
    lan = _lan_target(settings, args.lan) if getattr(args, "lan", None) else None
    judge = None
    if getattr(args, "judge", None):  # asked before the model runs: it costs money
        from hybrid.cli.calibrate_judge import plan_and_confirm

        judge = plan_and_confirm(args, settings, options.seed, options.per_category)
        if judge is None:
            print("Nothing was run.", file=sys.stderr)
            return 1
    if lan is not None:
        return asyncio.run(_calibrate_lan(settings, *lan, options, judge))
    path = resolve_model(settings, progress=lambda line: print(line, file=sys.stderr))
    sha256 = gguf_sha256(path, progress=lambda line: print(line, file=sys.stderr))
    return asyncio.run(_calibrate_local(settings, path, sha256, options, judge))


def _lan_target(settings: Settings, target: str) -> tuple[LanServerSettings, str]:
    """The ``[[lan.servers]]`` entry and the model ``--lan SERVER/MODEL`` names.

    Raises:
        ConfigError: It is not of that form, or names no configured server.
    """
    from hybrid.errors import ConfigError

    name, _, model = target.partition("/")
    servers = {server.name: server for server in settings.lan.servers}
    if not name or not model:
        raise ConfigError(f"--lan takes SERVER/MODEL (gpu-box/qwen2.5-32b), got {target!r}")
    if name not in servers:
        known = ", ".join(servers) or "none is configured"
        raise ConfigError(
            f"--lan names server {name!r}, which is not under [[lan.servers]] ({known})"
        )
    return servers[name], model


async def _calibrate_lan(
    settings: Settings,
    server: LanServerSettings,
    model: str,
    options: CalibrateOptions,
    judge_plan: JudgePlan | None = None,
) -> int:
    """Ask a LAN server the calibration set, through the LAN tier's own client (timeouts,
    retries, the model check), and store the fit under the model's name."""
    from hybrid.cli.calibrate_judge import open_judge
    from hybrid.cloud.client import cloud_client
    from hybrid.lan.provider import LanProvider
    from hybrid.routing.difficulty.store import name_key
    from hybrid.service.providers import reliability_policy

    policy = reliability_policy(settings.cloud)
    client = cloud_client(policy)
    provider = LanProvider(
        name=server.name,
        base_url=server.base_url,
        api_key=server.api_key,
        models=[model],
        client=client,
        policy=policy,
    )
    print(f"asking {server.name} ({server.base_url}) as {model} ...", file=sys.stderr)
    try:
        async with open_judge(settings, judge_plan) as judge:
            await calibrate_backend(
                provider,
                home=settings.home,
                sha256=name_key(model),
                model_name=f"{server.name}/{model}",
                options=options,
                out=sys.stdout,
                err=sys.stderr,
                judge=judge,
            )
    finally:
        await client.aclose()
    return 0


async def _calibrate_local(
    settings: Settings,
    path: Path,
    sha256: str,
    options: CalibrateOptions,
    judge_plan: JudgePlan | None = None,
) -> int:
    from hybrid.cli.calibrate_judge import open_judge
    from hybrid.local.runtime import LocalRuntime

    runtime = LocalRuntime.for_settings(settings)

    async def load() -> Backend:
        print(f"loading {path.name} ...", file=sys.stderr)
        await runtime.load()
        return runtime.backend()

    try:
        async with open_judge(settings, judge_plan) as judge:
            await calibrate_backend(
                DeferredBackend(load, embeds=True),
                home=settings.home,
                sha256=sha256,
                model_name=path.stem,
                options=options,
                out=sys.stdout,
                err=sys.stderr,
                judge=judge,
            )
    finally:
        await runtime.close()
    return 0


def reset_calibration(
    home: Path,
    sha256: str,
    *,
    model_name: str,
    out: TextIO,
    shipped: Traversable | Path | None = None,
) -> int:
    """Remove this machine's calibration of a model and say which calibration is now in use.

    Args:
        home: The data dir.
        sha256: The GGUF file's SHA-256.
        model_name: The model's id, for the message.
        out: Where the message goes.
        shipped: Folder of shipped calibrations (default: the package's).

    Returns:
        0, also when there was nothing to remove.

    Raises:
        ConfigError: The file cannot be removed, or the shipped one is damaged.
    """
    from hybrid.routing.difficulty.store import find, model_path, remove

    removed = remove(home, sha256)
    now = find(home, sha256, shipped=shipped)
    if removed is not None:
        first = f"Removed your calibration of {model_name} ({removed})."
    else:
        first = f"You have no calibration of {model_name} to remove ({model_path(home, sha256)})."
    if now is not None:
        in_use = f"The router uses {now.describe()}."
    else:
        in_use = (
            "No calibration is shipped for this model, so the difficulty policy abstains until "
            "you run `hybrid calibrate`."
        )
    lines = [first, in_use]
    if removed is not None:
        lines.append("Restart a running `hybrid serve` for it to take effect.")
    print("\n".join(lines), file=out)
    return 0
