"""One reading of a file name's quantization and of its split suffix (``-00001-of-00003``), for
discovery's names (``org/repo:Q4_K_M``) and ``hybrid pull``'s choice of file alike."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hybrid.models.pull_spec import RepoFile, gguf_choices
from hybrid.models.stores.files import group_models, repo_models

NAMES = [
    ("qwen2.5-1.5b-instruct-q4_k_m.gguf", "q4_k_m"),
    ("gemma-3-270m-it-Q8_0.gguf", "Q8_0"),
    ("Llama-3.2-3B-Instruct-IQ2_XXS.gguf", "IQ2_XXS"),
    ("Qwen2.5-7B-Instruct-IQ3_XXS.gguf", "IQ3_XXS"),
    ("Model-IQ4_NL.gguf", "IQ4_NL"),
    ("llama-2-7b-chat.Q4_K_M.gguf", "Q4_K_M"),
    ("Model.i1-IQ3_XS.gguf", "IQ3_XS"),
    ("Qwen3-4B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"),
    ("Q8_0/Big-Q8_0-00001-of-00003.gguf", "Q8_0"),
    ("Llama-3.2-3B-Instruct-IQ2_XXS-00001-of-00002.gguf", "IQ2_XXS"),
    ("Llama-3-8B-Instruct-Q4_K_M-imat.gguf", "Q4_K_M"),
    ("Model-Q4_0_4_8.gguf", "Q4_0_4_8"),
    ("Model-TQ1_0.gguf", "TQ1_0"),
    ("gpt-oss-20b-MXFP4.gguf", "MXFP4"),
    ("Model-MXFP4_MOE.gguf", "MXFP4_MOE"),
    ("gemma-3-1b-it-BF16.gguf", "BF16"),
    ("Model-F16.gguf", "F16"),
    ("Model-fp16.gguf", "fp16"),
    ("Model-F32.gguf", "F32"),
    ("model.gguf", None),
]


def discovered_name(path_in_repo: str) -> str:
    """The name discovery gives the file in a Hugging Face cache or LM Studio repository."""
    snapshot = Path("/cache/snapshots/abc")
    [model], _ = group_models([snapshot / path_in_repo])
    [found] = repo_models("hf", "org/repo", [(model, path_in_repo)])
    return found.name


def pulled_quant(path_in_repo: str) -> str | None:
    """The quantization ``hybrid pull`` reads for the file (with every part of a split) in a
    repository's listing."""
    split = re.search(r"-00001-of-(\d{5})\.gguf$", path_in_repo)
    count = int(split[1]) if split else 1
    paths = [path_in_repo.replace("-00001-of-", f"-{n:05d}-of-") for n in range(1, count + 1)]
    [choice] = gguf_choices([RepoFile(path, 100) for path in paths])
    return choice.quant


@pytest.mark.parametrize("reader", ["discovery", "pull"])
@pytest.mark.parametrize(("file_name", "tag"), NAMES)
def test_discovery_and_pull_read_the_same_quantization(
    file_name: str, tag: str | None, reader: str
) -> None:
    if reader == "pull":
        assert pulled_quant(file_name) == tag
    elif tag is None:
        assert discovered_name(file_name) == f"org/repo/{file_name}"
    else:
        assert discovered_name(file_name) == f"org/repo:{tag.upper()}"


def parts(count: int, name: str) -> list[str]:
    """The file names of a ``count``-part split whose first part is ``name``."""
    return [name.replace("00001-of-", f"{n:05d}-of-").replace("00001-OF-", f"{n:05d}-OF-")
            for n in range(1, count + 1)]  # fmt: skip


LISTINGS = [
    parts(2, "Big-Q8_0-00001-of-00002.gguf"),
    parts(3, "Q8_0/Big-Q8_0-00001-of-00003.gguf"),
    parts(2, "MODEL-Q4_K_M-00001-OF-00002.GGUF"),
    ["model-1-of-2.gguf", "model-Q4_K_M.gguf"],
    # Nothing before the split suffix: not llama.cpp's naming, so one model per file for both.
    parts(2, "-00001-of-00002.gguf"),
]


def discovered_models(listing: list[str]) -> list[tuple[str, ...]]:
    """The files of each model discovery finds in a snapshot holding ``listing``."""
    snapshot = Path("/cache/snapshots/abc")
    models, _ = group_models([snapshot / path for path in listing])
    return sorted(tuple(p.relative_to(snapshot).as_posix() for p in m.files) for m in models)


def pulled_models(listing: list[str]) -> list[tuple[str, ...]]:
    """The files of each model ``hybrid pull`` sees in a repository listing ``listing``."""
    choices = gguf_choices([RepoFile(path, 100) for path in listing])
    return sorted(tuple(f.path for f in choice.files) for choice in choices)


@pytest.mark.parametrize("listing", LISTINGS, ids=lambda listing: listing[0])
def test_discovery_and_pull_group_split_parts_alike(listing: list[str]) -> None:
    assert discovered_models(listing) == pulled_models(listing)
