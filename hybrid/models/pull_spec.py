"""What ``hybrid pull REPO[:QUANT|FILE]`` asks for, and which files of a repository answer it.

A Hugging Face repository of GGUF files usually holds one model in many quantizations
(``Qwen2.5-1.5B-Instruct-Q4_K_M.gguf``, ``...-Q8_0.gguf``), sometimes split into parts
(``...-Q8_0-00001-of-00002.gguf``, llama.cpp's ``gguf-split`` naming), sometimes in a folder per
quantization, and sometimes with a vision projector (``mmproj-*.gguf``) beside it.  This module
groups the repository's files into :class:`GgufChoice` units (one file, or every part of a split
set), reads each unit's quantization tag from its name with
:func:`~hybrid.models.stores.files.quant_tag` (the reader discovery names models with), and
picks the one the user asked for.  When nothing matches, the error lists what the repository
does hold.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hybrid.errors import ConfigError, ModelDownloadError
from hybrid.models.stores.files import is_projector, quant_tag, split_part

DEFAULT_QUANT = "Q4_K_M"
"""Picked when the user names no quantization and the repository holds several (as Ollama's
``hf.co/`` pulls do)."""

_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_HUB_PREFIXES = ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/")


@dataclass(frozen=True)
class PullRequest:
    """A parsed ``REPO[:QUANT|FILE]``.

    Attributes:
        repo: The repository id, ``org/name``.
        quant: The quantization asked for (``Q4_K_M``), as typed; None when not given.
        file: The file asked for (a path inside the repository); None when not given.
    """

    repo: str
    quant: str | None = None
    file: str | None = None

    @property
    def label(self) -> str:
        """The request as the user would type it."""
        suffix = self.file or self.quant
        return f"{self.repo}:{suffix}" if suffix else self.repo


@dataclass(frozen=True)
class RepoFile:
    """A file of a repository as the hub lists it.

    Attributes:
        path: Its path inside the repository (``rfilename``).
        size: Its size in bytes, when listed.
        sha256: The sha256 of its content (the LFS oid), when the hub publishes one.
    """

    path: str
    size: int | None = None
    sha256: str | None = None


@dataclass(frozen=True)
class GgufChoice:
    """One model in a repository: a single GGUF file, or every part of a split set.

    Attributes:
        files: The file, or the parts in order (the first one is what llama.cpp opens).
        quant: Its quantization tag as written in the name (``Q4_K_M``), or None.
    """

    files: tuple[RepoFile, ...]
    quant: str | None

    @property
    def first(self) -> RepoFile:
        """The file llama.cpp opens (the first part of a split set)."""
        return self.files[0]

    @property
    def size(self) -> int | None:
        """Total bytes of every file, when all sizes are listed."""
        sizes = [f.size for f in self.files]
        return None if any(s is None for s in sizes) else sum(s for s in sizes if s is not None)

    def describe(self) -> str:
        """The first file's path, and the number of parts of a split set."""
        if len(self.files) == 1:
            return self.first.path
        return f"{self.first.path} (+{len(self.files) - 1} more parts)"


def parse_request(text: str) -> PullRequest:
    """Parse ``REPO[:QUANT|FILE]``.

    ``REPO`` is ``org/name``, optionally written as a hub URL (``hf.co/org/name``,
    ``https://huggingface.co/org/name``).  After a colon, a value ending in ``.gguf`` is a file
    (a path inside the repository), anything else a quantization tag.

    Args:
        text: What the user typed.

    Returns:
        The request.

    Raises:
        ConfigError: The repository id is malformed, or the part after the colon is empty.
    """
    spec = text.strip()
    for prefix in _HUB_PREFIXES:
        if spec.lower().startswith(prefix):
            spec = spec[len(prefix) :]
            break
    repo, sep, rest = spec.partition(":")
    repo = repo.strip("/")
    if not _REPO_ID.match(repo):
        raise ConfigError(
            f"{text!r} is not a Hugging Face repository: write it as org/name, optionally "
            "followed by :QUANT or :FILE (e.g. bartowski/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M)"
        )
    if sep and not rest:
        raise ConfigError(
            f"{text!r} ends with ':' but names no quantization or file: add one "
            f"(e.g. {repo}:{DEFAULT_QUANT}) or drop the colon"
        )
    if not rest:
        return PullRequest(repo)
    if rest.lower().endswith(".gguf"):
        return PullRequest(repo, file=rest.lstrip("/"))
    return PullRequest(repo, quant=rest)


