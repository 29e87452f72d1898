"""Stopping work whose client has gone away.

A streamed response is cancelled by Starlette when the client disconnects.  A non-streamed one
is not: the route would keep the model busy, or a cloud call running, for an answer nobody will
read.  :func:`unless_disconnected` races the work (starting the answer and reading it whole)
against the client's disconnect message and cancels whichever loses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from starlette.requests import ClientDisconnect
from starlette.types import Receive

T = TypeVar("T")


async def unless_disconnected(receive: Receive, work: Coroutine[Any, Any, T]) -> T:
    """Run ``work`` unless the client disconnects first.

    Args:
        receive: The request's ASGI receive channel (its body already read).
        work: The coroutine producing the response.

    Returns:
        What ``work`` returns.

    Raises:
        ClientDisconnect: The client went away; ``work`` was cancelled.
    """
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_wait_for_disconnect(receive))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnect()
    return task.result()


async def _wait_for_disconnect(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
