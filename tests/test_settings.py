"""Settings: precedence (command line > env > .env > config file > defaults), provenance, errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydantic
import pytest

from hybrid.errors import ConfigError
from hybrid.settings import LoadedSettings, Settings, default_config_file, load_settings


@pytest.fixture(autouse=True)
def isolated(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The suite's isolation, with the working folder one level below the test's folder."""
    work = isolated / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return isolated


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, **kwargs: object) -> LoadedSettings:
    """load_settings with nothing from the process: an empty environ and no .env by default."""
    kwargs.setdefault("environ", {})
    kwargs.setdefault("dotenv_file", None)
    return load_settings(**kwargs)  # type: ignore[arg-type]


# --- defaults -----------------------------------------------------------------------------------


def test_defaults_when_nothing_is_set(isolated: Path) -> None:
    loaded = load(isolated)

    settings = loaded.settings
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8642
    assert settings.server.max_body_bytes == 4 * 1024 * 1024
    assert settings.server.api_key is None
    assert settings.local.model is None
    assert settings.local.models_dirs == []
    assert settings.local.n_ctx is None
    assert settings.local.max_ctx == 8192
    assert settings.local.max_queue == 8
    assert settings.local.default_max_tokens == 1024
    assert settings.log_level == "info"
    assert settings.probe.sample_interval_s == 1.0
    assert settings.probe.measure_bandwidth is True
    # Local answers are read before they are sent, once a cloud can take the request.
    assert settings.routing.cascade.enabled is True
    assert settings.home == isolated / "xdg-data" / "hybrid"
    assert loaded.config_file is None
    assert set(loaded.sources.values()) == {"default"}
    assert "server.port" in loaded.sources
    assert "local.default_max_tokens" in loaded.sources
    assert "home" in loaded.sources


def test_default_config_file_is_in_the_user_config_folder(isolated: Path) -> None:
    assert default_config_file() == isolated / "xdg-config" / "hybrid" / "config.toml"


# --- precedence ---------------------------------------------------------------------------------

LAYERS = ["command line", "env", ".env", "config file", "default"]


def setup_layer(layer: str, port: int, tmp_path: Path, kwargs: dict[str, object]) -> str:
    """Make ``layer`` set server.port to ``port``; return the source it should be reported as."""
    if layer == "command line":
        kwargs["cli"] = {"server.port": port}
        kwargs["cli_sources"] = {"server.port": "--port"}
        return "command line --port"
    if layer == "env":
        kwargs["environ"] = {"HYBRID_SERVER__PORT": str(port)}
        return "env HYBRID_SERVER__PORT"
    if layer == ".env":
        dotenv = write(tmp_path / "dotenv" / ".env", f"HYBRID_SERVER__PORT={port}\n")
        kwargs["dotenv_file"] = dotenv
        return f".env {dotenv}"
    if layer == "config file":
        config = write(tmp_path / "conf" / "config.toml", f"[server]\nport = {port}\n")
        kwargs["config_file"] = config
        return f"config file {config}"
    return "default"


@pytest.mark.parametrize(
    ("higher", "lower"),
    [(h, lo) for i, h in enumerate(LAYERS) for lo in LAYERS[i + 1 :]],
)
def test_higher_layer_wins(isolated: Path, higher: str, lower: str) -> None:
    kwargs: dict[str, object] = {}
    setup_layer(lower, 9001, isolated, kwargs)
    expected_source = setup_layer(higher, 9002, isolated, kwargs)
    expected_port = 8642 if higher == "default" else 9002

    loaded = load(isolated, **kwargs)

    assert loaded.settings.server.port == expected_port
    assert loaded.sources["server.port"] == expected_source


