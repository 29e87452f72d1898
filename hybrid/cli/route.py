"""``hybrid route``: where a prompt would go and why, decided by the server's own code.

``hybrid route "PROMPT"`` prints the decision and every policy's verdict. ``hybrid route
--jsonl`` reads JSON lines from stdin (``{"prompt": ...}`` or ``{"messages": [...]}``, optional
``max_tokens``) and writes one line per input: ``{"target", "score", "reasons"}``.  When the
difficulty policy decided, the printed decision and ``--json`` also say which of its stages did
(``feature``, ``model``: the probe on the local model's view, or ``feature_fallback``: the
probe could not run), and for a request kept local, whether the cascade will read its answer
(``routing.cascade``: on, with a cloud that can take it).  No server runs: the local model is
loaded here, to count tokens exactly as ``hybrid serve`` does, and to give its view of the
prompts the difficulty probe settles.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from hybrid.generation import GenerationRequest
    from hybrid.routing.answer import RoutePlan
    from hybrid.routing.dispatcher import Dispatcher
    from hybrid.settings import Settings

HELP = "show where a prompt would be routed, with every policy's verdict"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the flags of ``hybrid route``."""
    parser.add_argument("prompt", nargs="?", help="the prompt (a single user message)")
    parser.add_argument(
        "--jsonl",
        action="store_true",
        help='read {"prompt": ...} or {"messages": [...]} lines from stdin; write a JSON line each',
    )
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    parser.add_argument("--model", default="hybrid", help="the model name a client would send")
    parser.add_argument(
        "--route",
        choices=("auto", "local", "cloud", "lan"),  # answer.ROUTE_OVERRIDES, not imported here
        help="as the X-Hybrid-Route header",
    )
    parser.add_argument("--max-tokens", type=int, help="the request's max_tokens")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Route one prompt or a stream of JSON lines.

    Returns:
        0, or 1 when a JSON line could not be read (its output line says why).

    Raises:
        ConfigError: No prompt and no ``--jsonl`` (bad usage: exit 2).
    """
    if not args.jsonl and args.prompt is None:
        from hybrid.errors import ConfigError

        raise ConfigError('give a prompt (hybrid route "...") or use --jsonl')
    return asyncio.run(_run(args, settings))


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    from hybrid.errors import HybridError

    dispatcher, close = await _dispatcher(settings)
    try:
        if not args.jsonl:
            request = _request({"prompt": args.prompt, "max_tokens": args.max_tokens})
            plan = await dispatcher.plan(request, model=args.model, override=args.route)
            lan = lan_servers(dispatcher)
            read = dispatcher.reads_answer(request, plan)
            if args.json:
                print(json.dumps(_plan_json(plan, verdicts=True, lan=lan, read=read)))
            else:
                _print_plan(plan, sys.stdout, lan=lan, read=read)
            return 0
        failed = False
        for number, line in _lines(sys.stdin):
            try:
                request = _request(_parse(line, number))
                plan = await dispatcher.plan(request, model=args.model, override=args.route)
                print(json.dumps(_plan_json(plan, verdicts=False)), flush=True)
            except (ValueError, HybridError) as exc:
                failed = True
                print(json.dumps({"error": f"line {number}: {exc}"}), flush=True)
        return 1 if failed else 0
    finally:
        await close()


async def _dispatcher(settings: Settings) -> tuple[Dispatcher, Callable[[], Awaitable[None]]]:
    """The server's dispatcher (:func:`hybrid.service.build.build_dispatcher`), on the loaded
    local model and its calibration, with the LAN tier of ``[[lan.servers]]`` and no cloud
    provider: plans never call either, so nothing is sent.  Scores are read beside the
    labelled requests the ledger holds, as the server reads them (loaded once, here)."""
    from hybrid.hardware.probe import probe_for
    from hybrid.local.runtime import LocalRuntime
    from hybrid.routing.policies.difficulty import CalibratedModel
    from hybrid.service.build import build_dispatcher, labelled_memory
    from hybrid.service.providers import build_lan
    from hybrid.service.refitting import read_labelled

    probe = probe_for(settings.home)
    runtime = LocalRuntime.for_settings(settings, probe)
    calibration = CalibratedModel(settings.home, lambda: runtime.loaded_path)
    lan = build_lan(settings.lan, settings.cloud, settings.home)
    labelled = labelled_memory(settings)
    dispatcher = build_dispatcher(
        settings, runtime, calibration, load=probe.sample, lan=lan, labelled=labelled
    )

    async def close() -> None:
        try:
            await runtime.close()
        finally:
            if lan is not None:
                await lan.pool.aclose()

    try:
        await runtime.load()
        await asyncio.to_thread(calibration.look_up_now)
        sha256 = calibration.status().sha256
        if labelled is not None and sha256 is not None:
            source = settings.ledger.source(settings.home)
            await asyncio.to_thread(read_labelled, source, sha256, labelled)
    except BaseException:
        await close()
        raise
    return dispatcher, close


def _lines(stream: TextIO) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(stream, start=1):
        if line.strip():
            yield number, line


def _parse(line: str, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(value, dict):
        raise ValueError('expected an object like {"prompt": "..."}')
    return value


def _request(value: dict[str, Any]) -> GenerationRequest:
    from hybrid.generation import GenerationRequest, Message, SamplingParams

    max_tokens = value.get("max_tokens")
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ValueError("max_tokens must be a positive integer")
    params = SamplingParams(max_tokens=max_tokens)
    if "messages" in value:
        messages = value["messages"]
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list")
        parsed = []
        for message in messages:
            if not isinstance(message, dict) or not isinstance(message.get("content"), str):
                raise ValueError('each message needs a "role" and a string "content"')
            parsed.append(Message(str(message.get("role", "user")), message["content"]))
        return GenerationRequest("route", messages=tuple(parsed), params=params)
    prompt = value.get("prompt")
    if not isinstance(prompt, str):
        raise ValueError('expected "prompt" (a string) or "messages" (a list)')
    return GenerationRequest("route", messages=(Message("user", prompt),), params=params)


def lan_servers(dispatcher: Dispatcher) -> tuple[str, ...]:
    """The names of the LAN servers a request sent off the machine is offered first."""
    return dispatcher.lan_names


def _plan_json(
    plan: RoutePlan, *, verdicts: bool, lan: Sequence[str] = (), read: bool = False
) -> dict[str, Any]:
    """The plan as JSON; with ``verdicts``, also the stage, the model, the LAN servers tried
    first, whether the cascade reads the local answer (``read``) and every policy's verdict."""
    decision = plan.decision
    document: dict[str, Any] = {
        "target": _target(plan),
        "score": None if decision.score is None else round(decision.score, 4),
        "reasons": list(decision.reasons),
    }
    if verdicts:
        stage = _stage(plan)
        if stage is not None:
            document["stage"] = stage
        document["model"] = _model(plan)
        document["cascade"] = read
        if lan and decision.target == "cloud" and plan.mode != "cloud":
            document["lan_servers"] = list(lan)
        document["verdicts"] = [
            {"policy": v.policy, "outcome": v.outcome, "reason": v.reason, "score": v.score}
            for v in decision.verdicts
        ]
    return document


