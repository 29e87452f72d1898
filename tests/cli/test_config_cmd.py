"""``hybrid config``: every effective setting, its source, secrets masked, text and JSON."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import pytest

from hybrid.cli import main
from hybrid.cli.config import wrap

LEAVES = [
    "home",
    "log_level",
    "server.host",
    "server.port",
    "server.max_body_bytes",
    "server.body_timeout_s",
    "server.header_timeout_s",
    "server.api_key",
    "server.allowed_hosts",
    "server.allowed_origins",
    "server.shutdown_timeout_s",
    "local.model",
    "local.models_dirs",
    "local.stores",
    "local.n_ctx",
    "local.max_ctx",
    "local.n_threads",
    "local.n_gpu_layers",
    "local.n_batch",
    "local.parallel",
    "local.kv_cache_type",
    "local.max_queue",
    "local.default_max_tokens",
    "local.temperature",
    "local.keep_alive",
    "local.background_on_battery",
    "probe.sample_interval_s",
    "probe.measure_bandwidth",
    "cloud.default_model",
    "cloud.failover",
    "cloud.local_fallback",
    "cloud.openai.api_key",
    "cloud.openai.base_url",
    "cloud.openai.models",
    "cloud.anthropic.api_key",
    "cloud.anthropic.base_url",
    "cloud.anthropic.version",
    "cloud.anthropic.max_tokens",
    "cloud.anthropic.models",
    "cloud.providers",
    "cloud.connect_timeout_s",
    "cloud.first_byte_timeout_s",
    "cloud.whole_answer_timeout_s",
    "cloud.idle_timeout_s",
    "cloud.max_attempts",
    "cloud.max_total_s",
    "cloud.stream_keep_alive_s",
    "cloud.backoff_base_s",
    "cloud.backoff_max_s",
    "cloud.max_retry_after_s",
    "cloud.breaker_failures",
    "cloud.breaker_reset_s",
    "lan.servers",
    "lan.strategy",
    "lan.usd_per_1m_tokens",
    "lan.load_interval_s",
    "lan.connect_timeout_s",
    "lan.max_attempts",
    "routing.privacy.enabled",
    "routing.privacy.detectors",
    "routing.privacy.patterns",
    "routing.privacy.paths",
    "routing.privacy.allow_cloud",
    "routing.privacy.allow_lan",
    "routing.capability.enabled",
    "routing.length.enabled",
    "routing.capacity.enabled",
    "routing.capacity.latency_target_s",
    "routing.capacity.max_other_cpu_percent",
    "routing.capacity.max_memory_percent",
    "routing.capacity.min_battery_percent",
    "routing.difficulty.enabled",
    "routing.difficulty.threshold",
    "routing.difficulty.model_stage",
    "routing.difficulty.neighbours",
    "routing.difficulty.labelled_neighbours",
    "routing.difficulty.yes_no",
    "routing.cascade.enabled",
    "routing.cascade.min_confidence",
    "routing.cascade.escalate_declined",
    "routing.cascade.escalate_outside_options",
    "routing.learn.keep_signals",
    "routing.learn.prompt_vectors",
    "routing.learn.shadow_rate",
    "routing.learn.local_shadow_rate",
    "routing.learn.shadow_agreement",
    "routing.learn.judge_model",
    "routing.learn.refit_after",
    "routing.calibration.background",
    "routing.calibration.per_category",
    "ledger.path",
    "ledger.retention_days",
    "ledger.url",
    "ledger.instance",
    "pricing.overrides",
    "pricing.reference_model",
    "energy.cpu_watts",
    "energy.gpu_watts",
    "energy.usd_per_kwh",
    "budget.daily_usd",
    "budget.monthly_usd",
    "budget.per_provider",
    "budget.warn_percent",
]

# One setting: its first line, then indented lines for a wrapped value or a source of its own.
ENTRY = re.compile(
    r"^(?P<name>\S+)(?P<pad> +)= (?P<value>.+?)(?:  |\n    )\((?P<source>[^()]*)\)$", re.DOTALL
)


@dataclass(frozen=True)
class Row:
    name: str
    equals_column: int
    value: str  # as printed, with the line breaks of a wrapped value taken out
    source: str  # likewise

    def __getitem__(self, key: str) -> str:
        return str(getattr(self, key))


def squash(text: str) -> str:
    """The text without any whitespace: what survives wrapping unchanged."""
    return "".join(text.split())


def unwrap(text: str) -> str:
    return re.sub(r"\n +", "", text)


def config_text(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[str, dict[str, Row]]:
    """Run ``hybrid config``; return the header (unwrapped) and the settings by name."""
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, too_wide
    blank = lines.index("")
    header = " ".join(line.strip() for line in lines[:blank])
    entries: list[list[str]] = []
    for line in lines[blank + 1 :]:
        if line.startswith(" "):
            entries[-1].append(line)
        else:
            entries.append([line])
    rows = {}
    for entry in entries:
        match = ENTRY.match("\n".join(entry))
        assert match is not None, entry
        rows[match["name"]] = Row(
            name=match["name"],
            equals_column=match.end("pad"),
            value=unwrap(match["value"]),
            source=unwrap(match["source"]),
        )
    return header, rows


def config_json(argv: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert isinstance(document, dict)
    return document


def test_prints_every_setting_with_its_default_source(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    header, rows = config_text(["config"], capsys)

    assert list(rows) == LEAVES
    assert {row["source"] for row in rows.values()} == {"default"}
    assert rows["server.port"]["value"] == "8642"
    assert rows["server.host"]["value"] == '"127.0.0.1"'
    assert rows["local.model"]["value"] == "null"
    assert rows["probe.measure_bandwidth"]["value"] == "true"
    expected = isolated / "xdg-config" / "hybrid" / "config.toml"
    assert squash(header) == squash(f"config file: {expected} (not found; none read)")


def test_equals_signs_are_aligned(capsys: pytest.CaptureFixture[str]) -> None:
    _, rows = config_text(["config"], capsys)

    assert len({row.equals_column for row in rows.values()}) == 1


def test_shows_where_each_value_came_from(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "config.toml"
    config.write_text('[server]\nhost = "0.0.0.0"\nport = 9000\n', encoding="utf-8")
    (isolated / ".env").write_text("HYBRID_LOCAL__MAX_QUEUE=2\n", encoding="utf-8")
    monkeypatch.setenv("HYBRID_SERVER__PORT", "9100")

    header, rows = config_text(["--config", str(config), "config"], capsys)

    assert squash(header) == squash(f"config file: {config}")
    assert rows["server.host"]["value"] == '"0.0.0.0"'
    assert squash(rows["server.host"]["source"]) == squash(f"config file {config}")
    assert rows["server.port"]["value"] == "9100"
    assert rows["server.port"]["source"] == "env HYBRID_SERVER__PORT"
    assert rows["local.max_queue"]["value"] == "2"
    assert squash(rows["local.max_queue"]["source"]) == squash(f".env {isolated / '.env'}")
    assert rows["local.max_ctx"]["source"] == "default"


def test_secret_is_masked_in_text(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", "sk-very-secret-9876")

    assert main(["config"]) == 0
    out = capsys.readouterr().out

    assert "very-secret" not in out
    assert "9876" not in out
    _, rows = config_text(["config"], capsys)
    assert rows["server.api_key"]["value"] == '"**********"'
    assert rows["server.api_key"]["source"] == "env HYBRID_SERVER__API_KEY"


def test_json_output(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "config.toml"
    config.write_text('[local]\nmodels_dirs = ["models"]\n', encoding="utf-8")
    monkeypatch.setenv("HYBRID_SERVER__API_KEY", "sk-very-secret-9876")

    document = config_json(["--config", str(config), "config"], capsys)

    assert document["config_file"] == str(config)
    settings = document["settings"]
    assert isinstance(settings, dict)
    assert list(settings) == LEAVES
    assert settings["server.port"] == {"value": 8642, "source": "default"}
    assert settings["local.model"] == {"value": None, "source": "default"}
    assert settings["local.models_dirs"] == {
        "value": [str(isolated / "models")],
        "source": f"config file {config}",
    }
    assert settings["server.api_key"] == {
        "value": "**********",
        "source": "env HYBRID_SERVER__API_KEY",
    }
    assert "very-secret" not in json.dumps(document)


def test_json_config_file_is_null_when_none_was_read(capsys: pytest.CaptureFixture[str]) -> None:
    assert config_json(["config"], capsys)["config_file"] is None


def test_hybrid_config_env_names_the_file_shown(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "from-env.toml"
    config.write_text("log_level = 'debug'\n", encoding="utf-8")
    monkeypatch.setenv("HYBRID_CONFIG", str(config))

    header, rows = config_text(["config"], capsys)

    assert squash(header) == squash(f"config file: {config}")
    assert rows["log_level"]["value"] == '"debug"'


def test_invalid_setting_exits_2_naming_field_value_and_source(
    isolated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "config.toml"
    config.write_text("[local]\nmax_queue = -1\n", encoding="utf-8")

    assert main(["--config", str(config), "config"]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        f"hybrid: error: invalid setting local.max_queue = -1 (from config file {config}): "
        "Input should be greater than or equal to 0\n"
    )


def test_declared_providers_print_with_their_keys_masked(
    isolated: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = isolated / "config.toml"
    config.write_text(
        '[[cloud.providers]]\nname = "groq"\nbase_url = "https://groq.example/v1"\n'
        'api_key_env = "GROQ_API_KEY"\nmodels = ["llama-3.3-70b"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("GROQ_API_KEY", "gsk-do-not-print-me")
    assert main(["--config", str(config), "config"]) == 0
    text = capsys.readouterr().out
    assert '"name":"groq"' in squash(text) and '"api_key":"**********"' in squash(text)
    assert main(["--config", str(config), "config", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    (groq,) = document["settings"]["cloud.providers"]["value"]
    assert groq["api_key"] == "**********" and groq["models"] == ["llama-3.3-70b"]
    assert "gsk-do-not-print-me" not in text


def test_every_line_fits_an_80_column_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / ("a-folder-with-a-long-name-" * 3) / ("and-another-one-" * 4)
    deep.mkdir(parents=True)
    config = deep / "config.toml"
    config.write_text(
        f'home = "{deep / "data"}"\n'
        '[[cloud.providers]]\nname = "groq"\nbase_url = "https://api.groq.example/openai/v1"\n'
        'api_key_env = "GROQ_API_KEY"\nmodels = ["llama-3.3-70b-versatile", "llama-3.1-8b"]\n',
        encoding="utf-8",
    )
    monkeypatch.setenv("HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT", "40")
    monkeypatch.setenv("HYBRID_CLOUD__ANTHROPIC__BASE_URL", "https://anthropic.proxy.example/v1")

    assert main(["--config", str(config), "config"]) == 0
    out = capsys.readouterr().out
    assert [line for line in out.splitlines() if len(line) > 80] == []

    # Wrapped, everything is still there.
    header, rows = config_text(["--config", str(config), "config"], capsys)
    assert squash(header) == squash(f"config file: {config}")
    assert squash(rows["home"]["value"]) == squash(f'"{deep / "data"}"')
    assert squash(rows["home"]["source"]) == squash(f"config file {config}")
    assert squash(rows["cloud.providers"]["value"]).startswith('[{"name":"groq"')
    assert rows["routing.capacity.max_other_cpu_percent"]["value"] == "40.0"
    assert (
        rows["routing.capacity.max_other_cpu_percent"]["source"]
        == "env HYBRID_ROUTING__CAPACITY__MAX_OTHER_CPU_PERCENT"
    )
    assert rows["cloud.anthropic.base_url"]["source"] == "env HYBRID_CLOUD__ANTHROPIC__BASE_URL"
    assert rows["server.port"]["source"] == "default"


def test_a_short_setting_keeps_its_source_on_its_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config"]) == 0

    lines = capsys.readouterr().out.splitlines()
    port = next(line for line in lines if line.startswith("server.port "))
    assert port.endswith("= 8642  (default)")


def test_wrap_breaks_after_slashes_and_splits_only_a_word_longer_than_a_line() -> None:
    path = "/" + "a" * 20 + "/" + "b" * 20 + "/config.toml"
    assert wrap(path, first="file = ", rest="  ", width=34) == [
        "file = /" + "a" * 20 + "/",
        "  " + "b" * 20 + "/config.toml",
    ]
    assert wrap("x" * 25, first="k = ", rest="  ", width=12) == [
        "k = xxxxxxxx",
        "  xxxxxxxxxx",
        "  xxxxxxx",
    ]
    assert wrap('["one", "two"]', first="k = ", rest="    ", width=14) == [
        'k = ["one",',
        '    "two"]',
    ]
