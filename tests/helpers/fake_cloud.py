"""The fake cloud: a real HTTP server on loopback speaking OpenAI's and Anthropic's wire formats,
and, with ``lan_kind``, a LAN inference server's health, model-list and load endpoints too.

One `FakeCloud` serves OpenAI's ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``
and Anthropic's ``/v1/messages`` on one port, with the APIs' exact JSON, SSE framing, error bodies
and headers, so that the official SDKs (and our providers) parse it as they parse the real thing
(`fake_cloud_answers`). It is the one fake upstream of the tests and of the benchmarks.

With ``lan_kind`` ("llama-server", "vllm", "ollama" or "hybrid") it is an OpenAI-compatible
server on the LAN that also reports its load the way that engine does (`fake_cloud_lan`)::

    llama-server  /health, /v1/health, /slots, /metrics, /models, /v1/models
    vllm          /health, /metrics, /v1/models
    ollama        /, /api/ps, /v1/models
    hybrid        /health, /metrics, /v1/models

Every path but the generation endpoints (POST chat, completions, messages) then gets the
engine's answer, its 404s included, and ``/v1/models`` lists `models` as the engine does. The
attributes `running`, `waiting`, `loading` and `loaded` set what it reports; a saturated server
is ``running = slots`` and ``waiting > 0``. The running count it reports adds the generation
requests being answered at that moment (`in_flight`) to `running`.

Faults (`fake_cloud_faults`) are queued with `FakeCloud.push` and consumed one per incoming
request, first in first out; while the queue is empty every request gets
`FakeCloud.default_fault`, and without one a normal answer. With ``lan_kind`` the queue and the
default fault are for generation requests only, so that a load or health probe running beside
a test does not take a fault meant for a chat. `FakeCloud.fail` sets a fault for every request
to one path until it is lifted, before the queue::

    429 rate limit (retry-after / retry-after-ms)  Fault.rate_limit(...)
    500 / 502 / 503 / 529 with the API's body      Fault.status(code)
    404 (the API's, or the LAN engine's)           Fault.not_found()
    401 even with the right key                    Fault.wrong_key()
    a redirect elsewhere                           Fault.redirect(location)
    a 200 with an HTML page                        Fault.html()
    silence for good (a black hole)                Fault.black_hole()
    the connection closed, unanswered              Fault.hang_up()
    silence before the status line                 Fault.slow_first_byte(delay_s)
    a pause before every piece of the body         Fault.slow_body(pause_s)
    silence mid-stream, then close                 Fault.stall(after_chunks, stall_s)
    TCP reset (RST) mid-stream or mid-body         Fault.reset(after_chunks)
    a clean end mid-stream, no finish or [DONE]    Fault.truncated(after_chunks)
    invalid JSON in a 200 body or a data: line     Fault.malformed()
    the API's error event mid-stream               Fault.stream_error(message, after_chunks)
    an answer naming another model                 Fault.wrong_model(name)
    connection refused                             closed_port()

Kept-alive connections can go stale as on a real server: with ``idle_close_s`` the fake closes
a connection idle that long after an answer, and with ``answers_per_connection`` it closes a
connection, unanswered, when a request arrives on it after that many answers (the race a client
loses when a server's idle close and its next request cross on the wire); `dropped` counts them.
Such a request is closed on as soon as its head is read, its body left unread: the fake never
acts on it, and a body larger than the sockets' buffers (a few MiB) is cut while the client is
still writing it, which is how a client can tell that the server never had the request.  A
request written whole before the close reached the client looks the same to it as one a server
read and then hung up on (`Fault.hang_up`).

Replies can depend on the prompt: `FakeCloud.replies` maps a piece of text to the reply a request
whose messages (or prompt) contain it gets instead of `FakeCloud.reply`; the first piece found, in
the mapping's order, wins. `FakeCloud.prompt_cache` scripts the provider's prompt cache,
`FakeCloud.tools` its tool calls and `FakeCloud.refusal` an OpenAI refusal (see
`fake_cloud_answers` and `fake_cloud_tools`), and `FakeCloud.thinking` what an Anthropic
answer thinks when its request turns extended thinking on (`fake_cloud_thinking`). Anthropic
requests are checked as Anthropic checks their turns: at least one message, none empty but a
final assistant one, no empty text block, at most four ``cache_control`` breakpoints, thinking
blocks sent back with their signatures (else its 400).

For benchmarks, ``replay=True`` builds the answer to a byte-identical request once and sends the
same bytes again (ids and timestamps repeat), so that the fake costs little more than reading a
request; faults still apply, and a LAN server's own endpoints are answered afresh every time.
`fake_cloud_process` runs it in a process of its own. ``GET /fake/stats`` answers
``{"requests": ..., "connections": ...}`` (requests recorded and connections accepted so far)
and is not recorded itself.

It is built on `asyncio.start_server` (`fake_cloud_http`) rather than uvicorn because stalls
and resets must happen on the real socket. The server runs its own event loop in a background
thread (`fake_cloud_loop`), so sync and async tests alike can drive it; every property,
attribute and method is safe to use from the test thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from fake_cloud_answers import Answer, Api, Json, PromptCache, Request, api_answer, request_text
from fake_cloud_faults import Fault, replacement, reshaped
from fake_cloud_http import deliver, json_response, read_request, send, whole_response
from fake_cloud_lan import (
    LAN_KINDS,
    LanKind,
    LanState,
    generates,
    lan_answer,
    lan_not_found,
    refusal,
)
from fake_cloud_loop import LoopbackServer, closed_port
from fake_cloud_thinking import Thinking, signature_of
from fake_cloud_tools import ScriptedCall, ToolScript

__all__ = [
    "FakeCloud",
    "Fault",
    "LanKind",
    "PromptCache",
    "Received",
    "ScriptedCall",
    "Thinking",
    "ToolScript",
    "closed_port",
    "signature_of",
]

# Faults that decide how (or whether) the bytes of an answer go out, rather than what it says.
_DELIVERY = frozenset({"stall", "reset", "slow_body", "black_hole", "hang_up"})
_STATS_PATH = "/fake/stats"


@dataclass(frozen=True)
class Received:
    """One request as the fake read it off the wire.

    `headers` has lower-case names; `body` is the parsed JSON object, or None when the body was
    empty, invalid or not an object; `at` is `time.monotonic()` when the request was read.
    """

    api: Api
    path: str
    headers: dict[str, str]
    body: Json | None
    at: float


class FakeCloud(LoopbackServer):
    """OpenAI's /v1/chat/completions, /v1/completions, /v1/models and Anthropic's /v1/messages
    on one loopback port, and with `lan_kind` a LAN engine's own endpoints.

    Use it as a context manager, or call `start` and `stop`. The OpenAI base URL is
    ``base_url + "/v1"``; the Anthropic one is `base_url` itself.

    Args:
        openai_key: The key OpenAI requests must carry (and, with `lan_kind`, the engine's
            guarded endpoints); None for a server that asks for no key.
        anthropic_key: The key Anthropic requests must carry.
        reply: The text every successful answer carries.
        models: What ``GET /v1/models`` lists (with `lan_kind`: the engine's models; Ollama's
            pulled ones).
        port: The loopback port to listen on; 0 for any free one.
        default_fault: The fault every request gets while no pushed fault is queued.
        idle_close_s: Close a kept-alive connection idle this long after an answer; None for
            never.
        answers_per_connection: Close a connection, unanswered, when a request arrives on it
            after this many answers; None for never.
        replay: Send a byte-identical request the bytes of the first one's answer.
        lan_kind: Also serve this LAN engine's health, model-list and load endpoints; None
            for the cloud alone.
        slots: With `lan_kind`: llama-server's ``--parallel``, hybrid's slots.
        metrics: With `lan_kind` "llama-server": started with ``--metrics``.

    Raises:
        ValueError: an unknown `lan_kind`, fewer than one slot, or no model for an engine
            that names one in its reports (vLLM, hybrid).
    """

    def __init__(
        self,
        *,
        openai_key: str | None = "sk-fake-openai",
        anthropic_key: str = "sk-ant-fake",
        reply: str = "Hello from the fake cloud.",
        models: Sequence[str] = ("gpt-4.1-mini", "gpt-4.1"),
        port: int = 0,
        default_fault: Fault | None = None,
        idle_close_s: float | None = None,
        answers_per_connection: int | None = None,
        replay: bool = False,
        lan_kind: LanKind | None = None,
        slots: int = 4,
        metrics: bool = True,
    ) -> None:
        super().__init__(port)
        if lan_kind is not None and lan_kind not in LAN_KINDS:
            raise ValueError(f"lan_kind {lan_kind!r} is none of {', '.join(LAN_KINDS)}, or None")
        if slots < 1:
            raise ValueError(f"a LAN server has at least one slot, not {slots}")
        if lan_kind in ("vllm", "hybrid") and not models:
            raise ValueError(f"a {lan_kind} server names its model: give at least one in models")
        self._openai_key = openai_key
        self._anthropic_key = anthropic_key
        self._models = tuple(models)
        self._idle_close_s = idle_close_s
        self._answers_per_connection = answers_per_connection
        self._replay = replay
        self._lan_kind: LanKind | None = lan_kind
        self._slots = slots
        self._metrics = metrics
        self.running = 0
        """With `lan_kind`: requests the server reports generating besides those in flight."""
        self.waiting = 0
        """With `lan_kind`: requests queued (llama-server's deferred, vLLM's waiting, hybrid's
        queue)."""
        self.loading = False
        """With `lan_kind` llama-server or hybrid: the model is loading (``/health`` 503)."""
        self.loaded: tuple[str, ...] = self._models[:1]
        """With `lan_kind` ollama: the models in memory (``/api/ps``)."""
        # The test thread and the server thread both touch what follows; only under the lock.
        self._lock = threading.Lock()
        self._reply = reply
        self._replies: dict[str, str] = {}
        self._tools = ToolScript()
        self._cache = PromptCache()
        self._refusal: str | None = None
        self._thinking = Thinking()
        self._default_fault = default_fault
        self._faults: deque[Fault] = deque()
        self._path_faults: dict[str, Fault] = {}
        self._requests: list[Received] = []
        self._connections = 0
        self._dropped = 0
        self._in_flight = 0
        self._replayed: dict[tuple[object, ...], tuple[Json | None, bytes]] = {}

    # --- what tests read and set

    @property
    def lan_kind(self) -> LanKind | None:
        """The LAN engine it also speaks as, or None."""
        return self._lan_kind

    @property
    def slots(self) -> int:
        """With `lan_kind`: the slots it reports."""
        return self._slots

    @property
    def in_flight(self) -> int:
        """Generation requests (chat, completion, message) being answered now."""
        with self._lock:
            return self._in_flight

    @property
    def openai_key(self) -> str | None:
        """The key OpenAI requests (and a LAN server's guarded endpoints) must carry as
        ``Authorization: Bearer``; None when any key or none will do."""
        return self._openai_key

    @property
    def anthropic_key(self) -> str:
        """The key Anthropic requests must carry as ``x-api-key`` (or Bearer)."""
        return self._anthropic_key

    def provider_env(self) -> dict[str, str]:
        """The ecosystem's variables that point OpenAI and Anthropic clients (hybrid among
        them) at this fake, with its keys (a placeholder where it asks for none)."""
        return {
            "OPENAI_API_KEY": self._openai_key or "sk-no-key-needed",
            "OPENAI_BASE_URL": f"{self.base_url}/v1",
            "ANTHROPIC_API_KEY": self._anthropic_key,
            "ANTHROPIC_BASE_URL": self.base_url,
        }

    @property
    def reply(self) -> str:
        """The text every successful answer carries (split into word chunks)."""
        with self._lock:
            return self._reply

    @reply.setter
    def reply(self, text: str) -> None:
        with self._lock:
            self._reply = text
            self._replayed.clear()

    @property
    def replies(self) -> dict[str, str]:
        """Replies by a piece of the request's text (see the module docstring); empty by default."""
        with self._lock:
            return dict(self._replies)

    @replies.setter
    def replies(self, by_text: dict[str, str]) -> None:
        with self._lock:
            self._replies = dict(by_text)
            self._replayed.clear()

    @property
    def tools(self) -> ToolScript:
        """The tool calls answers make to requests that offer the tools (none by default)."""
        with self._lock:
            return self._tools

    @tools.setter
    def tools(self, script: ToolScript) -> None:
        with self._lock:
            self._tools = script
            self._replayed.clear()

    @property
    def prompt_cache(self) -> PromptCache:
        """The prompt-cache tokens every plain answer reports (none by default)."""
        with self._lock:
            return self._cache

    @prompt_cache.setter
    def prompt_cache(self, cache: PromptCache) -> None:
        with self._lock:
            self._cache = cache
            self._replayed.clear()

    @property
    def refusal(self) -> str | None:
        """What OpenAI chat answers say as a refusal instead of a reply (Structured Outputs'
        ``message.refusal``, ``finish_reason: "stop"``); None (the default) for none."""
        with self._lock:
            return self._refusal

    @refusal.setter
    def refusal(self, text: str | None) -> None:
        with self._lock:
            self._refusal = text
            self._replayed.clear()

    @property
    def thinking(self) -> Thinking:
        """What Anthropic answers to requests with ``thinking`` enabled begin with (a signed
        thinking block; `Thinking` by default)."""
        with self._lock:
            return self._thinking

    @thinking.setter
    def thinking(self, thinking: Thinking) -> None:
        with self._lock:
            self._thinking = thinking
            self._replayed.clear()

    @property
    def default_fault(self) -> Fault | None:
        """The fault every request gets while no pushed fault is queued (None by default)."""
        with self._lock:
            return self._default_fault

    @default_fault.setter
    def default_fault(self, fault: Fault | None) -> None:
        with self._lock:
            self._default_fault = fault

    @property
    def models(self) -> tuple[str, ...]:
        """What ``GET /v1/models`` lists; set it to play a server restarted with other models."""
        with self._lock:
            return self._models

    @models.setter
    def models(self, models: Sequence[str]) -> None:
        with self._lock:
            self._models = tuple(models)

    @property
    def requests(self) -> list[Received]:
        """A copy of every request read so far, in order of arrival, faulted and dropped ones
        included."""
        with self._lock:
            return list(self._requests)

    @property
    def connections(self) -> int:
        """Connections accepted so far."""
        with self._lock:
            return self._connections

    @property
    def dropped(self) -> int:
        """Requests that arrived on a stale connection and were dropped with it, unanswered."""
        with self._lock:
            return self._dropped

    def push(self, *faults: Fault) -> None:
        """Queue faults; each incoming request (to any path; with `lan_kind`, each generation
        request) takes the oldest one."""
        with self._lock:
            self._faults.extend(faults)

    def fail(self, path: str, fault: Fault | None) -> None:
        """Answer every request to `path` with `fault`, before any queued one, until `reset` or
        ``fail(path, None)``."""
        with self._lock:
            if fault is None:
                self._path_faults.pop(path, None)
            else:
                self._path_faults[path] = fault

    def reset(self) -> None:
        """Forget queued and per-path faults, the default fault, recorded requests, scripted
        replies, tool calls, refusal and thinking, and the prompt cache; what a LAN server
        reports stays."""
        with self._lock:
            self._faults.clear()
            self._path_faults.clear()
            self._default_fault = None
            self._requests.clear()
            self._tools = ToolScript()
            self._cache = PromptCache()
            self._refusal = None
            self._thinking = Thinking()
            self._replies = {}
            self._replayed.clear()

    # --- the server thread

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with self._lock:
            self._connections += 1
        answered = 0
        while True:
            stale = answered == self._answers_per_connection
            request = await self._next_request(reader, answered, body=not stale)
            if request is None:
                return
            if stale:
                self._record(request, dropped=True)
                # Closed as if its idle timeout had struck just now; what is left of the body
                # on the socket makes the close a reset.
                return
            if not await self._exchange(request, reader, writer):
                return
            answered += 1

    async def _next_request(
        self, reader: asyncio.StreamReader, answered: int, *, body: bool
    ) -> Request | None:
        """The next request (its head only unless `body`), or None when the client closed the
        connection or it went idle past ``idle_close_s``."""
        if answered == 0 or self._idle_close_s is None:
            return await read_request(reader, body=body)
        try:
            return await asyncio.wait_for(read_request(reader, body=body), self._idle_close_s)
        except TimeoutError:
            return None

    def _record(self, request: Request, *, dropped: bool = False, body: Json | None = None) -> None:
        parsed = body if body is not None else request.json_body()
        received = Received(request.api, request.path, request.headers, parsed, time.monotonic())
        with self._lock:
            self._requests.append(received)
            self._dropped += dropped

    async def _exchange(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Record and answer one request; True if the connection stays open for the next."""
        if request.path == _STATS_PATH:
            with self._lock:
                stats = {"requests": len(self._requests), "connections": self._connections}
            return await send(writer, json_response(stats), request.keep_alive)
        if not generates(request):
            return await self._answer(request, reader, writer)
        with self._lock:
            self._in_flight += 1
        try:
            return await self._answer(request, reader, writer)
        finally:
            with self._lock:
                self._in_flight -= 1

    async def _answer(
        self, request: Request, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        lan = self._lan_kind is not None and not generates(request)
        with self._lock:
            fault = self._path_faults.get(request.path)
            if fault is None and not lan:
                fault = self._faults.popleft() if self._faults else self._default_fault
            replay_key = self._replay_key(request) if fault is None and not lan else None
            replayed = self._replayed.get(replay_key) if replay_key is not None else None
        if replayed is not None:
            self._record(request, body=replayed[0])
            return await send(writer, replayed[1], request.keep_alive)
        self._record(request)
        answer = self._build(request, fault, lan)
        if fault is None:
            data = whole_response(answer, request.keep_alive)
            if replay_key is not None:
                with self._lock:
                    self._replayed[replay_key] = (request.json_body(), data)
            return await send(writer, data, request.keep_alive)
        if fault.kind == "black_hole":
            while await reader.read(65536):
                pass  # silent until the client leaves (or stop() cancels this)
            return False
        if fault.kind == "hang_up":
            return False
        if fault.kind == "slow_first_byte":
            await asyncio.sleep(fault.delay_s)
        answer = reshaped(answer, request.api, fault)
        if fault.kind not in _DELIVERY:
            return await send(
                writer, whole_response(answer, request.keep_alive), request.keep_alive
            )
        return await deliver(answer, writer, fault, request.keep_alive)

    def _build(self, request: Request, fault: Fault | None, lan: bool) -> Answer:
        """The answer `request` earns, or the one `fault` puts in its place."""
        if fault is not None and fault.kind == "not_found" and lan and self._lan_kind:
            return lan_not_found(self._lan_kind, request.path)
        if fault is not None and (replaced := replacement(request, fault)) is not None:
            return replaced
        state = self._lan_state()
        if state is not None and lan:
            authorization = request.headers.get("authorization")
            keyed = self._openai_key is None or authorization == f"Bearer {self._openai_key}"
            return lan_answer(state, request, keyed)
        if state is not None and (refused := refusal(state, request)) is not None:
            return refused
        with self._lock:
            reply, tools, cache, refusing = self._reply, self._tools, self._cache, self._refusal
            thinking = self._thinking
            replies = list(self._replies.items())
        text = request_text(request.json_body())
        return api_answer(
            request,
            key=self._anthropic_key if request.api == "anthropic" else self._openai_key,
            models=self._models,
            reply=next((r for piece, r in replies if piece in text), reply),
            tools=tools,
            cache=cache,
            refuse_key=fault is not None and fault.kind == "wrong_key",
            answer_model=fault.model if fault is not None and fault.kind == "wrong_model" else None,
            refusal=refusing,
            thinking=thinking,
        )

    def _lan_state(self) -> LanState | None:
        if self._lan_kind is None:
            return None
        with self._lock:
            in_flight = self._in_flight
        return LanState(
            self._lan_kind,
            self._models,
            self._slots,
            self._metrics,
            self.running + in_flight,
            self.waiting,
            self.loading,
            tuple(self.loaded),
        )

    def _replay_key(self, request: Request) -> tuple[object, ...] | None:
        if not self._replay:
            return None
        headers = request.headers
        return (
            request.method,
            request.path,
            request.keep_alive,
            headers.get("authorization"),
            headers.get("x-api-key"),
            headers.get("anthropic-version"),
            request.raw_body,
        )