_STAGES = {
    "feature": "feature (the prompt's text features decided)",
    "model": "model (the local model's view of the prompt decided, with the features' score)",
    "feature_fallback": "feature (the model stage was asked but could not run)",
}


_NO_CLOUD = (
    "no cloud is configured, so the local model answers whatever the score says, and the "
    "model stage is not asked (it could not change the route)"
)


_CASCADE = (
    "routing.cascade reads the local answer first: declining, unsure or outside the options "
    "offered, it goes to {cloud}"
)


def _stage(plan: RoutePlan) -> str | None:
    """The difficulty stage that decided, when the difficulty policy decided."""
    from hybrid.routing.model_stage import stage_of

    return stage_of(plan.decision)


def _target(plan: RoutePlan) -> str:
    """Where the request goes: ``local``, ``cloud``, or ``lan`` (``X-Hybrid-Route: lan``)."""
    target = plan.decision.target
    return "lan" if target == "cloud" and plan.mode == "lan" else target


def _model(plan: RoutePlan) -> str | None:
    if _target(plan) == "lan":
        return None  # the LAN tier picks a server and model when the request is sent
    if plan.decision.target == "cloud":
        return plan.target.qualified if plan.target is not None else None
    return plan.local_model


def _print_plan(
    plan: RoutePlan, out: TextIO, *, lan: Sequence[str] = (), read: bool = False
) -> None:
    decision = plan.decision
    where = _model(plan) or "no cloud model configured"
    if _target(plan) == "lan":
        where = f"LAN servers: {', '.join(lan)}; never the cloud"
    elif lan and decision.target == "cloud" and plan.mode != "cloud":
        if plan.target is None:
            where = "the local model, as no cloud model is configured"
        where = f"LAN servers first: {', '.join(lan)}; then {where}"
    print(f"route:   {_target(plan)} ({where})", file=out)
    print(f"reason:  {'; '.join(decision.reasons)}", file=out)
    if decision.score is not None:
        print(f"score:   {decision.score:.3f}", file=out)
    stage = _stage(plan)
    if stage is not None:
        print(f"stage:   {_STAGES[stage]}", file=out)
    if decision.reasons and decision.reasons[0].startswith("local:no_cloud_configured"):
        print(f"note:    {_NO_CLOUD}", file=out)
    if decision.pinned:
        print("pinned:  private data: this request does not leave the machine", file=out)
    if read:
        off = [f"LAN servers: {', '.join(lan)}"] if lan else []
        if plan.target is not None:
            off.append(plan.target.qualified)
        print(f"then:    {_CASCADE.format(cloud='; then '.join(off))}", file=out)
    print(file=out)
    width = max((len(v.policy) for v in decision.verdicts), default=6)
    for verdict in decision.verdicts:
        print(f"  {verdict.policy:<{width}}  {verdict.outcome:<5}  {verdict.reason}", file=out)
