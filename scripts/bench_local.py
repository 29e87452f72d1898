"""Benchmark: the local model through ``hybrid serve``, alone and with concurrent streams,
against raw llama-cpp-python and llama-cpp-python's own server, in one run.

Part 1, single stream: raw llama-cpp-python in-process against the same model through
``hybrid serve``. Both sides get the same prompts, greedy decoding, the same max tokens, the
same context size, thread count and batch size, alternating so that neither gets a warmer
machine. The ratios are medians over pairs: each hybrid run against the raw run of the same
prompt in the same round.

    decode ratio   = hybrid decode tok/s / raw decode tok/s       (target >= 0.97)
    TTFT overhead  = hybrid TTFT - raw TTFT, in ms                (target < 5 ms)

Part 2, concurrency: at each concurrency c, c streams started at once through ``hybrid serve``
(``local.parallel`` = the largest c) and through ``python -m llama_cpp.server`` (which answers
one request at a time), with the same client code (the openai SDK), prompts and max tokens (see
``scripts/bench_concurrency.py`` for what is measured). The ratios:

    scaling        = hybrid aggregate tok/s at max c / hybrid at c=1          (target >= 1.7)
    vs server      = hybrid aggregate tok/s at max c / llama_cpp.server's     (target >= 1.7)

Part 3, prefix reuse: a conversation's second turn, right after its first (warm), against the
same prompt with the system prompt's first character changed (cold), through hybrid (and
llama_cpp.server, shown beside it):

    second turn    = cold TTFT / warm TTFT, median over conversations         (target >= 5)

Memory: the resident set at idle after loading of ``hybrid serve`` with ``local.parallel`` = 1
and the context and threads it plans (target <= 400 MB), and of the server measured above, each
split (on Linux) into the model file mapped, anonymous memory (and its part in huge pages: the
weights, where hybrid copies them there) and libraries.

Everything runs on loopback; every request has a max_tokens and a timeout. About 7 minutes on
two cores with the defaults; ``--quick`` (one round each, 32 tokens) takes about 2.

Usage:
    python scripts/bench_local.py [--concurrency 1,2,4,8] [--rounds 3] [--max-tokens 128]
        [--concurrency-rounds 2] [--conversations 3] [--kv-cache-type auto|f16|q8_0]
        [--threads N] [--ctx 2048] [--model PATH] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import psutil  # type: ignore[import-untyped,unused-ignore]

# The subprocess server helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
import bench_concurrency as conc
from server_process import (
    RunningServer,
    ServerNotReady,
    free_port,
    hybrid_serve,
    start_server,
)

PROMPTS = list(conc.PROMPTS[:4])
# What hybrid is told besides its flags: no background calibration competing for the cores
# while a peer is measured, and the machine's load never routes a request elsewhere.
QUIET = {
    "HYBRID_ROUTING__CALIBRATION__BACKGROUND": "false",
    "HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT": "100",
}
RSS_TARGET_MB = 400


@dataclass(frozen=True)
class Run:
    """One single-stream completion: TTFT, decode speed after the first token, tokens, and
    the time from the call to the last token."""

    ttft_s: float
    decode_tokens_per_s: float
    tokens: int
    wall_s: float


def raw_run(llama: object, prompt: str, max_tokens: int) -> Run:
    """One streamed greedy completion straight from llama-cpp-python."""
    started = time.perf_counter()
    first = last = 0.0
    chunks = 0
    for _ in llama.create_completion(  # type: ignore[attr-defined]
        prompt, max_tokens=max_tokens, temperature=0.0, stream=True
    ):
        last = time.perf_counter()
        if chunks == 0:
            first = last
        chunks += 1
    return Run(first - started, (chunks - 1) / (last - first), chunks, last - started)


def hybrid_run(api: openai.OpenAI, prompt: str, max_tokens: int) -> Run:
    """The same completion streamed through hybrid serve with the openai SDK."""
    started = time.perf_counter()
    first = last = 0.0
    seen_text = False
    tokens = 0
    stream = api.completions.create(
        model="local",
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
            if not seen_text:
                first, seen_text = last, True
    return Run(first - started, (tokens - 1) / (last - first), tokens, last - started)


def start_hybrid(
    model: Path,
    n_ctx: int | None,
    threads: int | None,
    home: Path,
    environ: dict[str, str] | None = None,
) -> RunningServer:
    """Start ``hybrid serve`` on ``model`` and wait until it is ready; ``environ`` is added to
    the environment (with no other ``HYBRID_`` variable from this one). Its output goes to
    ``home/server.log``. A context or thread count of None is left to hybrid's plan.

    Raises:
        SystemExit: It exited or was not ready in 180 s (the message holds its log's tail).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    env["HYBRID_HOME"] = str(home)
    env["HYBRID_LOG_LEVEL"] = "warning"
    env.update(environ or {})
    flags = ["--model", str(model)]
    flags += ["--ctx", str(n_ctx)] if n_ctx is not None else []
    flags += ["--threads", str(threads)] if threads is not None else []
    try:
        return start_server(
            hybrid_serve(port, *flags),
            port=port,
            log=home / "server.log",
            env=env,
            timeout_s=180,
            what="hybrid serve",
        )
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc


def concurrency_list(text: str) -> list[int]:
    """Parse ``--concurrency``: comma-separated positive integers that include 1."""
    try:
        levels = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError:
        levels = []
    if not levels or levels[0] < 1 or levels[-1] > 64:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give stream counts from 1 to 64 separated by commas, e.g. 1,2,4,8"
        )
    if levels[0] != 1:
        raise argparse.ArgumentTypeError(
            f"{text!r}: include 1, the single-stream baseline the ratios divide by (e.g. 1,{text})"
        )
    return levels


