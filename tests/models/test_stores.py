"""Discovery of the models other tools keep: each store's real layout, built in a temporary
home with the embedded GGUF as the weights, read in place."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gguf_writer import UINT16, GgufFile, settings_with, tiny_model
from model_stores import hf_model, link, ollama_blob, ollama_model

from hybrid.errors import ModelFileError
from hybrid.models.catalog import discover, discover_models
from hybrid.models.embedded import DEFAULT_MODEL_ID, embedded_model_path, ensure_embedded_model
from hybrid.models.entries import ModelEntry
from hybrid.models.gguf import read_gguf
from hybrid.models.resolve import name_for_path, resolve_model, resolve_name, serve_name
from hybrid.models.stores.roots import store_roots
from hybrid.settings import Settings

TEMPLATE = "{{ if .System }}<start_of_turn>system {{ .System }}{{ end }}{{ .Prompt }}"
PARAMS = {"stop": ["<end_of_turn>"], "num_ctx": 8192, "temperature": 0.7, "top_k": 40}


@pytest.fixture(scope="session")
def gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model's GGUF, assembled once; stores link to it."""
    return ensure_embedded_model(tmp_path_factory.mktemp("embedded"))


def env(tmp_path: Path, **variables: Path) -> dict[str, str]:
    return {"HOME": str(tmp_path / "user"), **{k: str(v) for k, v in variables.items()}}


def settings(tmp_path: Path, **options: object) -> Settings:
    return settings_with(tmp_path / "hybrid-home", **options)  # type: ignore[arg-type]


def by_name(entries: list[ModelEntry]) -> dict[str, ModelEntry]:
    return {entry.name: entry for entry in entries}


# Ollama


def test_ollama_models_are_listed_by_name_tag_and_served_from_the_blob(
    tmp_path: Path, gguf: Path
) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    ollama_model(root, "gemma3:270m", gguf, template=TEMPLATE, params=PARAMS, system="Be brief.")
    ollama_model(root, "gemma3:latest", gguf)
    ollama_model(root, "someone/tuned:v2", gguf)
    ollama_model(root, "repo-GGUF:Q4_K_M", gguf, host="hf.co", namespace="org")

    entries = by_name(discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path)))

    assert list(entries) == [
        "gemma3:270m", "gemma3:latest", "hf.co/org/repo-GGUF:Q4_K_M", "someone/tuned:v2"
    ]  # fmt: skip
    model = entries["gemma3:270m"]
    assert model.metadata is not None and model.metadata.manifest is not None
    digest = json.loads(model.metadata.manifest.read_text())["layers"][0]["digest"]
    blob = root / "blobs" / digest.replace(":", "-")
    assert model.source == "ollama" and model.path == blob and model.path.resolve() == gguf
    assert model.info is not None and model.info.architecture == "gemma3"
    assert (model.quantization, model.context_length) == ("Q4_K_M", 32768)
    assert model.chat_template is False and model.tools is False
    assert model.metadata is not None and model.metadata.template == TEMPLATE
    assert model.metadata.system == "Be brief."
    assert model.metadata.params["top_k"] == 40
    assert model.defaults.stop == ("<end_of_turn>",)
    assert (model.defaults.n_ctx, model.defaults.temperature) == (8192, 0.7)
    assert entries["gemma3:latest"].path == blob, "two tags of one blob are both listed"


def test_ollama_models_environment_variable_names_the_store(tmp_path: Path, gguf: Path) -> None:
    store = tmp_path / "elsewhere"
    ollama_model(store, "gemma3:270m", gguf)
    ollama_model(tmp_path / "user" / ".ollama" / "models", "ignored:1b", gguf)

    entries = discover_models(
        settings(tmp_path), cwd=tmp_path, environ=env(tmp_path, OLLAMA_MODELS=store)
    )

    assert [entry.name for entry in entries] == ["gemma3:270m"]


