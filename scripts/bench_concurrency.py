"""The concurrent half of ``scripts/bench_local.py``: streams started together through any
OpenAI-compatible server, a conversation's second turn warm against cold, llama-cpp-python's
own server as the peer, and a server's resident memory.

At a concurrency of c, a level sends every prompt of `PROMPTS` once (some twice where c does
not divide their number), in waves of c streams started at the same moment (the next wave
starts when the whole wave has finished), so every level decodes the same text and only the
number of streams in flight differs. Each prompt
starts with a label unique to its round, level and place (`labelled`), the same on every
server: a server that keeps the KV cache of earlier prompts (hybrid's slots do) must still
prefill each one, as for a new request, rather than answer a repeated prompt from its cache.
For each level it keeps:

* aggregate tok/s: completion tokens / the waves' wall time, from the first request sent to
  the last stream closed (what a user of all the streams together sees);
* decode tok/s: tokens after each stream's first / the time from a wave's first streamed token
  to its last (prefill of the first request and the closing of the streams left out; a prompt
  that joins later is still inside it, as it is for the server);
* every stream's time to first token (TTFT), for p50 and p95.

A stream's tokens are the ``usage.completion_tokens`` the server reports
(``stream_options.include_usage``), or the number of chunks that carried text where it reports
none (llama-cpp-python's server sends one chunk per token).

The second turn: a system prompt and a user message of about 800 tokens, the answer (48
tokens), then a short question. Warm is that second turn sent right after the first; cold is
the same second turn with the system prompt's first character changed, so that no cache of the
server shares more than the chat template's first tokens with it.
"""

from __future__ import annotations

import asyncio
import math
import statistics
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import openai
import psutil  # type: ignore[import-untyped,unused-ignore]
from openai.types.chat import ChatCompletionMessageParam

# ``scripts/bench_local.py`` puts ``tests/helpers`` on ``sys.path`` before importing this.
from server_process import RunningServer, ServerNotReady, free_port, start_server

# Eight prompts that a base model continues for a while under greedy decoding; each level
# sends all of them, so levels are comparable.
PROMPTS = (
    "1, 2, 3, 4, 5,",
    "Once upon a time, in a small village by the sea, there lived",
    "The three most important inventions of the nineteenth century were",
    "def fibonacci(n):\n    ",
    "Monday: wake up at seven, make coffee, read the news. Tuesday:",
    "The recipe for a simple tomato soup starts with",
    "A list of the planets of the solar system, with one fact about each:\n1. Mercury:",
    "Dear team,\n\nThis week we shipped",
)


def labelled(prompt: str, label: str) -> str:
    """`prompt` behind a label that makes it new to a server that has seen `prompt` before."""
    return f"Sample {label}:\n{prompt}"


class BenchError(RuntimeError):
    """A server answered something the benchmark cannot measure (no text at all)."""


@dataclass(frozen=True)
class Stream:
    """One streamed completion, timed with ``time.perf_counter``.

    Attributes:
        sent: When the request was sent.
        first: When its first text arrived.
        last: When its last text arrived.
        done: When the stream closed.
        tokens: Completion tokens.
    """

    sent: float
    first: float
    last: float
    done: float
    tokens: int

    @property
    def ttft_s(self) -> float:
        return self.first - self.sent


@dataclass(frozen=True)
class Level:
    """Every stream of one concurrency level.

    Attributes:
        concurrency: Streams started together.
        streams: All streams of all its waves (and rounds).
        wall_s: Summed over waves: first request sent to last stream closed.
        decode_s: Summed over waves: first streamed token to last streamed token.
    """

    concurrency: int
    streams: tuple[Stream, ...]
    wall_s: float
    decode_s: float

    @property
    def tokens(self) -> int:
        return sum(s.tokens for s in self.streams)

    @property
    def aggregate_tps(self) -> float:
        return self.tokens / self.wall_s

    @property
    def decode_tps(self) -> float:
        return sum(s.tokens - 1 for s in self.streams) / self.decode_s

    def ttft_ms(self, quantile: float) -> float:
        """The nearest-rank `quantile` (0.5 = p50) of the streams' TTFT, in ms."""
        ordered = sorted(s.ttft_s for s in self.streams)
        rank = max(1, math.ceil(quantile * len(ordered)))
        return ordered[rank - 1] * 1000

    def merged(self, other: Level) -> Level:
        """This level and `other` (the same concurrency, a later round) as one."""
        return Level(
            self.concurrency,
            self.streams + other.streams,
            self.wall_s + other.wall_s,
            self.decode_s + other.decode_s,
        )