def machine_line() -> str:
    """CPU, cores, memory, OS, Python and llama-cpp-python, on one line."""
    import llama_cpp

    from hybrid.hardware.cpu import SystemCpuSource

    cpu = SystemCpuSource().read()
    ram = psutil.virtual_memory().total / 2**30
    return (
        f"machine: {cpu.model} ({cpu.arch}), {cpu.physical_cores} physical / "
        f"{cpu.logical_cores} logical cores, {ram:.1f} GiB RAM, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"llama-cpp-python {llama_cpp.__version__}"
    )


def single_stream(llama: object, api: openai.OpenAI, rounds: int, max_tokens: int) -> PairedRuns:
    """Part 1: raw and hybrid runs of every prompt, alternating which side goes first."""
    raw: list[Run] = []
    served: list[Run] = []
    # Warm both sides: first-call allocations are not the subject.
    raw_run(llama, conc.labelled(PROMPTS[0], "w"), 8)
    hybrid_run(api, conc.labelled(PROMPTS[0], "w"), 8)
    for round_ in range(rounds):
        # Labelled per round: hybrid's slots keep earlier prompts' KV caches, and a repeated
        # prompt would be answered from them where raw llama-cpp-python prefills it again.
        for n, text in enumerate(PROMPTS):
            prompt = conc.labelled(text, f"s{round_ + 1}-{n}")
            # Alternate which side goes first so neither always gets the cooler machine.
            if round_ % 2 == 0:
                raw.append(raw_run(llama, prompt, max_tokens))
                served.append(hybrid_run(api, prompt, max_tokens))
            else:
                served.append(hybrid_run(api, prompt, max_tokens))
                raw.append(raw_run(llama, prompt, max_tokens))
    return PairedRuns(tuple(raw), tuple(served))


@dataclass(frozen=True)
class PairedRuns:
    """Part 1's runs, raw and hybrid, in the same order (pair i = the same prompt and round)."""

    raw: tuple[Run, ...]
    served: tuple[Run, ...]

    def median(self, side: str, field: str) -> float:
        return float(statistics.median(getattr(r, field) for r in getattr(self, side)))

    def decode_ratio(self) -> float:
        # Each hybrid run is paired with the raw run of the same prompt in the same round: the
        # median of the pairs cancels slow drifts of the machine that medians per side keep.
        return statistics.median(
            b.decode_tokens_per_s / a.decode_tokens_per_s
            for a, b in zip(self.raw, self.served, strict=True)
        )

    def ttft_overhead_ms(self) -> float:
        return statistics.median(
            (b.ttft_s - a.ttft_s) * 1000 for a, b in zip(self.raw, self.served, strict=True)
        )