def test_an_ollama_model_is_picked_by_any_name_ollama_accepts(tmp_path: Path, gguf: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    ollama_model(root, "gemma3:latest", gguf)
    ollama_model(root, "gemma3:270m", gguf)
    names = ["gemma3", "gemma3:latest", "library/gemma3:270m", "ollama:gemma3:270m",
             "registry.ollama.ai/library/gemma3", "GEMMA3:270M"]  # fmt: skip

    for name in names:
        path = resolve_name(settings(tmp_path), name, cwd=tmp_path, environ=env(tmp_path))
        assert path.parent == root / "blobs" and path.resolve() == gguf, name


def test_local_model_takes_an_ollama_name_and_serve_gets_the_blob(
    tmp_path: Path, gguf: Path
) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    ollama_model(root, "gemma3:270m", gguf)
    configured = settings(tmp_path, model=Path("gemma3:270m"))

    path = resolve_model(configured, cwd=tmp_path, environ=env(tmp_path))
    [entry] = discover_models(configured, cwd=tmp_path, environ=env(tmp_path))

    assert path.parent == root / "blobs" and not path.name.endswith(".gguf")
    assert entry.default and entry.name == "gemma3:270m"
    assert name_for_path(configured, path, cwd=tmp_path, environ=env(tmp_path)) == "gemma3:270m"


def test_a_broken_ollama_manifest_is_listed_with_what_to_do(tmp_path: Path, gguf: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    ollama_model(root, "good:1b", gguf)
    manifest = ollama_model(root, "broken:1b", gguf)
    manifest.write_text('{"layers": [')

    entries = by_name(discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path)))

    assert entries["good:1b"].error is None
    error = entries["broken:1b"].error
    assert error is not None and str(manifest) in error and "not valid JSON" in error
    assert "run `ollama pull broken:1b`" in error
    with pytest.raises(ModelFileError, match=r"not valid JSON"):
        resolve_name(settings(tmp_path), "broken:1b", cwd=tmp_path, environ=env(tmp_path))