def client(base_url: str, timeout_s: float = 300.0) -> openai.AsyncOpenAI:
    """An SDK client for a server's ``/v1``: no retries (a failure must show), bounded waits."""
    return openai.AsyncOpenAI(
        base_url=f"{base_url}/v1", api_key="unused", max_retries=0, timeout=timeout_s
    )


async def stream_completion(
    api: openai.AsyncOpenAI, model: str, prompt: str, max_tokens: int
) -> Stream:
    """One greedy completion streamed from ``/v1/completions``.

    Raises:
        BenchError: The stream carried no text.
    """
    sent = time.perf_counter()
    first = last = 0.0
    chunks = 0
    reported: int | None = None
    stream = await api.completions.create(
        model=model,
        prompt=prompt,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            reported = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].text:
            last = time.perf_counter()
            if chunks == 0:
                first = last
            chunks += 1
    done = time.perf_counter()
    if chunks == 0:
        raise BenchError(f"{api.base_url} streamed no text for the prompt {prompt!r}")
    return Stream(sent, first, last, done, reported if reported is not None else chunks)


async def measure_level(
    api: openai.AsyncOpenAI, model: str, concurrency: int, max_tokens: int, label: str
) -> Level:
    """Every prompt of `PROMPTS`, `concurrency` streams at a time (see the module doc), each
    labelled with `label` and its place."""
    streams: list[Stream] = []
    wall = decode = 0.0
    for start in range(0, len(PROMPTS), concurrency):
        places = [(start + i) % len(PROMPTS) for i in range(concurrency)]
        prompts = [labelled(PROMPTS[n], f"{label}-{start + i}") for i, n in enumerate(places)]
        wave = await asyncio.gather(
            *(stream_completion(api, model, p, max_tokens) for p in prompts)
        )
        wall += max(s.done for s in wave) - min(s.sent for s in wave)
        decode += max(s.last for s in wave) - min(s.first for s in wave)
        streams.extend(wave)
    return Level(concurrency, tuple(streams), wall, decode)


async def warm_up(api: openai.AsyncOpenAI, model: str, concurrency: int) -> None:
    """A short wave at the largest concurrency: first-call allocations are not the subject."""
    await asyncio.gather(
        *(
            stream_completion(api, model, labelled(PROMPTS[i % len(PROMPTS)], f"w{i}"), 4)
            for i in range(concurrency)
        )
    )


# The first turn of the conversation: a system prompt and a user message of several hundred
# tokens (notes to summarise), so that a cold second turn has a long prefix to prefill.
_NOTES = "\n".join(
    f"Item {i}: the {colour} {thing} in room {100 + 7 * i} needs {task} before {day}."
    for i, (colour, thing, task, day) in enumerate(
        zip(
            ["red", "blue", "green", "grey", "white", "black", "yellow", "brown"] * 5,
            ["chair", "lamp", "desk", "window", "shelf", "door", "printer", "heater"] * 5,
            ["cleaning", "a repair", "new paint", "checking", "replacing", "moving"] * 7,
            ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday"] * 8,
            strict=False,
        ),
        start=1,
    )
)


@dataclass(frozen=True)
class SecondTurn:
    """A conversation's second turn asked warm (right after its first turn) and cold (the same
    turn with the system prompt's first character changed, a prompt no slot has seen).

    Attributes:
        warm_ttft_s: TTFT of the warm second turn.
        cold_ttft_s: TTFT of the cold one.
        prompt_tokens: The warm turn's prompt tokens, as the server reports them.
        cached_tokens: The warm turn's ``prompt_tokens_details.cached_tokens`` (None: not
            reported).
    """

    warm_ttft_s: float
    cold_ttft_s: float
    prompt_tokens: int | None
    cached_tokens: int | None


