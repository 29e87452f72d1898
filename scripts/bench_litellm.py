"""LiteLLM's proxy as the peer in ``scripts/bench_proxy.py``: its own virtualenv, its config,
its process.

``litellm[proxy]`` pins versions that conflict with hybrid's, so it lives in a virtualenv of its
own (by default ``~/.cache/hybrid/bench/litellm-venv`` on Linux: outside the repository, so it
is never committed), created on first use and reused; a marker file records a finished
install.  Nothing here touches hybrid's environment.

The proxy runs the way its documentation sets it up for production, minus what a benchmark of
the request path must not measure: one worker (as hybrid), no database, no callbacks, telemetry
off, logging at ERROR, the bundled model cost map instead of a download (the machine may have no
internet, and a benchmark must not reach beyond loopback).  A master key is required by recent
releases; each run makes a fresh one.

Budgets on keys, users, teams and the proxy as a whole are kept in LiteLLM's own database,
reached through Prisma (``DATABASE_URL``): :func:`ensure_prisma` installs the Python Prisma
package into the same virtualenv and runs its CLI once, which npm-installs the Prisma CLI and
downloads Prisma's engine binaries (from ``binaries.prisma.sh``: offline, this is the step that
fails, and the message says so); ``start_litellm(database_url=...)`` then starts a proxy on it.

Every failure is a :class:`PeerUnavailable` whose message says why, so that the benchmark can
still print hybrid's figures and name what is missing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import platformdirs

# The subprocess server helper is shared with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))
from server_process import RunningServer, ServerNotReady, start_server

DEFAULT_SPEC = "litellm[proxy]"
PRISMA_SPEC = "prisma>=0.11.0,<1.0"
"""The Prisma client ``litellm[extra_proxy]`` asks for."""
INSTALL_TIMEOUT_S = 900
START_TIMEOUT_S = 180
DATABASE_START_TIMEOUT_S = 600
"""A proxy with a database first applies every migration LiteLLM ships to it."""
PRISMA_BOOTSTRAP_TIMEOUT_S = 600
_MARKER = ".bench-installed"
_PRISMA_MARKER = ".bench-prisma-installed"
# Variables that would change what the proxy does (a database, keys, a config, its own mode).
_DROPPED_ENV_PREFIXES = ("LITELLM_", "OPENAI_", "ANTHROPIC_", "DATABASE_", "HYBRID_")


class PeerUnavailable(Exception):
    """LiteLLM could not be installed or started; the message says why and what to do."""


@dataclass(frozen=True)
class LiteLLMInstall:
    """A usable LiteLLM proxy install.

    Attributes:
        venv: The virtualenv it lives in.
        version: The installed ``litellm`` version.
    """

    venv: Path
    version: str

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "litellm"


@dataclass(frozen=True)
class LiteLLMProxy:
    """A running proxy.

    Attributes:
        server: The ``litellm`` process, where it listens and its log.
        master_key: The key every request must carry as ``Authorization: Bearer``.
        model: The name clients ask for.
    """

    server: RunningServer
    master_key: str
    model: str

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.server.process

    @property
    def base_url(self) -> str:
        return self.server.base_url

    @property
    def log(self) -> Path:
        return self.server.log

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 15 s."""
        self.server.stop(grace_s=15)


def ensure_litellm(venv: Path, spec: str = DEFAULT_SPEC, *, quiet: bool = False) -> LiteLLMInstall:
    """Create ``venv`` and install ``spec`` into it, unless an earlier run already did.

    Args:
        venv: The virtualenv's folder (created when missing).
        spec: What to ``pip install``.
        quiet: Do not announce a fresh install on stderr.

    Returns:
        The install, with its version.

    Raises:
        PeerUnavailable: The virtualenv or the install failed (the message ends with the tail
            of pip's log).
    """
    marker = venv / _MARKER
    cli = venv / "bin" / "litellm"
    try:
        if not (marker.is_file() and marker.read_text().strip() == spec and cli.is_file()):
            _install(venv, spec, quiet=quiet)
            marker.write_text(spec + "\n")
        version = subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import importlib.metadata as m; print(m.version('litellm'))",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as exc:
        raise PeerUnavailable(f"cannot use {venv} for LiteLLM: {exc}") from exc
    if version.returncode != 0:
        raise PeerUnavailable(f"litellm in {venv} does not import: {version.stderr.strip()[-500:]}")
    return LiteLLMInstall(venv, version.stdout.strip())