def test_provenance_is_per_leaf_field(isolated: Path) -> None:
    config = write(
        isolated / "config.toml",
        '[server]\nhost = "0.0.0.0"\nport = 9000\n[local]\nmax_queue = 2\n',
    )
    dotenv = write(isolated / ".env", "HYBRID_LOCAL__MAX_QUEUE=3\nHYBRID_LOG_LEVEL=debug\n")

    loaded = load(
        isolated,
        config_file=config,
        dotenv_file=dotenv,
        environ={"HYBRID_SERVER__PORT": "9100"},
        cli={"local.n_ctx": 4096},
        cli_sources={"local.n_ctx": "--ctx"},
    )

    assert loaded.settings.server.host == "0.0.0.0"
    assert loaded.settings.server.port == 9100
    assert loaded.settings.local.max_queue == 3
    assert loaded.settings.local.n_ctx == 4096
    assert loaded.config_file == config
    assert loaded.sources["server.host"] == f"config file {config}"
    assert loaded.sources["server.port"] == "env HYBRID_SERVER__PORT"
    assert loaded.sources["local.max_queue"] == f".env {dotenv}"
    assert loaded.sources["log_level"] == f".env {dotenv}"
    assert loaded.sources["local.n_ctx"] == "command line --ctx"
    assert loaded.sources["local.max_ctx"] == "default"


def test_cli_value_without_a_flag_name_is_still_attributed_to_the_command_line(
    isolated: Path,
) -> None:
    loaded = load(isolated, cli={"server.port": 9999})

    assert loaded.sources["server.port"] == "command line"


def test_whole_section_json_in_env_is_overridden_by_its_nested_variables(isolated: Path) -> None:
    loaded = load(
        isolated,
        environ={
            "HYBRID_LOCAL": '{"n_ctx": 2048, "max_ctx": 4096}',
            "HYBRID_LOCAL__MAX_CTX": "1024",
        },
    )

    assert loaded.settings.local.n_ctx == 2048
    assert loaded.settings.local.max_ctx == 1024
    assert loaded.sources["local.n_ctx"] == "env HYBRID_LOCAL"
    assert loaded.sources["local.max_ctx"] == "env HYBRID_LOCAL__MAX_CTX"


def test_env_names_are_case_insensitive_and_empty_values_are_unset(isolated: Path) -> None:
    loaded = load(
        isolated,
        environ={"hybrid_server__port": "9300", "HYBRID_SERVER__HOST": ""},
    )

    assert loaded.settings.server.port == 9300
    assert loaded.sources["server.port"] == "env hybrid_server__port"
    assert loaded.settings.server.host == "127.0.0.1"
    assert loaded.sources["server.host"] == "default"


def test_other_tools_variables_are_ignored(isolated: Path) -> None:
    dotenv = write(isolated / ".env", "DATABASE_URL=sqlite://\nVERBOSE\n")

    loaded = load(
        isolated,
        dotenv_file=dotenv,
        environ={"PATH": "/bin", "MY_HYBRID_SERVER__PORT": "1", "HYBRID_CONFIG": ""},
    )

    assert set(loaded.sources.values()) == {"default"}


