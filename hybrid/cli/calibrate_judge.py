"""``hybrid calibrate --judge <provider/model>``: the judge's flags, cost and consent.

The judge is a configured cloud model, or a LAN server's model named by the server's
``[[lan.servers]]`` name (``gpu-box/qwen2.5-32b-instruct``), asked on that server.  Before the
local model answers anything, the command names the judge, how many items it will grade and
what that costs at most (a cloud model's prices from the price table, ``pricing.overrides``
included; a LAN server's at ``lan.usd_per_1m_tokens``), and asks for confirmation; ``--yes``
answers for the user.  Without a terminal to ask on, it refuses and says to pass ``--yes``: a
script must not spend money by accident.
"""

from __future__ import annotations

import argparse
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

from hybrid.errors import ConfigError

if TYPE_CHECKING:
    from hybrid.routing.calibration.item import CalibrationItem
    from hybrid.routing.calibration.judge import Judge
    from hybrid.routing.names import CloudTarget
    from hybrid.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare ``--judge`` and ``--yes``."""
    parser.add_argument(
        "--judge",
        metavar="PROVIDER/MODEL",
        help="grade the items a rule can only approximate (summaries, free writing) through "
        "this configured cloud model, or a LAN server's (server/model); shows the estimated "
        "cost and asks first",
    )
    parser.add_argument(
        "--yes", action="store_true", help="run the judge without asking (needed without a tty)"
    )


@dataclass(frozen=True)
class JudgePlan:
    """What judging will do and cost.

    Attributes:
        target: The provider and model.
        items: How many items it grades.
        input_tokens: Input tokens at most.
        output_tokens: Output tokens at most.
        cost_usd: The cost of those tokens; None when the model has no known price.
        lan: The judge is a LAN server's model (``target.provider`` names the server), priced
            at ``lan.usd_per_1m_tokens``.
    """

    target: CloudTarget
    items: int
    input_tokens: int
    output_tokens: int
    cost_usd: float | None
    lan: bool = False

    def describe(self) -> str:
        """The sentence shown before asking."""
        tokens = f"about {self.input_tokens:,} input and {self.output_tokens:,} output tokens"
        if self.cost_usd is None:
            cost = (
                f"no price is known for {self.target.qualified}, so the cost cannot be "
                "estimated (add one under pricing.overrides)"
            )
        elif self.lan:
            cost = f"at most ${self.cost_usd:.4f} at lan.usd_per_1m_tokens"
        else:
            cost = f"at most ${self.cost_usd:.4f} at {self.target.qualified}'s list price"
        return (
            f"The judge {self.target.qualified} will grade {self.items} answers: {tokens}, {cost}."
        )


def plan_judge(
    name: str, settings: Settings, items: Sequence[CalibrationItem], *, answer_tokens: int
) -> JudgePlan:
    """Resolve ``--judge`` and estimate what it costs.

    Args:
        name: ``provider/model`` (or a model name a configured provider serves), or
            ``server/model`` for a LAN server's model.
        settings: The settings (providers, keys, price overrides).
        items: The calibration set.
        answer_tokens: The local model's output cap per answer.

    Returns:
        The plan.

    Raises:
        ConfigError: No configured provider or LAN server serves the model, or the provider
            has no key.
    """
    from hybrid.ledger.prices import PriceTable
    from hybrid.routing.calibration.judge import estimate_tokens, judged_items
    from hybrid.routing.names import CloudTarget, ModelNames

    input_tokens, output_tokens = estimate_tokens(items, answer_tokens=answer_tokens)
    server, _, model = name.partition("/")
    if model and any(entry.name == server for entry in settings.lan.servers):
        usd = settings.lan.usd_per_1m_tokens
        return JudgePlan(
            CloudTarget(server, model),
            len(judged_items(items)),
            input_tokens,
            output_tokens,
            usd * (input_tokens + output_tokens) / 1e6,
            lan=True,
        )
    names = ModelNames.from_settings(settings.cloud)
    target = names.target(name)
    if target is None:
        lan = [entry.name for entry in settings.lan.servers]
        servers = f", or server/model for a LAN server ({', '.join(lan)})" if lan else ""
        raise ConfigError(
            f"--judge {name!r} names no configured cloud model; use provider/model, e.g. "
            f"openai/gpt-4.1-mini or anthropic/claude-haiku-4-5{servers}"
        )
    if not names.usable(target.provider):
        raise ConfigError(
            f"--judge {target.qualified}: provider {target.provider!r} has no API key; set "
            f"its key (OPENAI_API_KEY, ANTHROPIC_API_KEY or the provider's api_key_env)"
        )
    price = PriceTable.shipped(settings.pricing.overrides).lookup(target.qualified)
    cost = None if price is None else price.cost(input_tokens, output_tokens)
    return JudgePlan(target, len(judged_items(items)), input_tokens, output_tokens, cost)


def confirm(plan: JudgePlan, *, assume_yes: bool, stdin: TextIO | None, out: TextIO) -> bool:
    """Show the plan and ask whether to go ahead.

    Args:
        plan: What judging will do and cost.
        assume_yes: ``--yes`` was given: go ahead without asking.
        stdin: Where the answer comes from; None, or a stream that is not a terminal, cannot
            be asked.
        out: Where the plan and the question go.

    Returns:
        True to go ahead; False when the user declined.

    Raises:
        ConfigError: There is no terminal to ask on and ``--yes`` was not given.
    """
    print(plan.describe(), file=out, flush=True)
    if assume_yes:
        return True
    if stdin is None or not stdin.isatty():
        raise ConfigError(
            f"--judge would send {plan.items} answers to {plan.target.qualified} and there is "
            "no terminal to confirm the cost on; pass --yes to go ahead"
        )
    print("Go ahead? [y/N] ", end="", file=out, flush=True)
    reply = stdin.readline().strip().lower()
    return reply in ("y", "yes")


def plan_and_confirm(
    args: argparse.Namespace, settings: Settings, seed: int, per_category: int
) -> JudgePlan | None:
    """Plan ``--judge`` for the set ``hybrid calibrate`` will run, and ask for consent.

    Args:
        args: The parsed flags (``--judge``, ``--yes``, ``--max-tokens``).
        settings: The settings.
        seed: The calibration set's seed.
        per_category: Its items per category.

    Returns:
        The plan; None when the user declined.

    Raises:
        ConfigError: The judge cannot be used, or cannot be confirmed (no terminal, no --yes).
    """
    import sys

    from hybrid.routing.calibration.items import calibration_set

    items = calibration_set(seed, per_category=per_category)
    plan = plan_judge(args.judge, settings, items, answer_tokens=args.max_tokens)
    agreed = confirm(plan, assume_yes=args.yes, stdin=sys.stdin, out=sys.stderr)
    return plan if agreed else None


@asynccontextmanager
async def open_judge(settings: Settings, plan: JudgePlan | None) -> AsyncIterator[Judge | None]:
    """The judge, over the configured provider's own HTTP client (a LAN server's: the LAN
    servers' client), closed on exit.

    Args:
        settings: The settings the providers are built from.
        plan: The judge chosen by :func:`plan_judge`; None for no judge.

    Yields:
        The judge, or None without a plan.
    """
    if plan is None:
        yield None
        return
    from hybrid.routing.calibration.judge import Judge
    from hybrid.service.providers import build_lan, build_providers

    if plan.lan:
        lan = build_lan(settings.lan, settings.cloud)
        assert lan is not None  # plan_judge found the server among them
        try:
            [server] = [s for s in lan.pool.servers if s.name == plan.target.provider]
            yield Judge(server.provider, plan.target.model)
        finally:
            await lan.pool.aclose()
        return
    pool = build_providers(settings.cloud)
    try:
        yield Judge(pool.providers[plan.target.provider], plan.target.model)
    finally:
        await pool.aclose()
