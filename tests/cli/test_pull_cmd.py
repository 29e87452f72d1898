"""``hybrid pull`` from the command line, against the fake hub named by ``HF_ENDPOINT``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_hub import FakeHub, HubFile
from gguf_writer import settings_with, tiny_model
from model_stores import ollama_model

from hybrid.cli import main
from hybrid.models.resolve import resolve_name

PAYLOAD = os.urandom(1 << 20)


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub() as fake:
        fake.add("acme/Tiny-GGUF", {"Tiny-Q4_K_M.gguf": HubFile(PAYLOAD)})
        for name in ("HF_TOKEN", "HF_HOME", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
        monkeypatch.setenv("HOME", str(tmp_path))
        yield fake


def test_pull_prints_the_path_and_the_serve_line(
    hub: FakeHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "acme/Tiny-GGUF:Q4_K_M"]) == 0

    out, err = capsys.readouterr()
    snapshot = next((tmp_path / "hf").rglob("Tiny-Q4_K_M.gguf"))
    assert str(snapshot) in out and "checksum verified" in out
    serve = out.strip().splitlines()[-1]
    assert serve.startswith("Serve it with: hybrid serve --model ")
    assert "100%" in err  # the progress bar, on stderr


def test_the_serve_line_names_the_pulled_file_when_ollama_holds_the_same_repo(
    hub: FakeHub,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ollama's `ollama pull hf.co/acme/Real-GGUF:Q4_K_M` copy answers to acme/Real-GGUF:Q4_K_M too.
    hub.add("acme/Real-GGUF", {"Real-Q4_K_M.gguf": HubFile(tiny_model().to_bytes())})
    other = tiny_model(n_layers=3).write(tmp_path / "ollama-copy.gguf")
    ollama_model(
        tmp_path / ".ollama" / "models", "Real-GGUF:Q4_K_M", other, host="hf.co", namespace="acme"
    )
    monkeypatch.chdir(tmp_path)

    assert main(["pull", "acme/Real-GGUF:Q4_K_M", "--quiet"]) == 0

    serve = capsys.readouterr().out.strip().splitlines()[-1]
    name = serve.removeprefix("Serve it with: hybrid serve --model ")
    snapshot = next((tmp_path / "hf").rglob("Real-Q4_K_M.gguf"))
    assert name == "hf:acme/Real-GGUF:Q4_K_M"
    assert resolve_name(settings_with(tmp_path / "data"), name) == snapshot


def test_a_pull_error_is_one_line_and_exit_1(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "acme/Tiny-GGUF:Q8_0", "--quiet"]) == 1

    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert err.startswith("hybrid: error: acme/Tiny-GGUF has no Q8_0 GGUF") and "Q4_K_M" in err


def test_a_malformed_repository_is_a_usage_error(
    hub: FakeHub, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["pull", "just-a-name"]) == 2
    assert "org/name" in capsys.readouterr().err
