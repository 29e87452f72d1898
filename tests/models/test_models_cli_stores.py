"""``hybrid models`` over other tools' stores: one line per model, broken ones with their
error, details on ``--verbose``, everything in ``--json``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf_writer import tiny_model
from model_stores import hf_model, link, ollama_model
from test_models_cli import FakeProbe, listing, table

from hybrid.models.embedded import ensure_embedded_model


@pytest.fixture(scope="module")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_embedded_model(tmp_path_factory.mktemp("embedded"))


def stores(tmp_path: Path, gguf: Path) -> dict[str, Path]:
    """An Ollama store with a good, a broken and a partial model; LM Studio with a projector;
    a split model with a part missing in the Hugging Face cache."""
    root = tmp_path / "user" / ".ollama" / "models"
    ollama_model(
        root,
        "gemma3:270m",
        gguf,
        template="{{ .Prompt }}",
        params={"stop": ["<end_of_turn>"], "num_ctx": 4096},
    )
    broken = ollama_model(root, "broken:1b", gguf)
    broken.write_text("not json")
    studio = tmp_path / "user" / ".lmstudio" / "models" / "pub" / "tiny-GGUF"
    tiny_model().write(studio / "tiny-Q4_K_M.gguf")
    link(gguf, studio / "mmproj-tiny-f16.gguf")
    part = tiny_model().write(tmp_path / "big-00001-of-00002.gguf")
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    hf_model(cache, "org/big-GGUF", {part.name: part})
    return {"broken": broken}


def test_every_store_is_one_line_per_model_and_broken_ones_say_why(
    tmp_path: Path, gguf: Path
) -> None:
    made = stores(tmp_path, gguf)

    text, err = listing(tmp_path, FakeProbe())

    rows = {row["NAME"]: row for row in table(text)}
    big = "org/big-GGUF/big-00001-of-00002.gguf"  # no quantization in the name: by file
    assert list(rows) == ["broken:1b", "gemma3:270m", "pub/tiny-GGUF:Q4_K_M", big]
    good = rows["gemma3:270m"]
    assert (good["SOURCE"], good["QUANT"], good["CHAT"], good["TOOLS"]) == (
        "ollama", "Q4_K_M", "no", "no"
    )  # fmt: skip
    assert good["FITS"] == "yes" and good["TOK/S"].startswith("~")
    assert rows["broken:1b"]["SIZE"] == "-" and rows[big]["FITS"] == "-"
    problems = text[text.index("Problems:") :]
    assert f"broken:1b: Ollama manifest {made['broken']} is not valid JSON" in problems
    assert f"{big}: split model" in problems and "missing 1 of its 2 parts" in problems
    assert "Skipped 1 .gguf files that are not models (--verbose says why)." in text
    assert "(ollama)" in text and "(hf)" in text, "the stores searched are named"
    assert err == ""


def test_verbose_shows_paths_store_metadata_and_skipped_files(tmp_path: Path, gguf: Path) -> None:
    stores(tmp_path, gguf)

    text, _ = listing(tmp_path, FakeProbe(), verbose=True)

    details = text[text.index("Details:") :]
    assert "  gemma3:270m (ollama)\n    path: " in details
    assert "/blobs/sha256-" in details and "also picked by: library/gemma3:270m" in details
    assert "store template: '{{ .Prompt }}' (kept as information" in details
    assert "store params: stop=['<end_of_turn>'], num_ctx=4096" in details
    assert "mmproj-tiny-f16.gguf: a vision projector (mmproj)" in text


def test_json_carries_source_store_metadata_and_verdict(tmp_path: Path, gguf: Path) -> None:
    stores(tmp_path, gguf)

    payload = json.loads(listing(tmp_path, FakeProbe(), as_json=True)[0])

    models = {model["name"]: model for model in payload["models"]}
    good = models["gemma3:270m"]
    assert good["source"] == "ollama" and Path(good["path"]).resolve() == gguf
    assert good["tools"] is False and good["fits"] is True
    assert good["predicted_tokens_per_s"] == good["plan"]["predicted_tokens_per_s"] > 0
    assert good["store"]["defaults"] == {
        "stop": ["<end_of_turn>"],
        "n_ctx": 4096,
        "temperature": None,
    }
    assert good["store"]["template"] == "{{ .Prompt }}"
    assert models["broken:1b"]["error"].startswith("Ollama manifest")
    assert [item["reason"][:20] for item in payload["skipped"]] == ["a vision projector ("]
    assert {item["store"] for item in payload["stores"]} == {
        "ollama",
        "lmstudio",
        "hf",
        "llama.cpp",
    }


@pytest.mark.slow
def test_an_ollama_model_is_served_by_name_from_its_blob(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from gguf_writer import settings_with
    from hardware_fakes import build_snapshot

    from hybrid.local.runtime import LocalRuntime

    store = tmp_path / "ollama"
    ollama_model(store, "gemma3:270m", gguf)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))
    settings = settings_with(tmp_path / "home", model=Path("gemma3:270m"), n_ctx=512)
    machine = build_snapshot(physical_cores=2)
    runtime = LocalRuntime(settings, snapshot=lambda: machine)

    async def serve() -> Path | None:
        await runtime.load()
        try:
            return runtime.loaded_path
        finally:
            await runtime.close()

    loaded = asyncio.run(serve())

    assert runtime.error is None
    assert loaded is not None and loaded.parent == store / "blobs"
    assert loaded.name.startswith("sha256-") and loaded.resolve() == gguf
    assert not list((tmp_path / "home").rglob("*.gguf")), "nothing was copied"
