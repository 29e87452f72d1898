"""The responses of the generating routes: JSON, and SSE streams that stop when the client goes.

:class:`JsonResponse` renders with orjson, several times faster than the standard library's
encoder on an answer's body.

Starlette's ``StreamingResponse`` learns of a disconnect, under servers that speak ASGI 2.3 (as
uvicorn does), by running the stream and a ``receive`` listener in an anyio task group: a cancel
scope, two tasks and their bookkeeping for every streamed answer, all before its first token
leaves.  :class:`EventStreamResponse` does the same job with one plain task that waits for
``http.disconnect`` and cancels the stream, so the generation behind it stops within a token.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send


class EventStreamResponse(StreamingResponse):
    """A ``StreamingResponse`` whose stream is cancelled when the client disconnects."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        streaming = asyncio.current_task()
        assert streaming is not None
        disconnected = finished = False

        async def watch() -> None:
            nonlocal disconnected
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:  # a cancel that arrived after the end would hit someone else
                disconnected = True
                streaming.cancel()

        watcher = asyncio.get_running_loop().create_task(watch())
        try:
            await self.stream_response(send)
            finished = True
        except asyncio.CancelledError:
            if not disconnected:
                raise  # the server is shutting down, not the client leaving
            streaming.uncancel()
        finally:
            watcher.cancel()
        if self.background is not None:
            await self.background()


class JsonResponse(JSONResponse):
    """A JSON response rendered by orjson (UTF-8, compact, NaN as null)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
