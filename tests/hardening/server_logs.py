"""Tracebacks a server running in this process logs, from any logger, while a block runs.

uvicorn's own loggers do not propagate to the root logger, so the handler listens on both.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

_LOGGERS = ("", "uvicorn")


class _Tracebacks(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info or record.stack_info:
            self.seen.append(f"{record.name}: {record.getMessage()}")


@contextlib.contextmanager
def logged_tracebacks() -> Iterator[list[str]]:
    """Yields the list the block's logged tracebacks go into, one line per record."""
    handler = _Tracebacks()
    for name in _LOGGERS:
        logging.getLogger(name).addHandler(handler)
    try:
        yield handler.seen
    finally:
        for name in _LOGGERS:
            logging.getLogger(name).removeHandler(handler)
