"""The processes of ``scripts/bench_proxy.py``: the upstream, ``hybrid serve`` and LiteLLM's proxy.

The upstream is the tests' fake cloud in a process of its own
(``tests/helpers/fake_cloud_process.py``), replaying each answer's bytes so that it answers at
once; hybrid declares it as provider ``bench`` and LiteLLM's proxy (``scripts/bench_litellm.py``)
fronts the same upstream.  :func:`start_fleet` starts the three and leaves their stopping to the
caller's exit stack; :class:`Fleet` names the targets each one serves.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
from bench_client import REPLY, Target
from bench_litellm import LiteLLMProxy, PeerUnavailable, ensure_litellm, start_litellm

REPO = Path(__file__).resolve().parents[1]
# The fake cloud and the subprocess server helper are shared with the tests.
sys.path.insert(0, str(REPO / "tests" / "helpers"))
from server_process import (  # noqa: E402
    RunningServer,
    ServerNotReady,
    free_port,
    hybrid_serve,
    start_server,
)

UPSTREAM_SCRIPT = REPO / "tests" / "helpers" / "fake_cloud_process.py"
UPSTREAM_KEY = "sk-bench-upstream"
PROVIDER = "bench"
MODEL = "bench-model"
MISSING_MODEL = "bench-no-such-model"
START_TIMEOUT_S = 180


def clean_env() -> dict[str, str]:
    """This environment without the settings that would change what hybrid does."""
    dropped = ("HYBRID_", "OPENAI_", "ANTHROPIC_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def start_upstream(port: int, work: Path) -> RunningServer:
    """The fake cloud in a process of its own, replaying its answers, ready to answer."""
    command = [
        sys.executable,
        str(UPSTREAM_SCRIPT),
        "--port",
        str(port),
        "--replay",
        "--reply",
        REPLY,
        "--openai-key",
        UPSTREAM_KEY,
    ]
    return start_server(
        command,
        port=port,
        log=work / "upstream.log",
        ready_path="/fake/stats",
        env=clean_env(),
        cwd=work,
        timeout_s=30,
        what="upstream",
    )


def start_hybrid(upstream_port: int, port: int, work: Path) -> RunningServer:
    """``hybrid serve`` with the upstream declared as provider ``bench``, ready to answer."""
    config = work / "hybrid.toml"
    config.write_text(
        "[[cloud.providers]]\n"
        f'name = "{PROVIDER}"\n'
        f'base_url = "http://127.0.0.1:{upstream_port}/v1"\n'
        f'api_key = "{UPSTREAM_KEY}"\n'
        f'models = ["{MODEL}"]\n'
    )
    env = clean_env() | {
        "HYBRID_HOME": str(work / "hybrid-home"),
        "HYBRID_LOG_LEVEL": "warning",
        "HYBRID_CONFIG": str(config),
    }
    return start_server(
        hybrid_serve(port),
        port=port,
        log=work / "hybrid.log",
        env=env,
        cwd=work,
        timeout_s=START_TIMEOUT_S,
        what="hybrid serve",
    )


def upstream_stats(port: int) -> tuple[int, int]:
    """The upstream's (requests answered, connections accepted) so far."""
    stats = httpx2.get(f"http://127.0.0.1:{port}/fake/stats", timeout=5).json()
    return int(stats["requests"]), int(stats["connections"])


@dataclass
class Fleet:
    """The processes of one run, and the targets they serve."""

    work: Path
    upstream: RunningServer
    upstream_port: int
    hybrid: RunningServer
    hybrid_port: int
    peer: LiteLLMProxy | None = None
    peer_missing: str | None = None
    litellm_version: str | None = None

    def targets(self) -> list[Target]:
        """direct, hybrid and (when it runs) litellm, each with its serving process."""
        targets = [
            Target(
                "direct", self.upstream_port, MODEL, UPSTREAM_KEY, pid=self.upstream.process.pid
            ),
            Target(
                "hybrid",
                self.hybrid_port,
                f"{PROVIDER}/{MODEL}",
                "unused",
                expect_route="cloud",
                pid=self.hybrid.process.pid,
            ),
        ]
        if self.peer is not None:
            port = int(self.peer.base_url.rsplit(":", 1)[1])
            targets.append(
                Target("litellm", port, MODEL, self.peer.master_key, pid=self.peer.process.pid)
            )
        return targets

    def refusal_probe(self) -> Target:
        """A request hybrid refuses with 404 before any upstream call: its inbound side."""
        return Target(
            "hybrid-404",
            self.hybrid_port,
            MISSING_MODEL,
            "unused",
            expect_status=404,
            reaches_upstream=False,
            pid=self.hybrid.process.pid,
        )

    def pids(self) -> list[int]:
        pids = [os.getpid(), self.upstream.process.pid, self.hybrid.process.pid]
        return pids + ([self.peer.process.pid] if self.peer is not None else [])


def start_fleet(args: argparse.Namespace, work: Path, stack: contextlib.ExitStack) -> Fleet:
    """Start the upstream, hybrid and LiteLLM; a LiteLLM failure is recorded, not raised.

    Raises:
        SystemExit: The upstream or hybrid did not start (the message holds its log's tail).
    """
    upstream_port, hybrid_port = free_port(), free_port()
    try:
        upstream = start_upstream(upstream_port, work)
    except ServerNotReady as exc:
        raise SystemExit(str(exc)) from exc
    stack.callback(upstream.stop, 15)
    # hybrid loads its local model while LiteLLM starts: neither waits for the other.
    with ThreadPoolExecutor(1) as pool:
        starting = pool.submit(start_hybrid, upstream_port, hybrid_port, work)
        peer: LiteLLMProxy | None = None
        peer_missing: str | None = None
        version: str | None = None
        if args.no_litellm:
            peer_missing = "skipped (--no-litellm)"
        else:
            try:
                install = ensure_litellm(args.litellm_venv, args.litellm_spec)
                print(f"starting litellm {install.version} from {install.venv}", file=sys.stderr)
                peer = start_litellm(
                    install,
                    port=free_port(),
                    model=MODEL,
                    upstream_base_url=f"http://127.0.0.1:{upstream_port}/v1",
                    upstream_key=UPSTREAM_KEY,
                    workdir=work,
                )
                stack.callback(peer.stop)
                version = install.version
            except PeerUnavailable as exc:
                peer_missing = str(exc)
        try:
            hybrid = starting.result()
        except ServerNotReady as exc:
            raise SystemExit(str(exc)) from exc
    stack.callback(hybrid.stop, 15)
    return Fleet(work, upstream, upstream_port, hybrid, hybrid_port, peer, peer_missing, version)
