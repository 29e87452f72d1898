"""The ``hybrid`` entry point: dispatch, settings flags, exit codes, and an instant --help."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import types
from collections.abc import Callable
from pathlib import Path

import pytest

import hybrid
from hybrid.cli import COMMANDS, main
from hybrid.errors import ModelFileError

REPO_ROOT = Path(__file__).resolve().parents[2]


class FakeCommand:
    """A subcommand module built in memory, registered under a made-up module name."""

    def __init__(self, behaviour: Callable[[argparse.Namespace, object], int] | None = None):
        self.calls: list[tuple[argparse.Namespace, object]] = []
        self.behaviour = behaviour

    def module(self) -> types.ModuleType:
        module = types.ModuleType("fake_hybrid_command")
        module.HELP = "a fake command for tests"  # type: ignore[attr-defined]
        module.SETTINGS_FLAGS = {"port": "server.port", "ctx": "local.n_ctx"}  # type: ignore[attr-defined]

        def add_arguments(parser: argparse.ArgumentParser) -> None:
            parser.add_argument("--port", type=int)
            parser.add_argument("-c", "--ctx", type=int)
            parser.add_argument("--shout", action="store_true")

        def run(args: argparse.Namespace, settings: object) -> int:
            self.calls.append((args, settings))
            return self.behaviour(args, settings) if self.behaviour else 0

        module.add_arguments = add_arguments  # type: ignore[attr-defined]
        module.run = run  # type: ignore[attr-defined]
        return module


def register(monkeypatch: pytest.MonkeyPatch, name: str, module: types.ModuleType) -> None:
    monkeypatch.setitem(sys.modules, name, module)


def run_main(argv: list[str], fake: FakeCommand, monkeypatch: pytest.MonkeyPatch) -> int:
    register(monkeypatch, "fake_hybrid_command", fake.module())
    return main(argv, commands={"fake": "fake_hybrid_command", "config": "hybrid.cli.config"})


# --- help and version ---------------------------------------------------------------------------


def run_python(code: str) -> str:
    """The standard output of ``code`` run by this Python in a fresh process."""
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def test_help_imports_nothing_heavy() -> None:
    probe = (
        "import sys\n"
        "from hybrid.cli import main\n"
        "code = main(['--help'])\n"
        "heavy = ['pydantic', 'pydantic_settings', 'llama_cpp', 'numpy', 'fastapi', 'textual']\n"
        "print('LOADED', [name for name in heavy if name in sys.modules], code)\n"
    )
    stdout = run_python(probe)

    assert "usage: hybrid" in stdout
    assert "config" in stdout
    assert stdout.strip().endswith("LOADED [] 0")


def test_python_m_hybrid_help_exits_zero() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hybrid", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0
    assert "--config PATH" in result.stdout


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0

    assert capsys.readouterr().out.strip() == f"hybrid {hybrid.__version__}"


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2

    assert "hybrid: error:" in capsys.readouterr().err


def test_unknown_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--bogus"]) == 2

    assert "unrecognized arguments: --bogus" in capsys.readouterr().err


@pytest.mark.parametrize("extra", ["--bogus", "stray"])
def test_unknown_argument_after_a_command_prints_that_commands_usage(
    extra: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["fake", "--shout", extra], FakeCommand(), monkeypatch) == 2

    err = capsys.readouterr().err
    assert err.startswith("usage: hybrid fake [-h]")
    assert "--shout" in err.splitlines()[0]
    assert f"hybrid fake: error: unrecognized arguments: {extra}" in err


def test_unknown_flag_before_the_command_prints_the_programs_usage(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_main(["--bogus", "fake"], FakeCommand(), monkeypatch) == 2

    err = capsys.readouterr().err
    assert err.startswith("usage: hybrid [-h]")
    assert "hybrid: error: unrecognized arguments: --bogus" in err


# --- dispatch and settings flags ----------------------------------------------------------------


def test_subcommand_gets_its_arguments_and_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeCommand()

    assert run_main(["fake", "--shout"], fake, monkeypatch) == 0

    [(args, settings)] = fake.calls
    assert args.shout is True
    assert settings.server.port == 8642  # type: ignore[attr-defined]


def test_subcommand_exit_code_is_returned(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_main(["fake"], FakeCommand(lambda args, settings: 3), monkeypatch) == 3


def test_settings_flag_beats_env_and_config_file(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = isolated / "config.toml"
    config.write_text("[server]\nport = 9001\n[local]\nn_ctx = 2048\n", encoding="utf-8")
    monkeypatch.setenv("HYBRID_SERVER__PORT", "9002")
    fake = FakeCommand()

    assert run_main(["--config", str(config), "fake", "--port", "9003"], fake, monkeypatch) == 0

    [(_, settings)] = fake.calls
    assert settings.server.port == 9003  # type: ignore[attr-defined]
    assert settings.local.n_ctx == 2048  # type: ignore[attr-defined]


def test_flags_not_given_leave_env_in_charge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_SERVER__PORT", "9002")
    fake = FakeCommand()

    assert run_main(["fake"], fake, monkeypatch) == 0

    [(_, settings)] = fake.calls
    assert settings.server.port == 9002  # type: ignore[attr-defined]


def test_flag_source_names_the_long_flag(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCommand()
    register(monkeypatch, "fake_hybrid_command", fake.module())

    code = main(
        ["fake", "-c", "100"],
        commands={"fake": "fake_hybrid_command"},
    )

    assert code == 2
    assert capsys.readouterr().err == (
        "hybrid: error: invalid setting local.n_ctx = 100 (from command line --ctx): "
        "Input should be greater than or equal to 256\n"
    )
    assert fake.calls == []


def test_run_loaded_receives_sources(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    module = types.ModuleType("fake_loaded_command")
    module.HELP = "sees provenance"  # type: ignore[attr-defined]
    module.SETTINGS_FLAGS = {"port": "server.port"}  # type: ignore[attr-defined]
    module.add_arguments = lambda parser: parser.add_argument("--port", type=int)  # type: ignore[attr-defined]
    module.run_loaded = lambda args, loaded: seen.append(loaded) or 0  # type: ignore[attr-defined]
    register(monkeypatch, "fake_loaded_command", module)

    assert main(["loaded", "--port", "9010"], commands={"loaded": "fake_loaded_command"}) == 0

    [loaded] = seen
    assert loaded.sources["server.port"] == "command line --port"  # type: ignore[attr-defined]
    assert loaded.settings.server.port == 9010  # type: ignore[attr-defined]


# --- missing and broken subcommand modules ------------------------------------------------------


def test_missing_subcommand_module_does_not_break_the_others(
    capsys: pytest.CaptureFixture[str],
) -> None:
    commands = {"ghost": "hybrid.cli.no_such_module", "config": "hybrid.cli.config"}

    assert main(["--help"], commands=commands) == 0
    assert "ghost" not in capsys.readouterr().out
    assert main(["config", "--json"], commands=commands) == 0
    assert "server.port" in json.loads(capsys.readouterr().out)["settings"]


def test_broken_subcommand_module_is_listed_and_explains_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "broken_hybrid_command.py").write_text(
        "import a_dependency_that_is_not_installed\n", encoding="utf-8"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    commands = {"broken": "broken_hybrid_command", "config": "hybrid.cli.config"}

    assert main(["--help"], commands=commands) == 0
    assert "unavailable" in capsys.readouterr().out
    assert main(["broken"], commands=commands) == 1
    err = capsys.readouterr().err
    assert err.startswith("hybrid: error: the 'broken' command could not be loaded")
    assert "a_dependency_that_is_not_installed" in err
    assert main(["config"], commands=commands) == 0


# --- errors and exit codes ----------------------------------------------------------------------


def test_config_error_exits_2_with_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_LOCAL__N_CTX", "abc")
    fake = FakeCommand()

    assert run_main(["fake"], fake, monkeypatch) == 2

    err = capsys.readouterr().err
    assert err.startswith(
        "hybrid: error: invalid setting local.n_ctx = 'abc' (from env HYBRID_LOCAL__N_CTX): "
    )
    assert "Traceback" not in err
    assert fake.calls == []


def test_missing_config_file_exits_2(isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(isolated / "nope.toml"), "config"]) == 2

    assert "does not exist" in capsys.readouterr().err


def test_hybrid_error_from_a_subcommand_exits_1(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def fail(args: argparse.Namespace, settings: object) -> int:
        raise ModelFileError("model.gguf is not a GGUF file; download it again")

    assert run_main(["fake"], FakeCommand(fail), monkeypatch) == 1

    assert capsys.readouterr().err == (
        "hybrid: error: model.gguf is not a GGUF file; download it again\n"
    )


def test_keyboard_interrupt_exits_130_quietly(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupt(args: argparse.Namespace, settings: object) -> int:
        raise KeyboardInterrupt

    assert run_main(["fake"], FakeCommand(interrupt), monkeypatch) == 130

    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out == ""


def test_other_exceptions_are_not_swallowed(monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(args: argparse.Namespace, settings: object) -> int:
        raise RuntimeError("a bug")

    with pytest.raises(RuntimeError, match="a bug"):
        run_main(["fake"], FakeCommand(crash), monkeypatch)


def test_config_flag_after_the_subcommand(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = isolated / "config.toml"
    config.write_text("[server]\nport = 9001\n", encoding="utf-8")
    fake = FakeCommand()

    assert run_main(["fake", "--config", str(config)], fake, monkeypatch) == 0

    [(_, settings)] = fake.calls
    assert settings.server.port == 9001  # type: ignore[attr-defined]


def test_config_flag_after_the_subcommand_wins_over_one_before(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before, after = isolated / "before.toml", isolated / "after.toml"
    before.write_text("[server]\nport = 9001\n", encoding="utf-8")
    after.write_text("[local]\nn_ctx = 2048\n", encoding="utf-8")
    fake = FakeCommand()

    argv = ["--config", str(before), "fake", "--config", str(after)]
    assert run_main(argv, fake, monkeypatch) == 0

    [(_, settings)] = fake.calls
    assert settings.local.n_ctx == 2048  # type: ignore[attr-defined]
    assert settings.server.port == 8642  # type: ignore[attr-defined]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_subcommand_reads_the_config_file_given_after_it(
    command: str, isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = isolated / "nope.toml"

    # Settings are loaded before any subcommand runs: a missing file stops every one of them.
    assert main([command, "--config", str(missing)]) == 2

    err = capsys.readouterr().err
    assert f"config file {missing} (named by --config) does not exist" in err


# --- output into a closed pipe ------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["config"],
        ["config", "--json"],
        ["stats"],
        ["models"],
        ["probe"],
        # Loads the embedded model (assembled into the test's data dir on first use).
        pytest.param(["route", "What is the capital of France?"], marks=pytest.mark.slow),
    ],
    ids=" ".join,
)
def test_output_into_a_closed_pipe_ends_quietly(argv: list[str]) -> None:
    # `hybrid ... | head -1` once head has its line and exits.  Here the reader is gone before
    # hybrid writes anything, so every write fails, on any machine.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "hybrid", *argv],
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=240,
        )
    finally:
        os.close(write_end)

    assert "Traceback" not in result.stderr
    assert "BrokenPipeError" not in result.stderr
    assert result.returncode == 141


# --- only the command run is imported ----------------------------------------------------------


def test_only_the_named_subcommand_module_is_imported(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "other_hybrid_command.py").write_text(
        "HELP = 'another command'\n"
        "def add_arguments(parser):\n    pass\n"
        "def run(args, settings):\n    return 0\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "other_hybrid_command", raising=False)
    fake = FakeCommand()
    register(monkeypatch, "fake_hybrid_command", fake.module())
    commands = {"fake": "fake_hybrid_command", "other": "other_hybrid_command"}
    try:
        assert main(["fake", "--shout"], commands=commands) == 0
        assert main(["--config", str(tmp_path / "none.toml"), "fake"], commands=commands) == 2
        assert "other_hybrid_command" not in sys.modules

        assert main(["--help"], commands=commands) == 0
        assert "other_hybrid_command" in sys.modules
    finally:
        sys.modules.pop("other_hybrid_command", None)
    assert len(fake.calls) == 1


def test_a_name_that_is_no_command_still_lists_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeCommand()

    assert run_main(["nonsense"], fake, monkeypatch) == 2
    assert "choose from 'fake', 'config'" in capsys.readouterr().err


def test_serve_imports_no_other_command() -> None:
    probe = (
        "import sys\n"
        "from hybrid.cli import COMMANDS, main\n"
        "code = main(['serve', '--help'])\n"
        "others = [path for name, path in COMMANDS.items() if name != 'serve']\n"
        "print('LOADED', [path for path in others if path in sys.modules], code)\n"
    )
    stdout = run_python(probe)

    assert "usage: hybrid serve" in stdout
    assert stdout.strip().endswith("LOADED [] 0")