def test_an_ollama_manifest_naming_a_missing_blob(tmp_path: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    weights = tiny_model().write(tmp_path / "w.gguf")
    ollama_model(root, "gone:1b", weights)
    blob, _ = ollama_blob(root, weights)
    blob.unlink()

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.info is None and entry.error is not None
    assert f"names blob {blob}, which does not exist" in entry.error
    assert "ollama pull gone:1b" in entry.error


def test_a_partial_ollama_blob_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    weights = tiny_model().write(tmp_path / "w.gguf")
    manifest = ollama_model(root, "cut:1b", weights)
    data = json.loads(manifest.read_text())
    blob = root / "blobs" / ("sha256-" + data["layers"][0]["digest"][7:])
    blob.unlink()
    blob.write_bytes(weights.read_bytes()[:-10])

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.error is not None
    size = weights.stat().st_size
    assert f"{blob} has {size - 10:,} bytes but manifest {manifest} says {size:,}" in entry.error
    assert "partial download" in entry.error


def test_an_ollama_manifest_without_weights_is_skipped_with_a_reason(tmp_path: Path) -> None:
    root = tmp_path / "user" / ".ollama" / "models"
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / "big" / "cloud"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(json.dumps({"layers": []}))

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert found.entries == ()
    [skipped] = found.skipped
    assert skipped.path == manifest and "names no model weights" in skipped.reason


# LM Studio


def test_lm_studio_folders_are_read_by_publisher_and_repo(tmp_path: Path, gguf: Path) -> None:
    new = tmp_path / "user" / ".lmstudio" / "models" / "lmstudio-community" / "gemma-GGUF"
    old = tmp_path / "user" / ".cache" / "lm-studio" / "models" / "bartowski" / "tiny-GGUF"
    link(gguf, new / "gemma-3-270m-it-Q4_K_M.gguf")
    link(gguf, new / "mmproj-gemma-F16.gguf")
    tiny_model().write(old / "tiny-Q8_0.gguf")
    tiny_model().write(old / "tiny-Q4_K_M.gguf")

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    names = [(entry.source, entry.name) for entry in found.entries]
    assert names == [
        ("lmstudio", "lmstudio-community/gemma-GGUF:Q4_K_M"),
        ("lmstudio", "bartowski/tiny-GGUF:Q4_K_M"),
        ("lmstudio", "bartowski/tiny-GGUF:Q8_0"),
    ]
    assert found.entries[0].path == new / "gemma-3-270m-it-Q4_K_M.gguf"
    [projector] = found.skipped
    assert projector.path.name == "mmproj-gemma-F16.gguf" and "vision projector" in projector.reason
    path = resolve_name(
        settings(tmp_path),
        "bartowski/tiny-GGUF/tiny-Q8_0.gguf",
        cwd=tmp_path,
        environ=env(tmp_path),
    )
    assert path == old / "tiny-Q8_0.gguf"


# Hugging Face cache


def test_the_hf_cache_is_read_from_its_snapshots(tmp_path: Path, gguf: Path) -> None:
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    snapshot = hf_model(cache, "google/gemma-3-270m-GGUF", {"gemma-3-270m-Q4_K_M.gguf": gguf})

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert (entry.source, entry.name) == ("hf", "google/gemma-3-270m-GGUF:Q4_K_M")
    assert entry.path == snapshot / "gemma-3-270m-Q4_K_M.gguf" and entry.path.resolve() == gguf
    assert entry.info is not None and entry.size_bytes == gguf.stat().st_size
    for name in ("google/gemma-3-270m-GGUF", "hf:google/gemma-3-270m-gguf:q4_k_m",
                 "google/gemma-3-270m-GGUF/gemma-3-270m-Q4_K_M.gguf"):  # fmt: skip
        assert resolve_name(settings(tmp_path), name, cwd=tmp_path, environ=env(tmp_path)) == (
            entry.path
        ), name


@pytest.mark.parametrize("variable", ["HF_HUB_CACHE", "HF_HOME"])
def test_the_hf_cache_follows_its_environment_variables(
    tmp_path: Path, gguf: Path, variable: str
) -> None:
    where = tmp_path / "hf"
    hf_model(
        where / "hub" if variable == "HF_HOME" else where, "org/m-GGUF", {"m-Q4_K_M.gguf": gguf}
    )

    entries = discover_models(
        settings(tmp_path), cwd=tmp_path, environ=env(tmp_path, **{variable: where})
    )

    assert [entry.name for entry in entries] == ["org/m-GGUF:Q4_K_M"]


def split_parts(folder: Path, stem: str) -> list[Path]:
    """A two-part split of a tiny model, with the split.* keys llama.cpp's gguf-split writes."""
    whole = tiny_model()
    first = GgufFile(metadata=list(whole.metadata), tensors=whole.tensors[:4])
    second = GgufFile(tensors=whole.tensors[4:])
    for index, part in enumerate((first, second)):
        part.set("split.no", UINT16, index)
        part.set("split.count", UINT16, 2)
        part.set("split.tensors.count", UINT16, len(whole.tensors))
    return [
        part.write(folder / f"{stem}-{index:05d}-of-00002.gguf")
        for index, part in enumerate((first, second), start=1)
    ]


def test_a_split_gguf_is_one_model_of_every_part(tmp_path: Path) -> None:
    parts = split_parts(tmp_path / "parts", "big-Q4_K_M")
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    hf_model(cache, "org/big-GGUF", {f"Q4_K_M/{p.name}": p for p in parts})
    whole = tiny_model().write(tmp_path / "whole.gguf")

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.name == "org/big-GGUF:Q4_K_M" and entry.path.name == parts[0].name
    assert [p.name for p in entry.parts] == [p.name for p in parts]
    assert entry.size_bytes == sum(p.stat().st_size for p in parts)
    assert entry.info is not None and entry.footprint is not None
    whole_info = read_gguf(whole)
    assert entry.info.layer_bytes == whole_info.layer_bytes
    assert entry.info.other_bytes == whole_info.other_bytes


def test_a_split_gguf_with_a_part_missing_names_it(tmp_path: Path) -> None:
    parts = split_parts(tmp_path / "models", "big-Q4_K_M")
    parts[1].unlink()

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.name == "big-Q4_K_M" and entry.info is None and entry.error is not None
    assert f"split model {parts[0]} is missing 1 of its 2 parts ({parts[1]})" in entry.error
    assert "download the missing parts again" in entry.error
    with pytest.raises(ModelFileError, match="missing 1 of its 2 parts"):
        resolve_name(settings(tmp_path), "big-Q4_K_M", cwd=tmp_path, environ=env(tmp_path))


def test_a_snapshot_link_to_a_pruned_blob_is_listed_with_what_to_do(
    tmp_path: Path, gguf: Path
) -> None:
    weights = tiny_model().write(tmp_path / "w-Q4_K_M.gguf")
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    snapshot = hf_model(cache, "org/w-GGUF", {"w-Q4_K_M.gguf": weights})
    (snapshot / "w-Q4_K_M.gguf").resolve().unlink()  # the blob link's target
    next((cache / "models--org--w-GGUF" / "blobs").iterdir()).unlink()

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.error is not None and "which does not exist" in entry.error
    assert (
        str(snapshot / "w-Q4_K_M.gguf") in entry.error and "download the model again" in entry.error
    )


def test_an_unreadable_header_in_a_store_is_listed_with_the_reason(tmp_path: Path) -> None:
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    junk = tmp_path / "junk.gguf"
    junk.write_bytes(b"<html>rate limited</html>")
    hf_model(cache, "org/junk-GGUF", {"junk-Q4_K_M.gguf": junk})

    [entry] = discover_models(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert entry.info is None and entry.error is not None and "is not a GGUF file" in entry.error


def test_a_vocabulary_only_gguf_is_skipped_with_a_reason(tmp_path: Path) -> None:
    vocab = tiny_model()
    vocab.tensors = []
    path = vocab.write(tmp_path / "models" / "ggml-vocab-llama.gguf")

    found = discover(settings(tmp_path), cwd=tmp_path, environ=env(tmp_path))

    assert found.entries == ()
    assert [(s.path, s.reason) for s in found.skipped] == [
        (path, "a vocabulary-only GGUF (no weights): a tokenizer file, not a model")
    ]


def test_a_vocabulary_only_gguf_given_by_path_is_refused_with_what_to_pass(tmp_path: Path) -> None:
    vocab = tiny_model()
    vocab.tensors = []
    path = vocab.write(tmp_path / "vocab" / "ggml-vocab-llama-spm.gguf")

    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), str(path), cwd=tmp_path, environ=env(tmp_path))
    with pytest.raises(ModelFileError, match="vocabulary-only"):
        resolve_model(settings(tmp_path, model=path), cwd=tmp_path, environ=env(tmp_path))

    message = str(caught.value)
    assert message.startswith(f"{path} is a vocabulary-only GGUF (no weights)")
    assert "Pass a model's .gguf file instead" in message