def gguf_choices(files: Iterable[RepoFile]) -> list[GgufChoice]:
    """Group a repository's GGUF files into models: single files and complete split sets.

    Vision projectors (``mmproj`` in the name, :func:`~hybrid.models.stores.files.is_projector`)
    are left out: they are not language models.  A split set
    with a part missing is left out too (it could not be loaded).

    Args:
        files: The repository's files, as the hub lists them.

    Returns:
        The choices, sorted by first file path.
    """
    singles: list[GgufChoice] = []
    sets: dict[tuple[str, int], dict[int, RepoFile]] = {}
    for repo_file in files:
        name = repo_file.path.rsplit("/", 1)[-1]
        if not name.lower().endswith(".gguf") or is_projector(name):
            continue
        part = split_part(repo_file.path)
        if part is None:
            singles.append(GgufChoice((repo_file,), quant_tag(repo_file.path)))
            continue
        prefix, index, count = part
        sets.setdefault((prefix, count), {})[index] = repo_file
    for (_, count), parts in sets.items():
        if sorted(parts) == list(range(1, count + 1)):
            ordered = tuple(parts[i] for i in range(1, count + 1))
            singles.append(GgufChoice(ordered, quant_tag(ordered[0].path)))
    return sorted(singles, key=lambda choice: choice.first.path)


def choose(request: PullRequest, files: Sequence[RepoFile]) -> GgufChoice:
    """Pick the GGUF model the request names among the repository's files.

    * a file: that file (for a part of a split set, the whole set);
    * a quantization: the model whose tag matches, case-insensitively (a ``UD-`` prefix,
      Unsloth's, may be left out);
    * neither: the only model, else the :data:`DEFAULT_QUANT` one.

    Args:
        request: What the user asked for.
        files: The repository's files.

    Returns:
        The choice.

    Raises:
        ModelDownloadError: The repository holds no GGUF file; or the file or quantization
            asked for is not in it, or several models match: the message lists what exists.
    """
    choices = gguf_choices(files)
    if not choices:
        listed = ", ".join(f.path for f in files[:8]) or "no files"
        more = f" and {len(files) - 8} more" if len(files) > 8 else ""
        raise ModelDownloadError(
            f"{request.repo} holds no GGUF model file ({listed}{more}); hybrid runs GGUF "
            "models only: pull a repository of GGUF files (their names usually end in -GGUF)"
        )
    if request.file is not None:
        wanted = request.file.lower()
        for choice in choices:
            if any(f.path.lower() == wanted for f in choice.files):
                return choice
        raise ModelDownloadError(
            f"{request.repo} has no file {request.file}; its GGUF files are: "
            f"{_listing(choices)}. Pull one of them (hybrid pull {request.repo}:FILE)"
        )
    if request.quant is None:
        if len(choices) == 1:
            return choices[0]
        default = [c for c in choices if _same_quant(c.quant, DEFAULT_QUANT)]
        if len(default) == 1:
            return default[0]
        raise ModelDownloadError(
            f"{request.repo} holds {len(choices)} GGUF models; name one by quantization or "
            f"file (hybrid pull {request.repo}:QUANT): {_listing(choices)}"
        )
    wanted_quant = request.quant.upper()
    matches = [c for c in choices if c.quant is not None and c.quant.upper() == wanted_quant]
    if not matches:
        matches = [c for c in choices if _same_quant(c.quant, request.quant)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        quants = sorted({c.quant for c in choices if c.quant is not None}, key=str.upper)
        which = ", ".join(quants) if quants else "none with a recognisable tag"
        raise ModelDownloadError(
            f"{request.repo} has no {request.quant} GGUF; the quantizations it has are: "
            f"{which} (files: {_listing(choices)}). Pull one of them, "
            f"e.g. hybrid pull {request.repo}:{quants[0] if quants else 'FILE'}"
        )
    raise ModelDownloadError(
        f"{request.repo} has {len(matches)} {request.quant} GGUF models: {_listing(matches)}; "
        f"name the file instead (hybrid pull {request.repo}:FILE)"
    )


def _same_quant(tag: str | None, wanted: str) -> bool:
    if tag is None:
        return False
    tag, wanted = tag.upper(), wanted.upper()
    return tag == wanted or tag.removeprefix("UD-") == wanted.removeprefix("UD-")


def _listing(choices: Sequence[GgufChoice]) -> str:
    return ", ".join(choice.describe() for choice in choices)