def ensure_prisma(install: LiteLLMInstall, *, quiet: bool = False) -> None:
    """Make LiteLLM's database usable: the Prisma package, its Node CLI and engine binaries.

    Installs :data:`PRISMA_SPEC` into LiteLLM's virtualenv (once), then runs ``prisma
    --version``, the bootstrap LiteLLM itself runs before its migrations: it installs the Prisma
    CLI through npm and downloads the engines, or fails.

    Args:
        install: LiteLLM's install.
        quiet: Do not announce a fresh install on stderr.

    Raises:
        PeerUnavailable: The package did not install, or the CLI could not get ready (the
            message quotes the CLI's own error, such as an engine download that failed).
    """
    marker = install.venv / _PRISMA_MARKER
    prisma = install.venv / "bin" / "prisma"
    try:
        if not (
            marker.is_file() and marker.read_text().strip() == PRISMA_SPEC and prisma.is_file()
        ):
            log = install.venv.parent / f"{install.venv.name}-prisma-install.log"
            if not quiet:
                print(f"installing {PRISMA_SPEC} into {install.venv} (once)", file=sys.stderr)
            with log.open("wb") as output:
                _run_logged(
                    [str(install.python), "-m", "pip", "install", PRISMA_SPEC],
                    output,
                    f"pip install {PRISMA_SPEC}",
                )
            marker.write_text(PRISMA_SPEC + "\n")
        done = subprocess.run(
            [str(prisma), "--version"],
            capture_output=True,
            text=True,
            timeout=PRISMA_BOOTSTRAP_TIMEOUT_S,
            env=_clean_env(),
            cwd=install.venv,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(
            f"`prisma --version` (Prisma's CLI and engines for LiteLLM's database) gave no "
            f"result in {PRISMA_BOOTSTRAP_TIMEOUT_S} s"
        ) from exc
    except OSError as exc:
        raise PeerUnavailable(f"cannot run Prisma from {install.venv}: {exc}") from exc
    if done.returncode != 0:
        raise PeerUnavailable(
            f"`prisma --version` (Prisma's CLI and engines for LiteLLM's database) failed "
            f"(exit status {done.returncode}): {prisma_failure(done.stdout + done.stderr)}"
        )


def prisma_failure(output: str) -> str:
    """The line of Prisma's output that says what failed: its last ``Error`` line, else its
    last line.

    Args:
        output: What the CLI printed.

    Returns:
        One line (``"(no output)"`` for none).
    """
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or ["(no output)"])[-1]


def _install(venv: Path, spec: str, *, quiet: bool) -> None:
    """Create the virtualenv if needed and pip install ``spec`` into it.

    Raises:
        PeerUnavailable: A step failed.
        OSError: The folder cannot be created or written.
    """
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{venv.name}-install.log"
    if not quiet:
        print(
            f"installing {spec} into {venv} (once; a few minutes, log in {log})",
            file=sys.stderr,
            flush=True,
        )
    with log.open("wb") as output:
        if not (venv / "bin" / "python").is_file():
            _run_logged([_base_python(), "-m", "venv", str(venv)], output, "create the venv")
        _run_logged(
            [str(venv / "bin" / "python"), "-m", "pip", "install", spec],
            output,
            f"pip install {spec}",
        )
    if not (venv / "bin" / "litellm").is_file():
        raise PeerUnavailable(f"pip installed {spec} but {venv}/bin/litellm is missing; see {log}")


def default_venv() -> Path:
    """Where LiteLLM's virtualenv lives unless a script is told otherwise."""
    return Path(platformdirs.user_cache_dir("hybrid")) / "bench" / "litellm-venv"


def config_yaml(
    model: str,
    upstream_base_url: str,
    upstream_key: str,
    *,
    max_budget_usd: float | None = None,
    output_usd_per_token: float | None = None,
) -> str:
    """The proxy's config: one ``openai/`` model on the upstream, the rest switched off.

    Args:
        model: The name clients ask for (also the upstream's model id).
        upstream_base_url: The upstream's OpenAI base URL (``http://127.0.0.1:P/v1``).
        upstream_key: The key the upstream wants.
        max_budget_usd: The proxy-wide budget (``litellm_settings.max_budget``, per day), if any.
        output_usd_per_token: The model's price per output token (input tokens then cost
            nothing), instead of LiteLLM's cost map.
    """
    price = (
        ""
        if output_usd_per_token is None
        else (
            "      input_cost_per_token: 0.0\n"
            f"      output_cost_per_token: {output_usd_per_token!r}\n"
        )
    )
    budget = (
        ""
        if max_budget_usd is None
        else f"  max_budget: {max_budget_usd!r}\n  budget_duration: 1d\n"
    )
    return (
        "model_list:\n"
        f"  - model_name: {model}\n"
        "    litellm_params:\n"
        f"      model: openai/{model}\n"
        f"      api_base: {upstream_base_url}\n"
        f"      api_key: {upstream_key}\n"
        f"{price}"
        "litellm_settings:\n"
        "  telemetry: false\n"
        "  set_verbose: false\n"
        "  drop_params: true\n"
        f"{budget}"
    )