def report(
    args: argparse.Namespace,
    pairs: PairedRuns,
    levels: dict[str, dict[int, conc.Level]],
    turns: dict[str, list[conc.SecondTurn]],
    memory: dict[str, tuple[str, float, str, str]],
) -> None:
    """Print the three parts, the memory, and the summary of ratios against their targets."""
    top = args.concurrency[-1]
    print(
        f"settings: n_ctx={args.ctx} per slot, threads={args.threads}, "
        f"max_tokens={args.max_tokens}, greedy; hybrid local.parallel={top}, "
        f"local.kv_cache_type={args.kv_cache_type}: {args.served_kv} KV cache, the same for "
        "llama_cpp.server and raw llama-cpp-python"
    )
    print(
        "\n## Single stream: raw llama-cpp-python vs hybrid serve (median of "
        f"{len(pairs.raw)} runs per side)"
    )
    print(f"{'':24}{'TTFT ms':>10}{'decode tok/s':>15}")
    for label, side in (("(a) llama-cpp-python", "raw"), ("(b) hybrid serve + SDK", "served")):
        ttft, tps = pairs.median(side, "ttft_s") * 1000, pairs.median(side, "decode_tokens_per_s")
        print(f"{label:24}{ttft:>10.1f}{tps:>15.1f}")
    print(f"decode ratio b/a (median of paired runs): {pairs.decode_ratio():.3f} (target >= 0.97)")
    print(
        f"TTFT overhead b-a (median of paired runs): {pairs.ttft_overhead_ms():+.1f} ms "
        "(target < 5 ms)"
    )

    hyb, peer = levels["hybrid"], levels["server"]
    raw_tps = sum(r.tokens for r in pairs.raw) / sum(r.wall_s for r in pairs.raw)
    raw_ttft = pairs.median("raw", "ttft_s") * 1000
    print(
        f"\n## Concurrent streams ({len(conc.PROMPTS)} requests per level per round, "
        f"{args.concurrency_rounds} round(s); tok/s = all completion tokens / wall time)\n"
    )
    print(
        "| streams | hybrid tok/s | hybrid decode tok/s | hybrid TTFT p50 / p95 ms "
        "| llama_cpp.server tok/s | llama_cpp.server TTFT p50 / p95 ms | hybrid / server |"
    )
    print("|---|---|---|---|---|---|---|")
    print(
        f"| 1 (raw llama-cpp-python, in-process) | {raw_tps:.1f} | "
        f"{pairs.median('raw', 'decode_tokens_per_s'):.1f} | {raw_ttft:.0f} / - | | | |"
    )
    for c in args.concurrency:
        h, p = hyb[c], peer[c]
        print(
            f"| {c} | {h.aggregate_tps:.1f} | {h.decode_tps:.1f} | "
            f"{h.ttft_ms(0.5):.0f} / {h.ttft_ms(0.95):.0f} | {p.aggregate_tps:.1f} | "
            f"{p.ttft_ms(0.5):.0f} / {p.ttft_ms(0.95):.0f} | "
            f"{h.aggregate_tps / p.aggregate_tps:.2f}x |"
        )

    print(
        f"\n## A conversation's second turn: right after its first (warm) and with the system "
        f"prompt's first character changed (cold); median of {args.conversations}"
    )
    for name, label in (("hybrid", "hybrid serve"), ("server", "llama_cpp.server")):
        runs = turns[name]
        warm = statistics.median(t.warm_ttft_s for t in runs) * 1000
        cold = statistics.median(t.cold_ttft_s for t in runs) * 1000
        cached = [t.cached_tokens for t in runs]
        print(
            f"{label}: warm TTFT {warm:.0f} ms, cold {cold:.0f} ms, cold / warm "
            f"{conc.median_ratio(runs):.1f}x; warm prompt tokens "
            f"{[t.prompt_tokens for t in runs]}, reported cached {cached}"
        )

    print("\n## Memory (resident set at idle after loading)")
    for label, mb, plan, parts in memory.values():
        print(f"{label}: {mb:.0f} MB   /health: {plan}\n    {parts}")

    scaling = hyb[top].aggregate_tps / hyb[1].aggregate_tps
    versus = hyb[top].aggregate_tps / peer[top].aggregate_tps
    rss_one, rss_top = memory["one"][1], memory["top"][1]
    rows = [
        (f"hybrid tok/s at {top} streams / at 1", f"{scaling:.2f}x", ">= 1.7x"),
        (f"hybrid / llama_cpp.server tok/s at {top} streams", f"{versus:.2f}x", ">= 1.7x"),
        (
            "hybrid decode / raw llama-cpp-python, 1 stream",
            f"{pairs.decode_ratio():.3f}",
            ">= 0.97",
        ),
        ("hybrid TTFT - raw TTFT, 1 stream", f"{pairs.ttft_overhead_ms():+.1f} ms", "< 5 ms"),
        ("second turn TTFT cold / warm", f"{conc.median_ratio(turns['hybrid']):.1f}x", ">= 5x"),
        (
            "hybrid serve RSS, 1 slot, planned context",
            f"{rss_one:.0f} MB",
            f"<= {RSS_TARGET_MB} MB",
        ),
        (f"hybrid serve RSS, {top} slots x {args.ctx} tokens", f"{rss_top:.0f} MB", "-"),
    ]
    print("\n## Ratios\n\n| measure | this run | target |\n|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


def parse_args() -> argparse.Namespace:
    """The command line, with ``--quick``'s shorter run applied."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="single-stream rounds")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=2048, help="context per slot")
    # One core is left to the benchmark's own client and the server's event loop, so that what
    # is measured is hybrid's overhead rather than three parties fighting over every core.
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    parser.add_argument(
        "--concurrency",
        type=concurrency_list,
        default=concurrency_list("1,2,4,8"),
        help="streams started at once, comma-separated, 1 included (default 1,2,4,8)",
    )
    parser.add_argument("--concurrency-rounds", type=int, default=2)
    parser.add_argument("--conversations", type=int, default=3, help="second turns timed")
    parser.add_argument("--kv-cache-type", choices=("auto", "f16", "q8_0"), default="auto")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short run that checks everything works: 1 round each, 32 tokens",
    )
    args = parser.parse_args()
    if args.quick:
        args.rounds = args.concurrency_rounds = args.conversations = 1
        args.max_tokens = min(args.max_tokens, 32)
    for name in ("rounds", "concurrency_rounds", "conversations", "threads"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.max_tokens < 2:
        parser.error("--max-tokens must be at least 2 (decode speed needs two tokens)")
    if args.ctx < 256:
        parser.error("--ctx must be at least 256 tokens")
    return args


def main() -> int:
    args = parse_args()
    from llama_cpp import Llama

    from hybrid.models.embedded import ensure_embedded_model

    top = args.concurrency[-1]
    home = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))
    servers: list[RunningServer] = []

    def hybrid(parallel: int, planned: bool = False) -> RunningServer:
        """``hybrid serve`` with `parallel` slots: the benchmark's context and threads, or
        (`planned`) the ones hybrid plans, as a user who sets nothing gets them."""
        environ = {
            **QUIET,
            "HYBRID_LOCAL__PARALLEL": str(parallel),
            "HYBRID_LOCAL__KV_CACHE_TYPE": args.kv_cache_type,
        }
        folder = home / f"parallel-{parallel}{'-planned' if planned else ''}"
        folder.mkdir()
        ctx, threads = (None, None) if planned else (args.ctx, args.threads)
        server = start_hybrid(model, ctx, threads, folder, environ)
        servers.append(server)
        return server

    try:
        print(machine_line())
        model = args.model or ensure_embedded_model(
            home, progress=lambda m: print(m, file=sys.stderr)
        )
        print(f"model: {model.name}")
        memory: dict[str, tuple[str, float, str, str]] = {}
        print("memory at one slot ...", file=sys.stderr)
        one = hybrid(1, planned=True)
        memory["one"] = (
            "hybrid serve, local.parallel=1, context and threads planned",
            conc.idle_rss_mb(one, "local"),
            conc.planned(one),
            conc.memory_parts(one),
        )
        one.stop(grace_s=60)
        print(
            f"starting hybrid serve (local.parallel={top}) and llama_cpp.server ...",
            file=sys.stderr,
        )
        served = hybrid(top)
        memory["top"] = (
            f"hybrid serve, local.parallel={top}, n_ctx={args.ctx} per slot",
            conc.idle_rss_mb(served, "local"),
            conc.planned(served),
            conc.memory_parts(served),
        )
        # The peers get the KV cache hybrid planned, so that what differs is how they serve.
        args.served_kv = kv = conc.served_kv_cache_type(served)
        peer = conc.start_llama_server(
            model, args.ctx, args.threads, kv, home / "llama_cpp.server.log"
        )
        servers.append(peer)
        memory["peer"] = (
            f"llama_cpp.server, n_ctx={args.ctx}",
            conc.idle_rss_mb(peer, "local"),
            "-",
            conc.memory_parts(peer),
        )
        llama = Llama(
            model_path=str(model),
            n_ctx=args.ctx,
            n_threads=args.threads,
            n_threads_batch=args.threads,
            n_batch=512,
            verbose=False,
            **conc.llama_kv_options(kv),
        )
        print("single stream: raw vs hybrid ...", file=sys.stderr)
        with openai.OpenAI(
            base_url=f"{served.base_url}/v1", api_key="unused", max_retries=0, timeout=300
        ) as api:
            pairs = single_stream(llama, api, args.rounds, args.max_tokens)
        del llama  # its memory and threads are not needed any more
        print("concurrent streams ...", file=sys.stderr)
        levels = asyncio.run(
            conc.measure_levels(
                served, peer, args.concurrency, args.max_tokens, args.concurrency_rounds
            )
        )
        print("second turns ...", file=sys.stderr)
        turns = {
            name: asyncio.run(conc.measure_turns(server, args.conversations))
            for name, server in (("hybrid", served), ("server", peer))
        }
    except (openai.APIError, conc.BenchError) as exc:
        logs = "\n".join(f"--- {s.log}\n{s.output(20)}" for s in servers)
        raise SystemExit(f"the benchmark failed: {exc}\n{logs}") from exc
    finally:
        for server in servers:
            server.stop(grace_s=60)
        shutil.rmtree(home, ignore_errors=True)
    report(args, pairs, levels, turns, memory)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