def test_injected_environ_replaces_the_process_environment(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_SERVER__PORT", "1234")

    assert load(isolated, environ={}).settings.server.port == 8642
    assert load_settings(dotenv_file=None).settings.server.port == 1234


def test_dotenv_in_the_working_folder_is_read_by_default(isolated: Path) -> None:
    write(Path.cwd() / ".env", "HYBRID_SERVER__PORT=9400\n")

    loaded = load_settings(environ={})

    assert loaded.settings.server.port == 9400
    assert loaded.sources["server.port"] == f".env {Path.cwd() / '.env'}"


def test_data_dir_comes_from_hybrid_home(isolated: Path) -> None:
    loaded = load(isolated, environ={"HYBRID_HOME": str(isolated / "data")})

    assert loaded.settings.home == isolated / "data"
    assert loaded.sources["home"] == "env HYBRID_HOME"


def test_log_level_is_case_insensitive(isolated: Path) -> None:
    assert load(isolated, environ={"HYBRID_LOG_LEVEL": "WARNING"}).settings.log_level == "warning"


def test_booleans_and_floats_parse_from_env(isolated: Path) -> None:
    loaded = load(
        isolated,
        environ={
            "HYBRID_PROBE__MEASURE_BANDWIDTH": "false",
            "HYBRID_PROBE__SAMPLE_INTERVAL_S": "0.25",
        },
    )

    assert loaded.settings.probe.measure_bandwidth is False
    assert loaded.settings.probe.sample_interval_s == 0.25


@pytest.mark.parametrize(
    ("file_value", "env_value", "expected"),
    [
        ("true", None, "band"),
        ("false", None, "off"),
        ('"every"', None, "every"),
        ("false", "every", "every"),
        ('"every"', "TRUE", "band"),
        ('"every"', "off", "off"),
    ],
)
def test_the_model_stage_setting_takes_its_modes_and_its_older_switch(
    isolated: Path, file_value: str, env_value: str | None, expected: str
) -> None:
    config = write(isolated / "config.toml", f"[routing.difficulty]\nmodel_stage = {file_value}\n")
    environ = {} if env_value is None else {"HYBRID_ROUTING__DIFFICULTY__MODEL_STAGE": env_value}

    loaded = load(isolated, config_file=config, environ=environ)

    assert loaded.settings.routing.difficulty.model_stage == expected


def test_an_unknown_model_stage_mode_names_the_modes(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(isolated, environ={"HYBRID_ROUTING__DIFFICULTY__MODEL_STAGE": "always"})

    assert "routing.difficulty.model_stage = 'always'" in str(caught.value)
    assert "'band', 'every' or 'off'" in str(caught.value)


# --- which config file --------------------------------------------------------------------------


def test_hybrid_config_names_the_file(isolated: Path) -> None:
    config = write(isolated / "elsewhere.toml", "[server]\nport = 9500\n")

    loaded = load(isolated, environ={"HYBRID_CONFIG": str(config)})

    assert loaded.config_file == config
    assert loaded.settings.server.port == 9500


def test_config_argument_beats_hybrid_config(isolated: Path) -> None:
    named = write(isolated / "named.toml", "[server]\nport = 9501\n")
    from_env = write(isolated / "env.toml", "[server]\nport = 9502\n")

    loaded = load(isolated, config_file=named, environ={"HYBRID_CONFIG": str(from_env)})

    assert loaded.config_file == named
    assert loaded.settings.server.port == 9501


def test_default_config_file_is_read_when_it_exists(isolated: Path) -> None:
    write(default_config_file(), "log_level = 'error'\n")

    loaded = load(isolated)

    assert loaded.config_file == default_config_file()
    assert loaded.settings.log_level == "error"
    assert loaded.sources["log_level"] == f"config file {default_config_file()}"


def test_relative_config_path_is_reported_absolute(isolated: Path) -> None:
    write(Path.cwd() / "conf" / "hybrid.toml", "[server]\nport = 9503\n")

    loaded = load(isolated, config_file=Path("conf/hybrid.toml"))

    assert loaded.config_file == Path.cwd() / "conf" / "hybrid.toml"
    assert loaded.sources["server.port"] == f"config file {Path.cwd() / 'conf' / 'hybrid.toml'}"


def test_missing_config_file_named_by_flag_is_an_error(isolated: Path) -> None:
    missing = isolated / "nope.toml"

    with pytest.raises(ConfigError) as caught:
        load(isolated, config_file=missing)

    assert str(caught.value) == (
        f"config file {missing} (named by --config) does not exist; create it, "
        "or point --config at an existing TOML file"
    )


def test_missing_config_file_named_by_env_is_an_error(isolated: Path) -> None:
    missing = isolated / "nope.toml"

    with pytest.raises(ConfigError, match=r"named by HYBRID_CONFIG\) does not exist"):
        load(isolated, environ={"HYBRID_CONFIG": str(missing)})


def test_toml_syntax_error_names_file_line_and_column(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[server]\nport = = 1\n")

    with pytest.raises(ConfigError) as caught:
        load(isolated, config_file=config)

    message = str(caught.value)
    assert message.startswith(f"config file {config} is not valid TOML: ")
    assert "line 2, column 8" in message


def test_unreadable_config_file_is_a_config_error(isolated: Path) -> None:
    folder = isolated / "a-folder.toml"
    folder.mkdir()

    with pytest.raises(ConfigError, match=rf"cannot read config file {folder}"):
        load(isolated, config_file=folder)


# --- invalid values -----------------------------------------------------------------------------


def test_invalid_env_value_names_field_value_and_variable(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(isolated, environ={"HYBRID_LOCAL__N_CTX": "abc"})

    assert str(caught.value).startswith(
        "invalid setting local.n_ctx = 'abc' (from env HYBRID_LOCAL__N_CTX): "
        "Input should be a valid integer"
    )


def test_invalid_file_value_names_the_file(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[server]\nport = 70000\n")

    with pytest.raises(ConfigError) as caught:
        load(isolated, config_file=config)

    assert str(caught.value) == (
        f"invalid setting server.port = 70000 (from config file {config}): "
        "Input should be less than or equal to 65535"
    )


def test_invalid_dotenv_value_names_the_dotenv_file(isolated: Path) -> None:
    dotenv = write(isolated / ".env", "HYBRID_SERVER__MAX_BODY_BYTES=10\n")

    with pytest.raises(ConfigError) as caught:
        load(isolated, dotenv_file=dotenv)

    assert str(caught.value) == (
        f"invalid setting server.max_body_bytes = '10' (from .env {dotenv}): "
        "Input should be greater than or equal to 1024"
    )


def test_invalid_cli_value_names_the_flag(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(isolated, cli={"local.n_ctx": 100}, cli_sources={"local.n_ctx": "--ctx"})

    assert str(caught.value) == (
        "invalid setting local.n_ctx = 100 (from command line --ctx): "
        "Input should be greater than or equal to 256"
    )


def test_each_bad_field_gets_its_own_line(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(
            isolated,
            environ={"HYBRID_LOG_LEVEL": "loud", "HYBRID_PROBE__SAMPLE_INTERVAL_S": "0"},
        )

    lines = str(caught.value).splitlines()
    assert len(lines) == 2
    assert lines[0].startswith("invalid setting log_level = 'loud' (from env HYBRID_LOG_LEVEL):")
    assert lines[1].startswith(
        "invalid setting probe.sample_interval_s = '0' (from env HYBRID_PROBE__SAMPLE_INTERVAL_S):"
    )


def test_unknown_key_in_config_file_is_an_error_with_a_suggestion(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[server]\nprot = 9000\n")

    with pytest.raises(ConfigError) as caught:
        load(isolated, config_file=config)

    assert str(caught.value) == (
        f"unknown setting server.prot (from config file {config}): hybrid has no such setting; "
        "did you mean server.port?"
    )


def test_unknown_section_in_config_file_is_an_error(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[servers]\nport = 9000\n")

    with pytest.raises(ConfigError, match=rf"unknown setting servers \(from config file {config}"):
        load(isolated, config_file=config)


def test_misspelt_nested_env_variable_is_reported(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(isolated, environ={"HYBRID_LOCAL__N_CXT": "4096"})

    assert str(caught.value).startswith(
        "unknown setting local.n_cxt (from env HYBRID_LOCAL__N_CXT): hybrid has no such setting"
    )


def test_malformed_json_list_in_env_names_the_variable(isolated: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load(isolated, environ={"HYBRID_LOCAL__MODELS_DIRS": "/models"})

    assert str(caught.value).startswith(
        "invalid setting local.models_dirs = '/models' (from env HYBRID_LOCAL__MODELS_DIRS): "
        "expected a JSON value"
    )


def test_secret_is_never_shown_in_an_error(isolated: Path) -> None:
    config = write(isolated / "config.toml", "[server]\napi_key = 123456789\n")

    with pytest.raises(ConfigError) as caught:
        load(isolated, config_file=config)

    assert "123456789" not in str(caught.value)
    assert str(caught.value).startswith("invalid setting server.api_key = **********")


# --- values -------------------------------------------------------------------------------------


def test_relative_paths_in_config_file_are_relative_to_its_folder(isolated: Path) -> None:
    config = write(
        isolated / "conf" / "config.toml",
        'home = "data"\n[local]\nmodel = "models/m.gguf"\nmodels_dirs = ["more", "/abs"]\n',
    )

    settings = load(isolated, config_file=config).settings

    assert settings.home == isolated / "conf" / "data"
    assert settings.local.model == isolated / "conf" / "models" / "m.gguf"
    assert settings.local.models_dirs == [isolated / "conf" / "more", Path("/abs")]


def test_tilde_is_expanded_everywhere(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(isolated / "user"))
    config = write(isolated / "config.toml", '[local]\nmodels_dirs = ["~/models"]\n')

    settings = load(
        isolated,
        config_file=config,
        environ={"HYBRID_LOCAL__MODEL": "~/m.gguf"},
        cli={"home": "~/hybrid-data"},
    ).settings

    assert settings.local.model == isolated / "user" / "m.gguf"
    assert settings.local.models_dirs == [isolated / "user" / "models"]
    assert settings.home == isolated / "user" / "hybrid-data"


def test_list_from_env_is_json(isolated: Path) -> None:
    settings = load(isolated, environ={"HYBRID_LOCAL__MODELS_DIRS": '["/a", "/b"]'}).settings

    assert settings.local.models_dirs == [Path("/a"), Path("/b")]


def test_api_key_is_a_secret(isolated: Path) -> None:
    settings = load(isolated, environ={"HYBRID_SERVER__API_KEY": "sekrit-value-0123456"}).settings

    assert settings.server.api_key is not None
    assert settings.server.api_key.get_secret_value() == "sekrit-value-0123456"
    assert "sekrit-value-0123456" not in repr(settings)
    assert "sekrit-value-0123456" not in str(settings)


def test_settings_are_immutable(isolated: Path) -> None:
    settings = load(isolated).settings

    with pytest.raises(pydantic.ValidationError):
        settings.server.port = 1  # type: ignore[misc]
    assert settings.model_copy(update={"log_level": "debug"}).log_level == "debug"


# --- plain pydantic-settings construction -------------------------------------------------------


def test_settings_with_no_arguments_reads_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYBRID_SERVER__PORT", "9600")
    monkeypatch.setenv("HYBRID_LOCAL__MODELS_DIRS", '["/m"]')

    settings = Settings()

    assert settings.server.port == 9600
    assert settings.local.models_dirs == [Path("/m")]
    assert settings.server.host == "127.0.0.1"


def test_settings_from_a_dict(isolated: Path) -> None:
    settings = Settings.model_validate({"local": {"n_ctx": 512}, "server": {"port": 1}})

    assert settings.local.n_ctx == 512
    assert settings.server.port == 1
    assert settings.local.max_ctx == 8192


@pytest.mark.parametrize(
    "environ",
    [
        {"HYBRID_SERVER__PORT": "9700", "HYBRID_LOG_LEVEL": "debug"},
        {"HYBRID_LOCAL": '{"n_ctx": 1024, "n_batch": 64}', "HYBRID_LOCAL__N_BATCH": "32"},
        {"hybrid_probe__measure_bandwidth": "0", "HYBRID_SERVER__HOST": ""},
        {"HYBRID_LOCAL__MODELS_DIRS": '["/x"]', "HYBRID_HOME": "/data", "HYBRID_CONFIG": ""},
    ],
)
def test_load_settings_reads_env_like_pydantic_settings(
    isolated: Path,
    monkeypatch: pytest.MonkeyPatch,
    environ: dict[str, str],
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    assert load(isolated, environ=environ).settings == Settings()


def test_invalid_value_through_settings_is_a_validation_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HYBRID_SERVER__PORT", "0")
    build: Callable[[], Settings] = Settings

    with pytest.raises(pydantic.ValidationError):
        build()
