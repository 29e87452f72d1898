"""The fake cloud: a real HTTP server on loopback speaking OpenAI's and Anthropic's wire formats.

One `FakeCloud` serves OpenAI's ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models``
and Anthropic's ``/v1/messages`` on one port, with the APIs' exact JSON, SSE framing, error bodies
and headers, so that the official SDKs (and our providers) parse it as they parse the real thing
(`fake_cloud_answers`). It is the one fake upstream of the tests and of the benchmarks.

Faults (`fake_cloud_faults`) are queued with `FakeCloud.push` and consumed one per incoming
request, first in first out; while the queue is empty every request gets
`FakeCloud.default_fault`, and without one a normal answer::

    429 rate limit (retry-after / retry-after-ms)  Fault.rate_limit(...)
    500 / 502 / 503 / 529 with the API's body      Fault.status(code)
    401 even with the right key                    Fault.wrong_key()
    a redirect elsewhere                           Fault.redirect(location)
    silence for good (a black hole)                Fault.black_hole()
    the connection closed, unanswered              Fault.hang_up()
    silence before the status line                 Fault.slow_first_byte(delay_s)
    a pause before every piece of the body         Fault.slow_body(pause_s)
    silence mid-stream, then close                 Fault.stall(after_chunks, stall_s)
    TCP reset (RST) mid-stream                     Fault.reset(after_chunks)
    invalid JSON in a 200 body or a data: line     Fault.malformed()
    the API's error event mid-stream               Fault.stream_error(message, after_chunks)
    connection refused                             closed_port()

Kept-alive connections can go stale as on a real server: with ``idle_close_s`` the fake closes
a connection idle that long after an answer, and with ``answers_per_connection`` it closes a
connection, unanswered, when a request arrives on it after that many answers (the race a client
loses when a server's idle close and its next request cross on the wire); `dropped` counts them.

Replies can depend on the prompt: `FakeCloud.replies` maps a piece of text to the reply a request
whose messages (or prompt) contain it gets instead of `FakeCloud.reply`; the first piece found, in
the mapping's order, wins. `FakeCloud.prompt_cache` scripts the provider's prompt cache and
`FakeCloud.tools` its tool calls (see `fake_cloud_answers` and `fake_cloud_tools`).

For benchmarks, ``replay=True`` builds the answer to a byte-identical request once and sends the
same bytes again (ids and timestamps repeat), so that the fake costs little more than reading a
request; faults still apply. `fake_cloud_process` runs it in a process of its own.
``GET /fake/stats`` answers ``{"requests": ..., "connections": ...}`` (API requests recorded and
connections accepted so far) and is not recorded itself.

It is built on `asyncio.start_server` (`fake_cloud_http`) rather than uvicorn because stalls
and resets must happen on the real socket. The server runs its own event loop in a background
thread, so sync and async tests alike can drive it; every property and method is safe to use
from the test thread.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from types import TracebackType

from fake_cloud_answers import (
    Api,
    Json,
    PromptCache,
    Request,
    api_answer,
    fault_answer,
    request_text,
)
from fake_cloud_faults import Fault
from fake_cloud_http import deliver, json_response, read_request, send, whole_response
from fake_cloud_tools import ScriptedCall, ToolScript

__all__ = [
    "FakeCloud",
    "Fault",
    "PromptCache",
    "Received",
    "ScriptedCall",
    "ToolScript",
    "closed_port",
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


def closed_port() -> int:
    """A loopback port with nothing listening, so connecting to it is refused.

    Returns:
        A port the OS just handed out and released; nothing in the test run binds it again
        unless it asks the OS for any free port and is given this one.
    """
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FakeCloud:
    """OpenAI's /v1/chat/completions, /v1/completions, /v1/models and Anthropic's /v1/messages
    on one loopback port.

    Use it as a context manager, or call `start` and `stop`. The OpenAI base URL is
    ``base_url + "/v1"``; the Anthropic one is `base_url` itself.

    Args:
        openai_key: The key OpenAI requests must carry.
        anthropic_key: The key Anthropic requests must carry.
        reply: The text every successful answer carries.
        models: What ``GET /v1/models`` lists.
        port: The loopback port to listen on; 0 for any free one.
        default_fault: The fault every request gets while no pushed fault is queued.
        idle_close_s: Close a kept-alive connection idle this long after an answer; None for
            never.
        answers_per_connection: Close a connection, unanswered, when a request arrives on it
            after this many answers; None for never.
        replay: Send a byte-identical request the bytes of the first one's answer.
    """

    def __init__(
        self,
        *,
        openai_key: str = "sk-fake-openai",
        anthropic_key: str = "sk-ant-fake",
        reply: str = "Hello from the fake cloud.",
        models: Sequence[str] = ("gpt-4.1-mini", "gpt-4.1"),
        port: int = 0,
        default_fault: Fault | None = None,
        idle_close_s: float | None = None,
        answers_per_connection: int | None = None,
        replay: bool = False,
    ) -> None:
        self._openai_key = openai_key
        self._anthropic_key = anthropic_key
        self._models = tuple(models)
        self._wanted_port = port
        self._idle_close_s = idle_close_s
        self._answers_per_connection = answers_per_connection
        self._replay = replay
        # The test thread and the server thread both touch what follows; only under the lock.
        self._lock = threading.Lock()
        self._reply = reply
        self._replies: dict[str, str] = {}
        self._tools = ToolScript()
        self._cache = PromptCache()
        self._default_fault = default_fault
        self._faults: deque[Fault] = deque()
        self._requests: list[Received] = []
        self._connections = 0
        self._dropped = 0
        self._replayed: dict[tuple[object, ...], tuple[Json | None, bytes]] = {}
        # Only the server thread touches these.
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._port: int | None = None

    # --- lifecycle, called from the test thread

    def start(self) -> FakeCloud:
        """Listen on the loopback port, serving from a background thread.

        Returns:
            self, listening once this returns.

        Raises:
            RuntimeError: already started.
            OSError: the port asked for is taken.
        """
        if self._thread is not None:
            raise RuntimeError("this FakeCloud is already running; stop() it first")
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-cloud", daemon=True)
        thread.start()
        listen = asyncio.start_server(self._serve, "127.0.0.1", self._wanted_port, backlog=4096)
        try:
            server = asyncio.run_coroutine_threadsafe(listen, loop).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()
            raise
        self._loop, self._thread, self._server = loop, thread, server
        self._port = int(server.sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Stop listening and drop open connections (stalled ones included); a no-op when not
        running. Afterwards connecting to `port` is refused."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    def __enter__(self) -> FakeCloud:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # --- what tests read and set

    @property
    def port(self) -> int:
        """The port it listens on (kept after `stop`, when it refuses connections).

        Raises:
            RuntimeError: never started.
        """
        if self._port is None:
            raise RuntimeError("FakeCloud has no port until start() is called")
        return self._port

    @property
    def openai_key(self) -> str:
        """The key OpenAI requests must carry as ``Authorization: Bearer``."""
        return self._openai_key

    @property
    def anthropic_key(self) -> str:
        """The key Anthropic requests must carry as ``x-api-key`` (or Bearer)."""
        return self._anthropic_key

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: Anthropic's base URL; OpenAI's is this plus ``/v1``."""
        return f"http://127.0.0.1:{self.port}"

    def provider_env(self) -> dict[str, str]:
        """The ecosystem's variables that point OpenAI and Anthropic clients (hybrid among
        them) at this fake, with its keys."""
        return {
            "OPENAI_API_KEY": self._openai_key,
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
    def default_fault(self) -> Fault | None:
        """The fault every request gets while no pushed fault is queued (None by default)."""
        with self._lock:
            return self._default_fault

    @default_fault.setter
    def default_fault(self, fault: Fault | None) -> None:
        with self._lock:
            self._default_fault = fault

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
        """Queue faults; each incoming request (to any path) takes the oldest one."""
        with self._lock:
            self._faults.extend(faults)

    def reset(self) -> None:
        """Forget queued faults, the default fault, recorded requests, scripted replies and
        tool calls, and the prompt cache."""
        with self._lock:
            self._faults.clear()
            self._default_fault = None
            self._requests.clear()
            self._tools = ToolScript()
            self._cache = PromptCache()
            self._replies = {}
            self._replayed.clear()

    # --- the server thread

    async def _shutdown(self) -> None:
        assert self._server is not None
        self._server.close()
        await asyncio.sleep(0)  # a connection accepted just now registers its handler first
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._server.wait_closed()
        await asyncio.sleep(0)  # aborted transports close their sockets on the next turn

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        with self._lock:
            self._connections += 1
        answered = 0
        try:
            while (request := await self._next_request(reader, answered)) is not None:
                if answered == self._answers_per_connection:
                    self._record(request, dropped=True)
                    break  # closed as if its idle timeout had struck just now
                if not await self._exchange(request, reader, writer):
                    break
                answered += 1
            writer.close()
        except (
            asyncio.CancelledError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
        ):
            # Cancelled by stop(), or the client went away or spoke garbage: drop the socket.
            # CancelledError is swallowed because asyncio logs it as an error from a
            # client_connected_cb task, and the task ends here either way.
            writer.transport.abort()
        finally:
            self._tasks.discard(task)

    async def _next_request(self, reader: asyncio.StreamReader, answered: int) -> Request | None:
        """The next request, or None when the client closed the connection or it went idle
        past ``idle_close_s``."""
        if answered == 0 or self._idle_close_s is None:
            return await read_request(reader)
        try:
            return await asyncio.wait_for(read_request(reader), self._idle_close_s)
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
        with self._lock:
            fault = self._faults.popleft() if self._faults else self._default_fault
            replay_key = self._replay_key(request) if fault is None else None
            replayed = self._replayed.get(replay_key) if replay_key is not None else None
            reply, tools, cache = self._reply, self._tools, self._cache
            replies = list(self._replies.items())
        if replayed is not None:
            self._record(request, body=replayed[0])
            return await send(writer, replayed[1], request.keep_alive)
        self._record(request)
        text = request_text(request.json_body())
        reply = next((r for piece, r in replies if piece in text), reply)
        answer = fault_answer(request.api, fault) if fault else None
        if answer is None:
            answer = api_answer(
                request,
                key=self._anthropic_key if request.api == "anthropic" else self._openai_key,
                models=self._models,
                reply=reply,
                tools=tools,
                cache=cache,
                refuse_key=fault is not None and fault.kind == "wrong_key",
            )
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
        if fault.kind == "malformed":
            answer = answer.malformed(fault.after_chunks)
        if fault.kind == "stream_error":
            answer = answer.broken_off(request.api, fault)
        if fault.kind not in _DELIVERY:
            return await send(
                writer, whole_response(answer, request.keep_alive), request.keep_alive
            )
        return await deliver(answer, writer, fault, request.keep_alive)

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