def start_litellm(
    install: LiteLLMInstall,
    *,
    port: int,
    model: str,
    upstream_base_url: str,
    upstream_key: str,
    workdir: Path,
    max_budget_usd: float | None = None,
    output_usd_per_token: float | None = None,
    database_url: str | None = None,
) -> LiteLLMProxy:
    """Start the proxy on 127.0.0.1:``port`` and wait until it is alive.

    Args:
        install: The install to run.
        port: A free loopback port.
        model: The model name to expose.
        upstream_base_url: The upstream's OpenAI base URL.
        upstream_key: The key the upstream wants.
        workdir: An empty folder for the config and the log (also its working folder, so that
            no stray ``.env`` is read).
        max_budget_usd: See :func:`config_yaml`.
        output_usd_per_token: See :func:`config_yaml`.
        database_url: LiteLLM's own PostgreSQL database (``DATABASE_URL``), where it keeps
            spend and checks budgets; None for none (see :func:`ensure_prisma` first).

    Returns:
        The running proxy.

    Raises:
        PeerUnavailable: It exited, or was not alive within ``START_TIMEOUT_S``.
    """
    config = workdir / "litellm.yaml"
    config.write_text(
        config_yaml(
            model,
            upstream_base_url,
            upstream_key,
            max_budget_usd=max_budget_usd,
            output_usd_per_token=output_usd_per_token,
        )
    )
    master_key = "sk-bench-" + secrets.token_hex(16)
    env = proxy_env(master_key, database_url)
    command = [
        str(install.cli),
        "--config",
        str(config),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--telemetry",
        "False",
    ]
    try:
        server = start_server(
            command,
            port=port,
            log=workdir / "litellm.log",
            ready_path="/health/liveliness",
            env=env,
            cwd=workdir,
            timeout_s=START_TIMEOUT_S if database_url is None else DATABASE_START_TIMEOUT_S,
            what="litellm",
        )
    except ServerNotReady as exc:
        raise PeerUnavailable(f"litellm did not start: {exc}") from exc
    return LiteLLMProxy(server, master_key, model)


def proxy_env(master_key: str, database_url: str | None) -> dict[str, str]:
    """The proxy's environment: this process's, less anything meant for LiteLLM, hybrid or a
    provider, plus the run's own settings.

    Args:
        master_key: The key every request must carry.
        database_url: LiteLLM's database (``DATABASE_URL``); None for none.

    Returns:
        The whole environment.
    """
    env = _clean_env()
    if database_url is not None:
        env["DATABASE_URL"] = database_url
    env.update(
        LITELLM_LOG="ERROR",
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_MASTER_KEY=master_key,
        PYTHONUNBUFFERED="1",
    )
    return env


def _clean_env() -> dict[str, str]:
    """This process's environment without what would change what LiteLLM does."""
    return {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}


def _base_python() -> str:
    """The interpreter beneath the current virtualenv: the new venv must not nest in hybrid's."""
    return getattr(sys, "_base_executable", None) or sys.executable


def _run_logged(command: list[str], output: BinaryIO, what: str) -> None:
    try:
        result = subprocess.run(
            command, stdout=output, stderr=subprocess.STDOUT, timeout=INSTALL_TIMEOUT_S, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise PeerUnavailable(f"could not {what}: no result after {INSTALL_TIMEOUT_S} s") from exc
    except OSError as exc:
        raise PeerUnavailable(f"could not {what}: {exc}") from exc
    if result.returncode != 0:
        output.flush()
        raise PeerUnavailable(
            f"could not {what} (exit status {result.returncode}):\n{tail(Path(output.name), 15)}"
        )


def tail(log: Path, lines: int = 20) -> str:
    """The last ``lines`` lines of a log, indented (a line saying so when it cannot be read)."""
    try:
        text = log.read_text(errors="replace")
    except OSError:
        return f"(no log at {log})"
    return "\n".join("    " + line for line in text.splitlines()[-lines:])
