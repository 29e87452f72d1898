"""One reading of a file name's quantization, for discovery's names (``org/repo:Q4_K_M``) and
``hybrid pull``'s choice of file alike."""

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
