"""A real split GGUF: the embedded model written again as three parts by llama.cpp's own
gguf-py, then found by discovery as one model and served by llama.cpp through the runtime,
answering exactly as the single file does."""

from __future__ import annotations

import asyncio
from pathlib import Path

import gguf
import pytest
from gguf_split import split_gguf
from gguf_writer import settings_with
from hardware_fakes import build_snapshot

from hybrid.errors import ModelFileError
from hybrid.generation import GenerationRequest, SamplingParams
from hybrid.local.runtime import LocalRuntime
from hybrid.models.catalog import discover_models, read_model_info
from hybrid.models.embedded import ensure_embedded_model
from hybrid.models.gguf import read_gguf

pytestmark = pytest.mark.slow

STEM = "gemma-split-Q4_K_M"
PROMPT = "The three primary colors are"


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The embedded model's single GGUF file."""
    return ensure_embedded_model(tmp_path_factory.mktemp("embedded"))


@pytest.fixture(scope="module")
def parts(whole: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """The same model as three parts, alone in a models folder."""
    return split_gguf(whole, tmp_path_factory.mktemp("models"), STEM, parts=3)


def environ(tmp_path: Path) -> dict[str, str]:
    """An environment whose home has no other tool's model store."""
    return {"HOME": str(tmp_path / "user")}


def test_the_parts_are_a_real_split(parts: list[Path], whole: Path) -> None:
    assert [p.name for p in parts] == [f"{STEM}-0000{i}-of-00003.gguf" for i in (1, 2, 3)]
    headers = [read_gguf(parts[0]).metadata] + [_split_keys(p) for p in parts[1:]]
    total = len(read_gguf(whole).tensors)
    assert [(h["split.no"], h["split.count"], h["split.tensors.count"]) for h in headers] == [
        (0, 3, total),
        (1, 3, total),
        (2, 3, total),
    ]


def test_discovery_lists_one_model_of_every_part(
    tmp_path: Path, parts: list[Path], whole: Path
) -> None:
    settings = settings_with(tmp_path / "home", models_dirs=[parts[0].parent])

    entries = discover_models(settings, cwd=tmp_path, environ=environ(tmp_path))

    [entry] = entries
    assert (entry.name, entry.path, entry.error) == (STEM, parts[0], None)
    assert entry.parts == tuple(parts)
    assert entry.size_bytes == sum(p.stat().st_size for p in parts)
    single = read_gguf(whole)
    assert entry.info is not None
    assert sorted(t.name for t in entry.info.tensors) == sorted(t.name for t in single.tensors)
    assert entry.info.layer_bytes == single.layer_bytes
    assert entry.info.other_bytes == single.other_bytes


def test_the_split_model_loads_by_name_and_answers_as_the_single_file(
    tmp_path: Path, parts: list[Path], whole: Path
) -> None:
    split_answer, split_path = _greedy(tmp_path / "a", Path(STEM), [parts[0].parent])
    single_answer, single_path = _greedy(tmp_path / "b", whole, [])

    assert split_path == parts[0] and single_path == whole
    assert split_answer.strip(), "the split model generated text"
    assert split_answer == single_answer


def _greedy(home: Path, model: Path, models_dirs: list[Path]) -> tuple[str, Path | None]:
    """Load ``model`` through the runtime, as ``hybrid serve --model`` does, and complete
    :data:`PROMPT` greedily."""
    settings = settings_with(home, model=model, models_dirs=models_dirs, n_ctx=512)
    machine = build_snapshot(physical_cores=2)
    runtime = LocalRuntime(settings, snapshot=lambda: machine)
    request = GenerationRequest(
        request_id="split-load",
        prompt=PROMPT,
        params=SamplingParams(max_tokens=16, temperature=0.0),
    )

    async def serve() -> tuple[str, Path | None]:
        await runtime.load()
        try:
            assert runtime.error is None, runtime.error
            completion = await runtime.backend().complete(request)
            return completion.text, runtime.loaded_path
        finally:
            await runtime.close()

    return asyncio.run(serve())


def _split_keys(part: Path) -> dict[str, object]:
    """The ``split.*`` keys of a part after the first (it has no architecture, so
    :func:`read_gguf` does not take it)."""
    reader = gguf.GGUFReader(part)
    return {
        name: field.contents() for name, field in reader.fields.items() if name.startswith("split.")
    }


def test_a_later_part_given_as_the_model_says_to_give_the_first(parts: list[Path]) -> None:
    with pytest.raises(ModelFileError) as caught:
        read_model_info(parts[1])
    message = str(caught.value)
    assert "part 2 of 3" in message and parts[0].name in message
