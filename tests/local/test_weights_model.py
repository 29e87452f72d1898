"""The real embedded model's weights in huge pages: not mapped from the file, the same answers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from greedy import greedy_text

import hybrid.local.weights as weights_module
from hybrid.local.engine import LlamaEngine, LoadOptions
from hybrid.local.weights import available_memory, huge_pages_available
from hybrid.models.embedded import ensure_embedded_model

pytestmark = pytest.mark.slow

PROMPT = "The three most important inventions of the nineteenth century were"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_embedded_model(tmp_path_factory.mktemp("home"))


def load(path: Path, huge_page_weights: bool | None) -> LlamaEngine:
    return LlamaEngine.load(
        path,
        LoadOptions(
            n_ctx=512,
            n_threads=2,
            n_gpu_layers=0,
            n_batch=64,
            kv_cache_type="q8_0",
            huge_page_weights=huge_page_weights,
        ),
    )


@pytest.fixture
def engines(model_path: Path) -> Iterator[list[LlamaEngine]]:
    loaded: list[LlamaEngine] = []
    yield loaded
    for engine in loaded:
        engine.close()


def greedy(engine: LlamaEngine) -> str:
    return greedy_text(engine, PROMPT)


def file_is_mapped(path: Path) -> bool:
    maps = Path("/proc/self/maps").read_text()
    return any(line.endswith(str(path.resolve())) for line in maps.splitlines())


@pytest.mark.skipif(not huge_pages_available(), reason="needs Linux transparent huge pages")
def test_huge_page_weights_answer_as_the_mapped_file_does(
    model_path: Path, engines: list[LlamaEngine]
) -> None:
    copied = load(model_path, huge_page_weights=True)
    engines.append(copied)
    assert copied.weights == "huge pages"
    assert not file_is_mapped(model_path)
    copied_answer = greedy(copied)

    mapped = load(model_path, huge_page_weights=False)
    engines.append(mapped)
    assert mapped.weights == "mapped"
    assert file_is_mapped(model_path)

    assert copied_answer
    assert greedy(mapped) == copied_answer


def test_the_default_follows_the_machine(model_path: Path, engines: list[LlamaEngine]) -> None:
    room = available_memory() >= 2 * model_path.stat().st_size
    engines.append(load(model_path, huge_page_weights=None))

    assert engines[0].weights == ("huge pages" if huge_pages_available() and room else "mapped")


def test_weights_the_kernel_leaves_in_small_pages_are_mapped_instead(
    model_path: Path, engines: list[LlamaEngine], monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(regions: object) -> int:
        return 0

    monkeypatch.setattr(weights_module, "collapse", refuse)
    engines.append(load(model_path, huge_page_weights=True))

    assert engines[0].weights == "mapped"
    assert file_is_mapped(model_path)
    assert greedy(engines[0])
