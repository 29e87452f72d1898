"""The fake cloud in a process of its own, on uvloop when installed, until SIGTERM or SIGINT.

The benchmarks run it this way, so that the upstream does not share an interpreter with the
load generator::

    python tests/helpers/fake_cloud_process.py --port 8100 --replay [--reply TEXT]
        [--openai-key KEY] [--anthropic-key KEY] [--lan-kind llama-server|vllm|ollama|hybrid]

It says ``fake cloud on http://127.0.0.1:<port>`` on stderr once it listens; ``GET /fake/stats``
answers once it is ready.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import threading
from collections.abc import Sequence

from fake_cloud import FakeCloud
from fake_cloud_lan import LAN_KINDS


def main(argv: Sequence[str] | None = None) -> int:
    """Serve the fake cloud on a loopback port until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--port", type=int, required=True, help="loopback port to listen on")
    parser.add_argument("--reply", default="Hello from the fake cloud.", help="the answer text")
    parser.add_argument("--openai-key", default="sk-fake-openai", help="the key OpenAI wants")
    parser.add_argument("--anthropic-key", default="sk-ant-fake", help="the key Anthropic wants")
    parser.add_argument(
        "--replay", action="store_true", help="send a repeated request the same answer bytes"
    )
    parser.add_argument(
        "--lan-kind", choices=LAN_KINDS, help="also serve this LAN engine's load endpoints"
    )
    args = parser.parse_args(argv)
    try:
        import uvloop
    except ImportError:  # plain asyncio serves too, only slower
        pass
    else:
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    done = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: done.set())
    cloud = FakeCloud(
        openai_key=args.openai_key,
        anthropic_key=args.anthropic_key,
        reply=args.reply,
        port=args.port,
        replay=args.replay,
        lan_kind=args.lan_kind,
    )
    with cloud:
        print(f"fake cloud on {cloud.base_url}", file=sys.stderr, flush=True)
        done.wait()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
