"""Settings: a misspelt name or a file hybrid cannot read stops it, instead of being skipped."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.errors import ConfigError
from hybrid.settings import LoadedSettings, load_settings


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(**kwargs: object) -> LoadedSettings:
    """load_settings with nothing from the process: an empty environ and no .env by default."""
    kwargs.setdefault("environ", {})
    kwargs.setdefault("dotenv_file", None)
    return load_settings(**kwargs)  # type: ignore[arg-type]


def refusal(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load(**kwargs)
    return str(caught.value)


# --- HYBRID_* names that are no setting ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (
            "HYBRID_BUDGET_DAILY_USD",
            "unknown setting budget_daily_usd (from env HYBRID_BUDGET_DAILY_USD): hybrid has no "
            "such setting; use __ between section and key: HYBRID_BUDGET__DAILY_USD",
        ),
        (
            "HYBRID_ROUTING_CAPACITY_MAX_OTHER_CPU_PERCENT",
            "unknown setting routing_capacity_max_other_cpu_percent (from env "
            "HYBRID_ROUTING_CAPACITY_MAX_OTHER_CPU_PERCENT): hybrid has no such setting; use __ "
            "between section and key: HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT",
        ),
        (
            "HYBRID_SEVER__PORT",
            "unknown setting sever.port (from env HYBRID_SEVER__PORT): hybrid has no such "
            "setting; did you mean server.port?",
        ),
        (
            "hybrid_log_levle",
            "unknown setting log_levle (from env hybrid_log_levle): hybrid has no such "
            "setting; did you mean log_level?",
        ),
        (
            "HYBRID_LOG_LEVEL__X",
            "unknown setting log_level.x (from env HYBRID_LOG_LEVEL__X): hybrid has no such "
            "setting; did you mean log_level?",
        ),
    ],
)
def test_an_unknown_hybrid_variable_is_refused_with_a_suggestion(name: str, message: str) -> None:
    assert refusal(environ={name: "40"}) == message


def test_an_unknown_hybrid_line_in_dotenv_is_refused(isolated: Path) -> None:
    dotenv = write(isolated / ".env", "HYBRID_SERVER__PORT=9001\nHYBRID_BUDGET_DAILY_USD=1\n")

    assert refusal(dotenv_file=dotenv) == (
        f"unknown setting budget_daily_usd (from .env {dotenv}): hybrid has no such setting; "
        "use __ between section and key: HYBRID_BUDGET__DAILY_USD"
    )


def test_every_unknown_name_is_refused_at_once_each_with_its_suggestion(isolated: Path) -> None:
    dotenv = write(
        isolated / ".env",
        "HYBRID_BUDGET_DAILY_USD=1\nHYBRID_SERVER__PORT=9001\nHYBRID_SEVER__HOST=x\n",
    )
    environ = {"HYBRID_LOG_LEVEL": "debug", "HYBRID_LOG_LEVLE": "debug", "HYBRID_LOCAL__N_CXT": "1"}

    message = refusal(dotenv_file=dotenv, environ=environ)

    assert message.splitlines() == [
        f"unknown setting budget_daily_usd (from .env {dotenv}): hybrid has no such setting; "
        "use __ between section and key: HYBRID_BUDGET__DAILY_USD",
        f"unknown setting sever.host (from .env {dotenv}): hybrid has no such setting; "
        "did you mean server.host?",
        "unknown setting log_levle (from env HYBRID_LOG_LEVLE): hybrid has no such setting; "
        "did you mean log_level?",
        "unknown setting local.n_cxt (from env HYBRID_LOCAL__N_CXT): hybrid has no such setting; "
        "did you mean local.n_ctx?",
    ]


def test_the_variables_hybrid_reads_beside_its_settings_are_not_refused(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[server]\nport = 9002\n")

    loaded = load(environ={"HYBRID_CONFIG": str(config), "HYBRID_HOME": str(isolated / "data")})

    assert loaded.settings.server.port == 9002
    assert loaded.settings.home == isolated / "data"


# --- HYBRID_CONFIG, which chooses the config file before the .env file is read -----------------


def test_hybrid_config_in_dotenv_is_refused_saying_to_set_it_in_the_environment(
    isolated: Path,
) -> None:
    write(isolated / "elsewhere.toml", "[server]\nport = 9004\n")
    dotenv = write(isolated / ".env", "# where\nhybrid_config=elsewhere.toml\n")

    assert refusal(dotenv_file=dotenv) == (
        f"hybrid_config in .env file {dotenv}, line 2 has no effect: hybrid reads hybrid_config "
        "from the environment only, before the .env file; set it there instead "
        "(export hybrid_config=elsewhere.toml) and remove the line"
    )


def test_an_empty_hybrid_config_in_dotenv_is_unset_like_any_empty_value(isolated: Path) -> None:
    dotenv = write(isolated / ".env", "HYBRID_CONFIG=\nHYBRID_SERVER__PORT=9005\n")

    assert load(dotenv_file=dotenv).settings.server.port == 9005


# --- .env files that cannot be read -------------------------------------------------------------


def test_a_dotenv_file_that_is_not_utf8_is_a_config_error(isolated: Path) -> None:
    dotenv = isolated / ".env"
    dotenv.write_bytes(b"# caf\xe9 settings\nHYBRID_SERVER__PORT=9001\n")

    message = refusal(dotenv_file=dotenv)

    assert message.startswith(f"cannot read .env file {dotenv}: 'utf-8' codec can't decode")
    assert message.endswith(
        "check that it is a readable UTF-8 file, or remove it from the working folder"
    )


@pytest.mark.parametrize(
    ("text", "line", "statement"),
    [
        ("HYBRID_BUDGET__DAILY_USD: 1.0\n", 1, "HYBRID_BUDGET__DAILY_USD: 1.0"),
        ("# port\nHYBRID_SERVER__PORT 9001\n", 2, "HYBRID_SERVER__PORT 9001"),
        ('LOG=1\nHYBRID_LOCAL__MAX_QUEUE="4\n', 2, 'HYBRID_LOCAL__MAX_QUEUE="4'),
        # A bare name: python-dotenv reads it as a name without a value, which would be dropped.
        ("HYBRID_BUDGET__DAILY_USD\n", 1, "HYBRID_BUDGET__DAILY_USD"),
        ("LOG=1\nexport hybrid_server__port  # 9001\n", 2, "export hybrid_server__port  # 9001"),
        ("HYBRID_CONFIG\n", 1, "HYBRID_CONFIG"),
    ],
)
def test_a_hybrid_line_that_is_not_name_equals_value_is_refused(
    isolated: Path, text: str, line: int, statement: str
) -> None:
    dotenv = write(isolated / ".env", text)

    assert refusal(dotenv_file=dotenv) == (
        f"cannot parse .env file {dotenv}, line {line}: {statement!r}; write it as NAME=value, "
        "e.g. HYBRID_SERVER__PORT=9000, and close any quote you open"
    )


def test_a_bare_hybrid_line_stops_the_cli_with_exit_2_and_one_line(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write(isolated / ".env", "HYBRID_SERVER__PORT=9001\nHYBRID_BUDGET__DAILY_USD\n")

    assert main(["config"]) == 2
    assert capsys.readouterr().err == (
        f"hybrid: error: cannot parse .env file {isolated / '.env'}, line 2: "
        "'HYBRID_BUDGET__DAILY_USD'; write it as NAME=value, e.g. HYBRID_SERVER__PORT=9000, "
        "and close any quote you open\n"
    )


def test_another_tools_bare_line_is_skipped_and_the_rest_is_read(isolated: Path) -> None:
    dotenv = write(isolated / ".env", "DEBUG\nHYBRID_SERVER__PORT=9006\n")

    assert load(dotenv_file=dotenv).settings.server.port == 9006


def test_another_tools_odd_line_is_a_warning_and_the_rest_is_read(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dotenv = write(isolated / ".env", "OTHER_TOOL: yes\nHYBRID_SERVER__PORT=9003\n")
    # Read straight from the logger: what an earlier test did to logging (a ``dictConfig`` that
    # disables existing loggers, a parent that stops propagating) cannot hide the warning.
    logger = logging.getLogger("hybrid.settings.dotenv_file")
    monkeypatch.setattr(logger, "disabled", False)
    monkeypatch.setattr(logger, "level", logging.WARNING)
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        loaded = load(dotenv_file=dotenv)
    finally:
        logger.removeHandler(handler)

    assert loaded.settings.server.port == 9003
    assert [record.getMessage() for record in seen] == [
        f"skipping .env file {dotenv}, line 1: 'OTHER_TOOL: yes' is not NAME=value"
    ]


# --- TOML keys that differ from a setting only in case ------------------------------------------


@pytest.mark.parametrize(
    ("toml", "name", "meant"),
    [
        ("[Server]\nport = 9000\n", "Server", "server"),
        ('[Server]\nport = 9000\n\n[server]\nhost = "127.0.0.2"\n', "Server", "server"),
        ('Log_Level = "debug"\n', "Log_Level", "log_level"),
        (
            "[routing.Capacity]\nmax_other_cpu_percent = 40\n",
            "routing.Capacity",
            "routing.capacity",
        ),
    ],
)
def test_a_config_key_in_the_wrong_case_is_refused_as_unknown(
    isolated: Path, toml: str, name: str, meant: str
) -> None:
    config = write(isolated / "config.toml", toml)

    assert refusal(config_file=config, environ={"HYBRID_SERVER__PORT": "7000"}) == (
        f"unknown setting {name} (from config file {config}): hybrid has no such setting; "
        f"did you mean {meant}?"
    )
