"""``hybrid pull REPO[:QUANT|FILE]``: download a GGUF model from the Hugging Face hub.

The file goes into the shared Hugging Face cache (``HF_HUB_CACHE``, ``HF_HOME/hub``, else
``~/.cache/huggingface/hub``), where ``hybrid models``, ``huggingface_hub`` and llama.cpp find it;
see :mod:`hybrid.models.pull`.  A progress bar goes to stderr; at the end, stdout says where the
file is and the ``hybrid serve --model NAME`` line that serves it: a name that picks this file
and no other (an Ollama ``hf.co/`` copy of the same repository shares its plain name), else the
path.  ``HF_TOKEN``, ``HF_ENDPOINT``
and the proxy variables (``HTTPS_PROXY``, ...) are honoured.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from hybrid.models.pull import DownloadProgress, FreeSpace, PullResult
    from hybrid.settings import Settings

HELP = "download a GGUF model from the Hugging Face hub (REPO[:QUANT|FILE])"

_REDRAW_S = 0.1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Declare the arguments of ``hybrid pull``."""
    parser.add_argument(
        "model",
        nargs="?",
        metavar="REPO[:QUANT|FILE]",
        help="a repository of GGUF files, e.g. bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M, "
        "or ...:Qwen2.5-1.5B-Instruct-Q4_K_M.gguf",
    )
    parser.add_argument(
        "--revision", default="main", help="branch, tag or commit to pull (default: main)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Pull the model and say how to serve it.

    Returns:
        0 when the model is in the cache.

    Raises:
        ConfigError: The argument is not ``org/name[:QUANT|FILE]``, or ``HF_ENDPOINT`` is
            malformed.
        ModelDownloadError: The pull failed (the message says why and what to do).
    """
    if not args.model:
        from hybrid.errors import ConfigError

        raise ConfigError(
            "name the repository to pull: hybrid pull org/name[:QUANT|FILE] "
            "(run `hybrid recommend` for suggestions)"
        )
    return pull_command(
        args.model,
        settings,
        revision=args.revision,
        environ=os.environ,
        out=sys.stdout,
        err=sys.stderr,
        quiet=bool(args.quiet),
    )


def pull_command(
    spec: str,
    settings: Settings,
    *,
    revision: str,
    environ: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    quiet: bool = False,
    free_space: FreeSpace | None = None,
    sleep: Callable[[float], None] | None = None,
) -> int:
    """Parse ``spec``, pull it, and print where it went and how to serve it.

    Args:
        spec: ``REPO[:QUANT|FILE]``.
        settings: Used to find a name that ``hybrid serve --model`` resolves to the pulled file.
        revision: Branch, tag or commit.
        environ: ``HF_*`` and proxy variables.
        out: Receives the result.
        err: Receives progress and notices.
        quiet: No progress bar.
        free_space: Free-space check to use instead of the file system's (tests).
        sleep: Waits between retries (tests pass one that returns at once).

    Returns:
        0.

    Raises:
        ConfigError: ``spec`` or ``HF_ENDPOINT`` is malformed.
        ModelDownloadError: The pull failed.
    """
    from hybrid.models.pull import pull
    from hybrid.models.pull_cache import free_bytes
    from hybrid.models.pull_hub import Hub, HubConfig
    from hybrid.models.pull_spec import parse_request
    from hybrid.models.resolve import serve_name

    request = parse_request(spec)
    bar = ProgressBar(err, tty=_is_tty(err), quiet=quiet)
    with Hub(HubConfig.from_environ(environ)) as hub:
        result = pull(
            request,
            hub,
            revision=revision,
            progress=bar.update,
            notice=bar.notice,
            free_space=free_space or free_bytes,
            sleep=sleep or time.sleep,
        )
    bar.finish()
    name = serve_name(settings, result.model_path, environ=environ)
    print(describe(result, name), file=out)
    return 0


def describe(result: PullResult, name: str) -> str:
    """The lines printed after a pull: what, where, and the command that serves it."""
    fetched = any(f.downloaded for f in result.files)
    checked = all(f.checksum is not None for f in result.files)
    how = "downloaded" if fetched else "already in the cache"
    check = ", checksum verified" if checked and fetched else ""
    parts = f", {len(result.files)} parts" if len(result.files) > 1 else ""
    quant = f" {result.choice.quant}" if result.choice.quant else ""
    serve = name if " " not in name else f'"{name}"'
    return (
        f"{result.repo}{quant}: {how} ({_size(result.size)}{parts}{check}), commit "
        f"{result.commit[:12]}\n"
        f"  {result.model_path}\n"
        f"Serve it with: hybrid serve --model {serve}"
    )


@dataclass
class ProgressBar:
    """A one-line progress bar on stderr (redrawn in place on a terminal; a line per 10 %
    otherwise).

    Attributes:
        stream: Where it is drawn.
        tty: Redraw in place.
        quiet: Draw nothing (notices still print).
    """

    stream: TextIO
    tty: bool
    quiet: bool = False
    _last_draw: float = 0.0
    _last_tenth: int = -1
    _started: dict[str, tuple[float, int]] = field(default_factory=dict)
    _open_line: bool = False

    def update(self, event: DownloadProgress) -> None:
        """Draw the progress of one file."""
        if self.quiet:
            return
        now = time.monotonic()
        start = self._started.setdefault(event.path, (now, event.done))
        complete = event.total is not None and event.done >= event.total
        if self.tty:
            if now - self._last_draw < _REDRAW_S and not complete:
                return
            self._last_draw = now
            print(f"\r{_line(event, start, now)}\x1b[K", end="", file=self.stream, flush=True)
            self._open_line = True
            return
        tenth = event.done * 10 // event.total if event.total else 0
        if tenth != self._last_tenth:
            self._last_tenth = tenth
            print(_line(event, start, now), file=self.stream, flush=True)

    def notice(self, line: str) -> None:
        """Print a one-line message below the bar."""
        self._close_line()
        print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        """End the bar's line."""
        self._close_line()

    def _close_line(self) -> None:
        if self._open_line:
            print(file=self.stream, flush=True)
            self._open_line = False


def _line(event: DownloadProgress, start: tuple[float, int], now: float) -> str:
    name = event.path.rsplit("/", 1)[-1]
    part = f" [{event.part}/{event.parts}]" if event.parts > 1 else ""
    elapsed = now - start[0]
    rate = (event.done - start[1]) / elapsed if elapsed > 0.5 else 0.0
    speed = f" {_size(int(rate))}/s" if rate > 0 else ""
    if event.total:
        share = event.done / event.total
        filled = int(share * 24)
        bar = "#" * filled + "-" * (24 - filled)
        return (
            f"{name}{part} [{bar}] {share:4.0%} {_size(event.done)} of {_size(event.total)}{speed}"
        )
    return f"{name}{part} {_size(event.done)}{speed}"


def _size(count: int) -> str:
    if count >= 1 << 30:
        return f"{count / (1 << 30):.2f} GiB"
    if count >= 1 << 20:
        return f"{count / (1 << 20):.1f} MiB"
    if count >= 1 << 10:
        return f"{count / (1 << 10):.0f} KiB"
    return f"{count} B"


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
