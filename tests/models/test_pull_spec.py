"""``REPO[:QUANT|FILE]`` parsing, quantization tags, and the choice of file in a repository."""

from __future__ import annotations

import pytest

from hybrid.errors import ConfigError, ModelDownloadError
from hybrid.models.pull_spec import RepoFile, choose, gguf_choices, parse_request


@pytest.mark.parametrize(
    ("text", "repo", "quant", "file"),
    [
        (
            "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
            "bartowski/Qwen2.5-1.5B-Instruct-GGUF",
            None,
            None,
        ),
        ("org/name:Q4_K_M", "org/name", "Q4_K_M", None),
        ("org/name:q8_0", "org/name", "q8_0", None),
        ("org/name:sub/Model-Q4_K_M.GGUF", "org/name", None, "sub/Model-Q4_K_M.GGUF"),
        ("hf.co/org/name:Q4_K_M", "org/name", "Q4_K_M", None),
        ("https://huggingface.co/org/name", "org/name", None, None),
    ],
)
def test_requests_parse(text: str, repo: str, quant: str | None, file: str | None) -> None:
    request = parse_request(text)
    assert (request.repo, request.quant, request.file) == (repo, quant, file)


@pytest.mark.parametrize("text", ["name-only", "a/b/c", "org/name:", "", "/name"])
def test_malformed_requests_say_how_to_write_one(text: str) -> None:
    with pytest.raises(ConfigError, match=r"org/name|colon"):
        parse_request(text)


def files(*paths: str) -> list[RepoFile]:
    return [RepoFile(path, 100) for path in paths]


def test_split_sets_are_one_choice_and_incomplete_sets_none() -> None:
    choices = gguf_choices(
        files(
            "M-Q8_0-00001-of-00002.gguf",
            "M-Q8_0-00002-of-00002.gguf",
            "M-Q6_K-00001-of-00002.gguf",  # its second part is missing
            "mmproj-M-f16.gguf",
            "M-mmproj-model-F16.gguf",  # a projector named after its model
            "README.md",
        )
    )
    assert [c.describe() for c in choices] == ["M-Q8_0-00001-of-00002.gguf (+1 more parts)"]
    assert choices[0].size == 200


def test_no_quantization_takes_the_only_model_or_q4_k_m() -> None:
    assert choose(parse_request("o/n"), files("M-Q8_0.gguf")).first.path == "M-Q8_0.gguf"
    both = files("M-Q8_0.gguf", "M-Q4_K_M.gguf")
    assert choose(parse_request("o/n"), both).first.path == "M-Q4_K_M.gguf"
    with pytest.raises(ModelDownloadError, match="holds 2 GGUF models; name one"):
        choose(parse_request("o/n"), files("M-Q8_0.gguf", "M-Q6_K.gguf"))


def test_an_exact_tag_beats_an_unsloth_variant() -> None:
    repo = files("M-Q4_K_XL.gguf", "M-UD-Q4_K_XL.gguf")
    assert choose(parse_request("o/n:ud-q4_k_xl"), repo).first.path == "M-UD-Q4_K_XL.gguf"
    assert choose(parse_request("o/n:Q4_K_XL"), repo).first.path == "M-Q4_K_XL.gguf"


def test_a_file_request_for_one_part_takes_the_whole_set() -> None:
    repo = files("M-Q8_0-00002-of-00002.gguf", "M-Q8_0-00001-of-00002.gguf")
    choice = choose(parse_request("o/n:M-Q8_0-00002-of-00002.gguf"), repo)
    assert [f.path for f in choice.files] == [
        "M-Q8_0-00001-of-00002.gguf",
        "M-Q8_0-00002-of-00002.gguf",
    ]