# llama.cpp's cache


def test_llama_cpp_cache_names_files_by_their_manifest(tmp_path: Path, gguf: Path) -> None:
    cache = tmp_path / "llama"
    link(gguf, cache / "ggml-org_gemma-3-270m-GGUF_gemma-3-270m-Q4_K_M.gguf")
    tiny_model().write(cache / "loose-model.gguf")
    (cache / "manifest=ggml-org=gemma-3-270m-GGUF=Q4_K_M.json").write_text(
        json.dumps({"ggufFile": {"rfilename": "gemma-3-270m-Q4_K_M.gguf"}})
    )

    entries = discover_models(
        settings(tmp_path), cwd=tmp_path, environ=env(tmp_path, LLAMA_CACHE=cache)
    )

    assert [(e.source, e.name) for e in entries] == [
        ("llama.cpp", "ggml-org/gemma-3-270m-GGUF:Q4_K_M"),
        ("llama.cpp", "loose-model"),
    ]
    assert entries[0].info is not None


def test_the_llama_cpp_cache_defaults_to_the_users_cache_folder(tmp_path: Path) -> None:
    roots = store_roots({"HOME": "/home/u"}, platform="linux")
    mac = store_roots({"HOME": "/Users/u"}, platform="darwin")

    assert roots.llama_cpp == Path("/home/u/.cache/llama.cpp")
    assert roots.hf == Path("/home/u/.cache/huggingface/hub")
    assert roots.ollama == Path("/home/u/.ollama/models")
    assert mac.llama_cpp == Path("/Users/u/Library/Caches/llama.cpp")
    assert store_roots({"HOME": "/h", "XDG_CACHE_HOME": "/c"}).hf == Path("/c/huggingface/hub")


# Names across stores


def test_a_name_two_stores_share_is_refused_with_both_listed(tmp_path: Path, gguf: Path) -> None:
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    snapshot = hf_model(cache, "org/m-GGUF", {"m-Q4_K_M.gguf": gguf})
    studio = tmp_path / "user" / ".lmstudio" / "models" / "org" / "m-GGUF" / "m-Q4_K_M.gguf"
    tiny_model().write(studio)
    configured = settings(tmp_path, model=Path("org/m-GGUF:Q4_K_M"))

    with pytest.raises(ModelFileError) as caught:
        resolve_model(configured, cwd=tmp_path, environ=env(tmp_path))
    [missing, *_] = discover_models(configured, cwd=tmp_path, environ=env(tmp_path))

    message = str(caught.value)
    assert "'org/m-GGUF:Q4_K_M' matches 2 models" in message
    assert f"lmstudio:org/m-GGUF:Q4_K_M ({studio})" in message
    assert f"hf:org/m-GGUF:Q4_K_M ({snapshot / 'm-Q4_K_M.gguf'})" in message
    assert "Pick one by its store prefix" in message
    assert missing.default and missing.error == message
    assert resolve_name(
        configured, "hf:org/m-GGUF:Q4_K_M", cwd=tmp_path, environ=env(tmp_path)
    ) == (snapshot / "m-Q4_K_M.gguf")
    assert (
        resolve_name(configured, "lmstudio:org/m-GGUF:Q4_K_M", cwd=tmp_path, environ=env(tmp_path))
        == studio
    )