async def _chat(
    api: openai.AsyncOpenAI,
    model: str,
    messages: list[ChatCompletionMessageParam],
    max_tokens: int,
) -> tuple[float, str, Any]:
    """A greedy chat completion streamed; returns its TTFT, its text and its usage."""
    sent = time.perf_counter()
    first = 0.0
    parts: list[str] = []
    usage: Any = None
    stream = await api.chat.completions.create(
        model=model,
        messages=messages,
        max_tokens=max_tokens,
        temperature=0.0,
        stream=True,
        stream_options={"include_usage": True},
    )
    async for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        if chunk.choices and chunk.choices[0].delta.content:
            if not parts:
                first = time.perf_counter()
            parts.append(chunk.choices[0].delta.content)
    if not parts:
        raise BenchError(f"{api.base_url} streamed no text for a chat turn")
    return first - sent, "".join(parts), usage


async def second_turn(
    api: openai.AsyncOpenAI, model: str, session: int, answer_tokens: int
) -> SecondTurn:
    """Run a two-turn conversation and time its second turn warm, then the same turn cold.

    Args:
        api: The server's client.
        model: The model name to send.
        session: Makes this conversation's prompts new to the server (one per call).
        answer_tokens: The first turn's answer length in tokens.
    """
    system = f"Session {session}. You are a careful office assistant; answer in one sentence."
    first_turn: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": system},
        {"role": "user", "content": f"{_NOTES}\n\nWhich items are due before Tuesday?"},
    ]
    _, answer, _ = await _chat(api, model, first_turn, answer_tokens)
    follow_up: list[ChatCompletionMessageParam] = [
        {"role": "assistant", "content": answer},
        {"role": "user", "content": "Which room is the blue lamp in?"},
    ]
    warm_ttft, _, usage = await _chat(api, model, first_turn + follow_up, 4)
    cold_first: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "X" + system[1:]},
        first_turn[1],
    ]
    cold_ttft, _, _ = await _chat(api, model, cold_first + follow_up, 4)
    details = getattr(usage, "prompt_tokens_details", None)
    return SecondTurn(
        warm_ttft,
        cold_ttft,
        getattr(usage, "prompt_tokens", None),
        getattr(details, "cached_tokens", None),
    )


def median_ratio(pairs: Sequence[SecondTurn]) -> float:
    """Median over conversations of cold TTFT / warm TTFT."""
    return statistics.median(p.cold_ttft_s / p.warm_ttft_s for p in pairs)


def start_llama_server(
    model: Path, n_ctx: int, threads: int, kv_cache_type: str, log: Path
) -> RunningServer:
    """Start llama-cpp-python's own server on ``model`` (``--model_alias local``), with the
    context, threads, batch size and KV cache type (``f16`` or ``q8_0``, with flash
    attention) hybrid gets, and without ``interrupt_requests`` (which would cut a running
    stream off for each newcomer instead of making it wait its turn).

    Raises:
        SystemExit: It exited or was not ready in 180 s.
    """
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model),
        "--model_alias",
        "local",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_threads",
        str(threads),
        "--n_threads_batch",
        str(threads),
        "--n_batch",
        "512",
        "--interrupt_requests",
        "false",
        "--verbose",
        "false",
        *(f"--{key}={value}" for key, value in llama_kv_options(kv_cache_type).items()),
    ]
    try:
        return start_server(
            command,
            port=port,
            log=log,
            ready_path="/v1/models",
            timeout_s=180,
            what="llama_cpp.server",
        )
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc


def served_kv_cache_type(server: RunningServer) -> str:
    """The KV cache type hybrid's ``/health`` reports for its slots (``f16`` where it reports
    none)."""
    body = httpx2.get(f"{server.base_url}/health", timeout=10).json()
    slots = body.get("slots") if isinstance(body, dict) else None
    value = slots.get("kv_cache_type") if isinstance(slots, dict) else None
    return value if isinstance(value, str) else "f16"


