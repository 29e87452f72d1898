"""Benchmark: raw llama-cpp-python in-process against the same model through ``hybrid serve``.

Both sides get the same prompts, greedy decoding, the same max tokens, the same context size,
thread count and batch size, in one run, alternating so that neither gets a warmer machine.
The ratios are medians over pairs: each hybrid run against the raw run of the same prompt in
the same round.
For each it prints time to first token (TTFT) and decode speed, then the ratios:

    decode ratio   = hybrid decode tok/s / raw decode tok/s       (target >= 0.97)
    TTFT overhead  = hybrid TTFT - raw TTFT, in ms                (target < 5 ms)

Usage:
    python scripts/bench_local.py [--rounds 3] [--max-tokens 128] [--threads N] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import openai

# The subprocess server helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from server_process import (
    RunningServer,
    ServerNotReady,
    free_port,
    hybrid_serve,
    start_server,
)

PROMPTS = [
    "1, 2, 3, 4, 5,",
    "Once upon a time, in a small village by the sea, there lived",
    "The three most important inventions of the nineteenth century were",
    "def fibonacci(n):\n    ",
]


@dataclass(frozen=True)
class Run:
    ttft_s: float
    decode_tokens_per_s: float
    tokens: int


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
    return Run(first - started, (chunks - 1) / (last - first), chunks)


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
    return Run(first - started, (tokens - 1) / (last - first), tokens)


def start_hybrid(
    model: Path, n_ctx: int, threads: int, home: Path, environ: dict[str, str] | None = None
) -> RunningServer:
    """Start ``hybrid serve`` on ``model`` and wait until it is ready; ``environ`` is added to
    the environment (with no other ``HYBRID_`` variable from this one). Its output goes to
    ``home/server.log``.

    Raises:
        SystemExit: It exited or was not ready in 180 s (the message holds its log's tail).
    """
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HYBRID_")}
    env["HYBRID_HOME"] = str(home)
    env["HYBRID_LOG_LEVEL"] = "warning"
    env.update(environ or {})
    flags = ["--model", str(model), "--ctx", str(n_ctx), "--threads", str(threads)]
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


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--ctx", type=int, default=2048)
    # One core is left to the benchmark's own client and the server's event loop, so that what
    # is measured is hybrid's overhead rather than three parties fighting over every core.
    parser.add_argument("--threads", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    parser.add_argument("--model", type=Path, help="GGUF file (default: the embedded model)")
    args = parser.parse_args()

    from llama_cpp import Llama

    from hybrid.hardware.cpu import SystemCpuSource
    from hybrid.models.embedded import ensure_embedded_model

    home = Path(tempfile.mkdtemp(prefix="hybrid-bench-"))
    model = args.model or ensure_embedded_model(home, progress=lambda m: print(m, file=sys.stderr))
    llama = Llama(
        model_path=str(model),
        n_ctx=args.ctx,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        n_batch=512,
        verbose=False,
    )
    server = start_hybrid(model, args.ctx, args.threads, home)
    api = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0)
    raw: list[Run] = []
    served: list[Run] = []
    try:
        raw_run(llama, PROMPTS[0], 8)  # warm both sides: first-call allocations are not the subject
        hybrid_run(api, PROMPTS[0], 8)
        for round_ in range(args.rounds):
            for prompt in PROMPTS:
                # Alternate which side goes first so neither always gets the cooler machine.
                if round_ % 2 == 0:
                    raw.append(raw_run(llama, prompt, args.max_tokens))
                    served.append(hybrid_run(api, prompt, args.max_tokens))
                else:
                    served.append(hybrid_run(api, prompt, args.max_tokens))
                    raw.append(raw_run(llama, prompt, args.max_tokens))
    finally:
        server.stop(grace_s=60)

    def median(runs: list[Run], field: str) -> float:
        return statistics.median(getattr(r, field) for r in runs)

    raw_ttft, hyb_ttft = median(raw, "ttft_s") * 1000, median(served, "ttft_s") * 1000
    raw_tps, hyb_tps = median(raw, "decode_tokens_per_s"), median(served, "decode_tokens_per_s")
    cpu = SystemCpuSource().read()
    print(
        f"machine: {cpu.model} ({cpu.arch}), {cpu.physical_cores} physical / "
        f"{cpu.logical_cores} logical cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}"
    )
    print(
        f"model: {model.name}  n_ctx={args.ctx} threads={args.threads} "
        f"max_tokens={args.max_tokens} runs per side={len(raw)} (median)"
    )
    print(f"{'':24}{'TTFT ms':>10}{'decode tok/s':>15}")
    print(f"{'(a) llama-cpp-python':24}{raw_ttft:>10.1f}{raw_tps:>15.1f}")
    print(f"{'(b) hybrid serve + SDK':24}{hyb_ttft:>10.1f}{hyb_tps:>15.1f}")
    # Each hybrid run is paired with the raw run of the same prompt in the same round: the
    # median of the pairs cancels slow drifts of the machine that medians per side keep.
    ratio = statistics.median(
        b.decode_tokens_per_s / a.decode_tokens_per_s for a, b in zip(raw, served, strict=True)
    )
    overhead = statistics.median(
        (b.ttft_s - a.ttft_s) * 1000 for a, b in zip(raw, served, strict=True)
    )
    print(f"decode ratio b/a (median of paired runs): {ratio:.3f} (target >= 0.97)")
    print(f"TTFT overhead b-a (median of paired runs): {overhead:+.1f} ms (target < 5 ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
