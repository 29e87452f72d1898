"""``DaemonClient``: the monitor's only way to the daemon, over HTTP (docs/events.md).

Every failure to talk to the daemon (refused connection, dropped stream, wrong key, a server
that is not hybrid) becomes one :class:`DaemonUnreachable` whose message says what happened
and what to do; httpx2's exceptions never leave this module.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import AsyncIterator
from types import TracebackType

import httpx2
from pydantic import SecretStr

from hybrid.errors import HybridError
from hybrid.monitor.wire import (
    MODES,
    Fleet,
    MalformedEventError,
    Stats,
    parse_fleet,
    parse_stats,
)
from hybrid.wire.sse import SseParser

EVENTS_PATH = "/v1/hybrid/events"
STATS_PATH = "/v1/hybrid/stats"
MODE_PATH = "/v1/hybrid/mode"
FEEDBACK_PATH = "/v1/hybrid/feedback"
HEALTH_PATH = "/health"
MODEL_PATH = "/v1/hybrid/model"

# The daemon pings every 15 s (docs/events.md); three missed pings mean the stream is dead even
# if the socket says otherwise (a suspended laptop, a half-open connection).
IDLE_TIMEOUT_S = 45.0
CONNECT_TIMEOUT_S = 2.0
REQUEST_TIMEOUT_S = 10.0


class DaemonUnreachable(HybridError):
    """The monitor cannot talk to the daemon: not running, unreachable, refusing, or not hybrid.

    Attributes:
        url: The daemon's base URL.
    """

    def __init__(self, url: str, message: str) -> None:
        super().__init__(message)
        self.url = url


class FeedbackRefused(HybridError):
    """The daemon refused a label: it holds no such request, or the request has no answer."""


class DaemonClient:
    """An async client for ``hybrid serve``'s admin API.

    Usage::

        async with DaemonClient("http://127.0.0.1:8642", api_key) as daemon:
            async for name, data in daemon.events():
                ...
            await daemon.set_mode("local-only")

    The client holds one ``httpx2.AsyncClient``; :meth:`aclose` (or leaving the ``async with``)
    closes it.
    """

    def __init__(
        self,
        base_url: str,
        api_key: SecretStr | str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        *,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        """Create a client; nothing is sent yet.

        Args:
            base_url: The daemon, ``http://127.0.0.1:8642``; a trailing ``/`` or ``/v1`` is
                dropped, so the URL clients use for the OpenAI API works too.
            api_key: ``server.api_key``, sent as ``Authorization: Bearer``; None when the
                daemon needs none.
            transport: The HTTP transport; None for a real connection (tests pass an
                ``httpx2.MockTransport``).
            idle_timeout_s: How long the event stream may stay silent (no event, no ping)
                before it counts as dropped.
        """
        self.url = _normalize(base_url)
        key = api_key.get_secret_value() if isinstance(api_key, SecretStr) else api_key
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        self._idle_timeout_s = idle_timeout_s
        self._http = httpx2.AsyncClient(
            base_url=self.url,
            headers=headers,
            transport=transport,
            timeout=httpx2.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            # A daemon on this machine is reached directly, whatever proxy a corporate
            # laptop's HTTP_PROXY names (it would not reach 127.0.0.1); one on another
            # machine goes through the environment's proxies like any other address.
            trust_env=not _is_loopback(httpx2.URL(self.url).host),
        )

    async def events(self) -> AsyncIterator[tuple[str, object]]:
        """Follow ``GET /v1/hybrid/events``.

        Yields:
            ``(name, data)`` for each event as soon as it is complete: the ``event:`` name
            (``message`` when there is none) and the decoded JSON of its data, or the raw
            text when the data is not JSON (the caller's parser reports it).  Pings are not
            yielded.

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused the request, or the
                stream ended or went silent.  The stream never ends normally: it lasts as long
                as the daemon does.
        """
        # The read timeout applies to each read from the socket, so pings keep it from firing
        # on a quiet daemon, and a dead connection is noticed within idle_timeout_s.
        timeout = httpx2.Timeout(
            REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S, read=self._idle_timeout_s
        )
        try:
            async with self._http.stream(
                "GET", EVENTS_PATH, headers={"Accept": "text/event-stream"}, timeout=timeout
            ) as response:
                await self._check(response, EVENTS_PATH)
                content_type = response.headers.get("content-type", "")
                if not content_type.startswith("text/event-stream"):
                    raise DaemonUnreachable(
                        self.url,
                        f"{self.url}{EVENTS_PATH} answered {content_type or 'no content type'}, "
                        f"not an event stream: is {self.url} a hybrid daemon?",
                    )
                parser = SseParser()
                async for chunk in response.aiter_bytes():
                    for event in parser.feed(chunk):
                        yield event.event or "message", _decode(event.data)
        except httpx2.ReadTimeout as exc:
            raise DaemonUnreachable(
                self.url,
                f"the daemon at {self.url} sent nothing for {self._idle_timeout_s:g} s "
                f"(not even a ping)",
            ) from exc
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except UnicodeDecodeError as exc:
            raise DaemonUnreachable(
                self.url, f"the event stream of {self.url} is not UTF-8 text: is it hybrid?"
            ) from exc
        # An event cut off by the end of the stream is dropped: its JSON would be incomplete.
        raise DaemonUnreachable(
            self.url, f"the daemon at {self.url} closed the event stream (is it restarting?)"
        )

    async def stats(self) -> Stats:
        """Read ``GET /v1/hybrid/stats``.

        Returns:
            Today's and all-time totals, the budget, the mode and the model.

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused, or sent another shape.
        """
        try:
            response = await self._http.get(STATS_PATH)
            await self._check(response, STATS_PATH)
            return parse_stats(response.json())
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except (ValueError, MalformedEventError) as exc:
            raise DaemonUnreachable(
                self.url, f"{self.url}{STATS_PATH} sent a body the monitor cannot read ({exc})"
            ) from exc

    async def fleet(self) -> Fleet:
        """Read ``GET /v1/hybrid/stats?by=instance``: every daemon writing the ledger.

        Returns:
            Whether the ledger is shared, and each daemon's totals and newest record.

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused (a shared ledger's
                database that is down answers 503: its message says so), or sent another
                shape.
        """
        try:
            response = await self._http.get(STATS_PATH, params={"by": "instance"})
            await self._check(response, STATS_PATH)
            return parse_fleet(response.json())
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except (ValueError, MalformedEventError) as exc:
            raise DaemonUnreachable(
                self.url, f"{self.url}{STATS_PATH} sent a body the monitor cannot read ({exc})"
            ) from exc

    async def health(self) -> object:
        """Read ``GET /health`` (the body of its 503 too: the model is loading or failed).

        Returns:
            The decoded JSON body.

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused, or sent no JSON.
        """
        try:
            response = await self._http.get(HEALTH_PATH)
            if response.status_code != 503:
                await self._check(response, HEALTH_PATH)
            body: object = response.json()
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except ValueError as exc:
            raise DaemonUnreachable(
                self.url, f"{self.url}{HEALTH_PATH} sent a body the monitor cannot read ({exc})"
            ) from exc
        return body

    async def set_mode(self, mode: str) -> str:
        """Set the routing mode with ``POST /v1/hybrid/mode``.

        Args:
            mode: One of :data:`~hybrid.monitor.wire.MODES`.

        Returns:
            The mode the daemon confirms (the one asked for when its answer does not say).

        Raises:
            ValueError: ``mode`` is not one of the modes.
            DaemonUnreachable: The daemon cannot be reached or refused the change.
        """
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        try:
            response = await self._http.post(MODE_PATH, json={"mode": mode})
            await self._check(response, MODE_PATH)
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        try:
            body = response.json()
        except ValueError:
            return mode
        confirmed = body.get("mode") if isinstance(body, dict) else None
        return confirmed if isinstance(confirmed, str) else mode

    async def local_models(self) -> tuple[str, list[str]]:
        """The served local model and the names it can switch to, from
        ``GET /v1/hybrid/model``.

        Raises:
            DaemonUnreachable: The daemon cannot be reached, refused, or sent no such list.
        """
        try:
            response = await self._http.get(MODEL_PATH)
            await self._check(response, MODEL_PATH)
            body = response.json()
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except ValueError as exc:
            raise DaemonUnreachable(self.url, f"{self.url}{MODEL_PATH} sent no JSON") from exc
        models = body.get("available") if isinstance(body, dict) else None
        if not isinstance(models, list):
            raise DaemonUnreachable(self.url, f"{self.url}{MODEL_PATH} lists no models")
        names = [
            m["name"] for m in models if isinstance(m, dict) and isinstance(m.get("name"), str)
        ]
        current = body.get("model")
        return (current if isinstance(current, str) else "", names)

    async def switch_model(self, name: str) -> str:
        """Ask the daemon to switch the local model with ``POST /v1/hybrid/model``.

        Returns:
            The model now loading (``name`` when the answer does not say).

        Raises:
            DaemonUnreachable: The daemon cannot be reached or refused (its message says why).
        """
        try:
            response = await self._http.post(MODEL_PATH, json={"model": name})
            if response.status_code in (400, 404, 409):
                raise DaemonUnreachable(self.url, _error_message(response))
            await self._check(response, MODEL_PATH)
            body = response.json()
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        except ValueError:
            return name
        loading = body.get("loading") if isinstance(body, dict) else None
        model = loading.get("model") if isinstance(loading, dict) else None
        return model if isinstance(model, str) else name

    async def send_feedback(self, request_id: str, good: bool) -> str | None:
        """Label the answer to a request with ``POST /v1/hybrid/feedback``.

        Args:
            request_id: The request's id.
            good: Whether its answer was good enough.

        Returns:
            None when a refit can learn from the label; otherwise why not (the daemon's
            ``message``: a cloud answer, prompt features not kept, and what to change).

        Raises:
            FeedbackRefused: The daemon holds no such request, or it has no answer to label;
                the message is the daemon's.
            DaemonUnreachable: The daemon cannot be reached, or refused the monitor.
        """
        try:
            response = await self._http.post(
                FEEDBACK_PATH, json={"request_id": request_id, "good": good}
            )
            if response.status_code in (400, 404):
                raise FeedbackRefused(_error_message(response))
            await self._check(response, FEEDBACK_PATH)
        except httpx2.HTTPError as exc:
            raise self._unreachable(exc) from exc
        try:
            body = response.json()
        except ValueError:
            return None
        if not isinstance(body, dict):
            return None
        message = body.get("message")
        if isinstance(message, str) and message:
            return message
        if body.get("about_local") is False:  # a daemon from before "message"
            return "it says nothing about the local model"
        return None

    async def aclose(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        await self._http.aclose()

    async def __aenter__(self) -> DaemonClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _check(self, response: httpx2.Response, path: str) -> None:
        """Raise DaemonUnreachable unless ``response`` is a 2xx."""
        if response.is_success:
            return
        status = response.status_code
        if status in (401, 403):
            message = (
                f"the daemon at {self.url} refused the monitor's key (HTTP {status}); set "
                f"server.api_key (or HYBRID_SERVER__API_KEY) to the key `hybrid serve` uses"
            )
        elif status == 404:
            message = (
                f"{self.url} has no {path} (HTTP 404): it is not a hybrid daemon, or one too "
                f"old for the monitor; upgrade hybrid and restart `hybrid serve`"
            )
        else:
            body = (await response.aread()).decode("utf-8", "replace").strip()
            detail = f": {body[:200]}" if body else ""
            message = f"the daemon at {self.url} answered HTTP {status} to {path}{detail}"
        raise DaemonUnreachable(self.url, message)

    def _unreachable(self, exc: httpx2.HTTPError) -> DaemonUnreachable:
        if isinstance(exc, httpx2.ConnectError | httpx2.ConnectTimeout):
            return DaemonUnreachable(
                self.url,
                f"cannot reach the hybrid daemon at {self.url} ({_reason(exc)}); start it with "
                f"`hybrid serve`, or point the monitor at it with --url",
            )
        if isinstance(exc, httpx2.TimeoutException):
            return DaemonUnreachable(
                self.url, f"the daemon at {self.url} did not answer in time ({_reason(exc)})"
            )
        return DaemonUnreachable(
            self.url, f"the connection to the daemon at {self.url} dropped ({_reason(exc)})"
        )


def _error_message(response: httpx2.Response) -> str:
    """The message of an error body in OpenAI's shape, else the body's start."""
    try:
        body = response.json()
        message = body["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return response.text[:200] or f"HTTP {response.status_code}"
    return str(message)


def _decode(data: str) -> object:
    try:
        decoded: object = json.loads(data)
    except ValueError:
        return data
    return decoded


def _normalize(base_url: str) -> str:
    url = base_url.strip().rstrip("/")
    return url.removesuffix("/v1")


def _reason(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__


def _is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine: ``localhost`` or a loopback address."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