def llama_kv_options(kv_cache_type: str) -> dict[str, Any]:
    """llama-cpp-python's ``Llama`` (and server) options for a KV cache of `kv_cache_type`."""
    if kv_cache_type == "q8_0":
        # 8 is GGML_TYPE_Q8_0; llama.cpp quantizes the V cache only with flash attention.
        return {"flash_attn": True, "type_k": 8, "type_v": 8}
    return {}


def idle_rss_mb(server: RunningServer, model: str) -> float:
    """The server's resident set in MB (10^6 bytes) after one short answer and a second idle."""
    with openai.OpenAI(
        base_url=f"{server.base_url}/v1", api_key="unused", max_retries=0, timeout=60
    ) as api:
        api.completions.create(model=model, prompt="Hello", max_tokens=2, temperature=0.0)
    time.sleep(1.0)
    return float(psutil.Process(server.process.pid).memory_info().rss) / 1e6


def memory_parts(server: RunningServer) -> str:
    """Where a server's resident set is, from ``/proc/<pid>/smaps`` (Linux; else a dash): the
    GGUF file mapped, anonymous memory (the weights when copied, the KV cache, the
    vocabulary, Python) with the part in huge pages, and other files (libraries)."""
    try:
        text = Path(f"/proc/{server.process.pid}/smaps").read_text(errors="replace")
    except OSError:
        return "-"
    totals = {"model": 0, "anonymous": 0, "huge": 0, "files": 0}
    kind = "files"
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        if ":" not in fields[0] and "-" in fields[0]:
            name = fields[5] if len(fields) > 5 else ""
            anonymous = name in ("", "[heap]", "[stack]")
            kind = "model" if name.endswith(".gguf") else "anonymous" if anonymous else "files"
        elif fields[0] == "Rss:":
            totals[kind] += int(fields[1]) * 1024
        elif fields[0] == "AnonHugePages:":
            totals["huge"] += int(fields[1]) * 1024
    mb = {key: value / 1e6 for key, value in totals.items()}
    return (
        f"model file mapped {mb['model']:.0f} MB, anonymous {mb['anonymous']:.0f} MB "
        f"({mb['huge']:.0f} MB in huge pages), libraries and other files {mb['files']:.0f} MB"
    )


def planned(server: RunningServer) -> str:
    """What ``/health`` says about slots and the KV cache (keys naming parallel, slot, kv or
    ctx), one ``key=value`` each, or a dash."""

    words = ("parallel", "slot", "kv", "ctx", "flash")

    def walk(node: Any, path: str) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                yield from walk(value, f"{path}.{key}" if path else str(key))
        elif any(word in path.rsplit(".", 1)[-1].lower() for word in words):
            yield f"{path}={node}"

    try:
        body = httpx2.get(f"{server.base_url}/health", timeout=10).json()
    except (httpx2.HTTPError, ValueError):
        return "-"
    return ", ".join(walk(body, "")) or "-"


async def measure_levels(
    hybrid: RunningServer, peer: RunningServer, levels: list[int], max_tokens: int, rounds: int
) -> dict[str, dict[int, Level]]:
    """Every level on both servers, round after round, alternating which server goes first.

    Returns:
        ``{"hybrid": {c: level}, "server": {c: level}}``, rounds merged.
    """
    results: dict[str, dict[int, Level]] = {"hybrid": {}, "server": {}}
    async with client(hybrid.base_url) as h_api, client(peer.base_url) as p_api:
        sides = [("hybrid", h_api), ("server", p_api)]
        for _, api in sides:
            await warm_up(api, "local", levels[-1])
        for round_ in range(rounds):
            for c in levels:
                for name, api in sides if round_ % 2 == 0 else sides[::-1]:
                    label = f"{round_ + 1}-{c}"
                    level = await measure_level(api, "local", c, max_tokens, label)
                    kept = results[name].get(c)
                    results[name][c] = kept.merged(level) if kept else level
                    print(
                        f"  round {round_ + 1} {name:6} c={c}: {level.aggregate_tps:6.1f} tok/s",
                        file=sys.stderr,
                    )
    return results


async def measure_turns(server: RunningServer, conversations: int) -> list[SecondTurn]:
    """`conversations` two-turn conversations through `server`, one after another."""
    async with client(server.base_url) as api:
        return [await second_turn(api, "local", n, 48) for n in range(conversations)]
