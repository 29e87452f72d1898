"""The ``hybrid`` command line: global options, subcommand dispatch, exit codes.

Each subcommand lives in its own module, listed in :data:`COMMANDS`, and exposes:

``HELP: str``
    One line for ``hybrid --help``.
``add_arguments(parser: argparse.ArgumentParser) -> None``
    Adds the subcommand's flags.
``run(args: argparse.Namespace, settings: Settings) -> int``
    Does the work and returns the exit code.  A module may define
    ``run_loaded(args, loaded: LoadedSettings) -> int`` instead, to also see where each setting
    came from (``hybrid config`` does).
``SETTINGS_FLAGS: dict[str, str]`` (optional)
    Maps an argparse ``dest`` to a dotted settings path (``{"port": "server.port"}``); every such
    flag the user gave beats the environment and the config file.

``hybrid --help`` must stay instant, so this package imports only the standard library and
the subcommand modules, which in turn import nothing heavy at module level (they name
``Settings`` only under ``TYPE_CHECKING``).  Settings are loaded once a subcommand runs.  A
command line that names a subcommand imports that subcommand's module alone, so that
``hybrid serve`` does not hold the other commands' code; help on the whole program imports
them all.

Exit codes: 0 success, 1 a hybrid error while running, 2 bad usage or configuration, 130
interrupted, 141 standard output closed early (``hybrid config | head -1``: the code a shell
reports for a program that SIGPIPE ended, without the traceback).  ``hybrid serve`` exits 0
after Ctrl-C or SIGTERM, and 130 after a second Ctrl-C (:mod:`hybrid.cli.daemon`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hybrid import __version__
from hybrid.errors import ConfigError, HybridError

if TYPE_CHECKING:
    from hybrid.settings import LoadedSettings

COMMANDS: Mapping[str, str] = {
    "serve": "hybrid.cli.serve",
    "config": "hybrid.cli.config",
    "probe": "hybrid.cli.probe",
    "models": "hybrid.cli.models",
    "pull": "hybrid.cli.pull",
    "recommend": "hybrid.cli.recommend",
    "route": "hybrid.cli.route",
    "calibrate": "hybrid.cli.calibrate",
    "monitor": "hybrid.cli.monitor",
    "stats": "hybrid.cli.stats",
    "service": "hybrid.cli.service",
}
"""Subcommand name to the module implementing it; a module that is not installed is skipped."""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141


@dataclass(frozen=True)
class Subcommand:
    """A subcommand module, loaded.

    Attributes:
        name: What the user types (``serve``).
        help: One line for ``hybrid --help``.
        add_arguments: Adds the subcommand's flags to its parser.
        run: ``run(args, loaded)``, adapted so every module looks the same to :func:`main`.
        settings_flags: argparse ``dest`` to dotted settings path.
    """

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace, LoadedSettings], int]
    settings_flags: Mapping[str, str] = field(default_factory=dict)


def main(argv: list[str] | None = None, *, commands: Mapping[str, str] | None = None) -> int:
    """Run the ``hybrid`` command line.

    Args:
        argv: The arguments after the program name; defaults to ``sys.argv[1:]``.
        commands: Subcommand name to module path; defaults to :data:`COMMANDS`.

    Returns:
        The exit code: 0 on success, 1 when a subcommand raised a :class:`HybridError`, 2 for
        usage and configuration errors (:class:`ConfigError`), 130 on Ctrl-C, 141 when
        standard output was closed before everything was written.  Errors are printed to
        stderr as ``hybrid: error: <message>``; nothing is raised.
    """
    try:
        code = _main(sys.argv[1:] if argv is None else argv, commands or COMMANDS)
        # Flushed here, where a closed pipe can still be handled, not at interpreter exit.
        sys.stdout.flush()
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`| head -1`): what it wanted it has; the rest has nowhere to go.
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _main(argv: list[str], commands: Mapping[str, str]) -> int:
    parser = _build_parser(_subcommands(argv, commands))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        # argparse exits for --help, --version and usage errors; main returns instead.
        if exc.code is None:
            return EXIT_OK
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    subcommand: Subcommand = args.hybrid_subcommand
    try:
        loaded = _load_settings(args, subcommand)
        return subcommand.run(args, loaded)
    except ConfigError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except HybridError as exc:
        _print_error(str(exc))
        return EXIT_ERROR


def _subcommands(argv: list[str], commands: Mapping[str, str]) -> list[Subcommand]:
    """The subcommands to offer: only the one ``argv`` names, when it names one that loads.

    A long-running command (``hybrid serve``) then keeps none of the other commands' code in
    memory.  Help on the whole program, a flag before the command that only the full parser
    knows, or a name that is not a command gets every subcommand, as the usage message lists
    them all.
    """
    named = _named_command(argv, commands)
    if named is not None and (command := _load(named, commands[named])) is not None:
        return [command]
    return [command for name, path in commands.items() if (command := _load(name, path))]


def _named_command(argv: list[str], commands: Mapping[str, str]) -> str | None:
    """The subcommand ``argv`` names before any flag other than ``--config``, else None."""
    arguments = iter(argv)
    for argument in arguments:
        if argument == "--config":
            next(arguments, None)
        elif not argument.startswith("--config="):
            return argument if argument in commands else None
    return None


def _build_parser(subcommands: list[Subcommand]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hybrid",
        description="A local-first LLM router: answers on this machine when it can.",
    )
    parser.add_argument("--version", action="version", version=f"hybrid {__version__}")
    _add_config_flag(parser, default=None)
    sub = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=True, parser_class=_CommandParser
    )
    for subcommand in subcommands:
        child = sub.add_parser(subcommand.name, help=subcommand.help, description=subcommand.help)
        # Every subcommand reads settings, so --config is accepted after it too (`hybrid serve
        # --config FILE`).  SUPPRESS: given there, it wins; absent there, it leaves the value
        # given before the subcommand alone instead of resetting it to None.
        _add_config_flag(child, default=argparse.SUPPRESS)
        subcommand.add_arguments(child)
        # Stored on the namespace so that dispatch needs no second lookup by name.
        child.set_defaults(hybrid_subcommand=subcommand, hybrid_flag_names=_flag_names(child))
    return parser


class _CommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it rejects what it does not know itself.

    argparse hands a subparser's leftovers back to the top-level parser, which would then
    print ``usage: hybrid [-h] ... COMMAND ...`` for ``hybrid serve --bogus``; the user needs
    the usage of the command they typed.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def _add_config_flag(parser: argparse.ArgumentParser, *, default: object) -> None:
    parser.add_argument(
        "--config",
        dest="config_file",
        type=Path,
        default=default,
        metavar="PATH",
        help="TOML config file to read (default: $HYBRID_CONFIG, else the user config folder)",
    )


def _flag_names(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Map each argparse dest to the flag a user types for it (the longest spelling)."""
    return {
        action.dest: max(action.option_strings, key=len) if action.option_strings else action.dest
        for action in parser._actions
    }