def test_serve_name_falls_back_to_the_path_when_no_name_is_unique(tmp_path: Path) -> None:
    # The same publisher/repo/file in LM Studio's old and new folders: every name picks both.
    new = tmp_path / "user" / ".lmstudio" / "models" / "org" / "m-GGUF" / "m-Q4_K_M.gguf"
    old = tmp_path / "user" / ".cache" / "lm-studio" / "models" / "org" / "m-GGUF" / "m-Q4_K_M.gguf"
    tiny_model().write(new)
    tiny_model(n_layers=3).write(old)
    cache = tmp_path / "user" / ".cache" / "huggingface" / "hub"
    snapshot = hf_model(cache, "org/m-GGUF", {"m-Q4_K_M.gguf": tiny_model().write(tmp_path / "w")})

    assert serve_name(settings(tmp_path), new, cwd=tmp_path, environ=env(tmp_path)) == str(new)
    hf_file = snapshot / "m-Q4_K_M.gguf"
    name = serve_name(settings(tmp_path), hf_file, cwd=tmp_path, environ=env(tmp_path))
    assert name == "hf:org/m-GGUF:Q4_K_M"
    assert resolve_name(settings(tmp_path), name, cwd=tmp_path, environ=env(tmp_path)) == hf_file


def test_serve_name_reads_names_as_resolve_name_does_without_assembling_anything(
    tmp_path: Path,
) -> None:
    # A models-folder file named like the embedded model: its plain name means the embedded
    # model (resolve_name's second check), so the name given is the prefixed one.
    mine = tiny_model().write(tmp_path / "models" / f"{DEFAULT_MODEL_ID}.gguf")

    name = serve_name(settings(tmp_path), mine, cwd=tmp_path, environ=env(tmp_path))

    assert name == f"folder:{DEFAULT_MODEL_ID}"
    assert not embedded_model_path(settings(tmp_path).home).exists()
    assert resolve_name(settings(tmp_path), name, cwd=tmp_path, environ=env(tmp_path)) == mine


def test_local_stores_setting_turns_stores_off(tmp_path: Path, gguf: Path) -> None:
    ollama_model(tmp_path / "user" / ".ollama" / "models", "gemma3:270m", gguf)
    off = Settings.model_validate({"home": tmp_path / "h", "local": {"stores": ["hf"]}})

    assert discover_models(off, cwd=tmp_path, environ=env(tmp_path)) == []
    with pytest.raises(ModelFileError, match="no model of that name"):
        resolve_name(off, "gemma3:270m", cwd=tmp_path, environ=env(tmp_path))


def test_an_unknown_name_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), "nothing:1b", cwd=tmp_path, environ=env(tmp_path))

    message = str(caught.value)
    assert f"{tmp_path / 'user' / '.ollama' / 'models'} (ollama)" in message
    assert "`hybrid models`" in message


def test_discovery_reads_the_process_environment_by_default(
    tmp_path: Path, gguf: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "ollama"
    ollama_model(store, "gemma3:270m", gguf)
    monkeypatch.setenv("OLLAMA_MODELS", str(store))

    assert [e.name for e in discover_models(settings(tmp_path), cwd=tmp_path)] == ["gemma3:270m"]


def test_a_split_file_named_by_path_is_checked_whole(tmp_path: Path) -> None:
    parts = split_parts(tmp_path / "x", "m")

    assert resolve_name(settings(tmp_path), str(parts[0]), cwd=tmp_path) == parts[0]
    parts[1].unlink()
    with pytest.raises(ModelFileError, match="missing 1 of its 2 parts"):
        resolve_name(settings(tmp_path), str(parts[0]), cwd=tmp_path)


def test_a_folder_given_as_the_model_lists_the_gguf_files_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "qwen"
    folder.mkdir()
    (folder / "model-Q4_K_M.gguf").write_bytes(b"")
    (folder / "README.md").write_text("")
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), "./qwen", cwd=tmp_path, environ=env(tmp_path))
    assert str(caught.value) == (
        "./qwen is a folder; pass one of the .gguf files in it: ./qwen/model-Q4_K_M.gguf"
    )
    # The settings keep --model as a Path, which drops the "./": the message puts it back.
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), str(Path("./qwen")), cwd=tmp_path, environ=env(tmp_path))
    assert str(caught.value).startswith("./qwen is a folder; pass one of the .gguf files")

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelFileError) as caught:
        resolve_name(settings(tmp_path), str(empty), cwd=tmp_path, environ=env(tmp_path))
    assert str(caught.value).startswith(f"{empty} is a folder, and it holds no .gguf file")