def _load_settings(args: argparse.Namespace, subcommand: Subcommand) -> LoadedSettings:
    # Imported here: pydantic-settings is the heaviest thing `hybrid --help` would otherwise load.
    from hybrid.settings import load_settings

    flag_names: dict[str, str] = args.hybrid_flag_names
    cli: dict[str, object] = {}
    cli_sources: dict[str, str] = {}
    for dest, path in subcommand.settings_flags.items():
        value = getattr(args, dest, None)
        if value is not None:
            cli[path] = value
            cli_sources[path] = flag_names.get(dest, f"--{dest.replace('_', '-')}")
    return load_settings(config_file=args.config_file, cli=cli, cli_sources=cli_sources)


def _load(name: str, module_path: str) -> Subcommand | None:
    """Import a subcommand module; None when it is not installed, a stub when it is broken."""
    try:
        module = importlib.import_module(module_path)
    except ModuleNotFoundError as exc:
        # Only the module itself (or its package) missing means "not installed"; a module that
        # exists but imports something missing is broken, and says so when run.
        if exc.name is not None and (module_path + ".").startswith(exc.name + "."):
            return None
        return _broken(name, module_path, exc)
    except Exception as exc:
        return _broken(name, module_path, exc)
    try:
        return Subcommand(
            name=name,
            help=module.HELP,
            add_arguments=module.add_arguments,
            run=_adapt_run(module),
            settings_flags=dict(getattr(module, "SETTINGS_FLAGS", {})),
        )
    except AttributeError as exc:
        return _broken(name, module_path, exc)


def _adapt_run(module: Any) -> Callable[[argparse.Namespace, LoadedSettings], int]:
    run_loaded = getattr(module, "run_loaded", None)
    if run_loaded is not None:
        return run_loaded  # type: ignore[no-any-return]
    run = module.run

    def run_with_settings(args: argparse.Namespace, loaded: LoadedSettings) -> int:
        return int(run(args, loaded.settings))

    return run_with_settings


def _broken(name: str, module_path: str, exc: BaseException) -> Subcommand:
    """Keep a subcommand that fails to load listed, and say why when it is run."""
    reason = f"{type(exc).__name__}: {exc}"

    def fail(args: argparse.Namespace, loaded: LoadedSettings) -> int:
        raise HybridError(
            f"the {name!r} command could not be loaded from {module_path} ({reason}); "
            f"reinstall hybrid, or report this as a bug"
        )

    def no_arguments(parser: argparse.ArgumentParser) -> None:
        return None

    return Subcommand(
        name=name, help=f"(unavailable: {reason})", add_arguments=no_arguments, run=fail
    )


def _print_error(message: str) -> None:
    print(f"hybrid: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point standard output at the null device, so the interpreter's last flush cannot fail.

    This is the recipe of the ``signal`` module's note on SIGPIPE: without it, Python prints
    ``Exception ignored ... BrokenPipeError`` at exit for the output still buffered.
    """
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        finally:
            os.close(devnull)
    except (OSError, ValueError):
        pass  # stdout is not a file descriptor (an in-memory stream): nothing will flush it
