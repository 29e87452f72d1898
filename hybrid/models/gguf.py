"""Read the header of a GGUF model file: its metadata and tensor layout, never the weights.

A GGUF file (versions 2 and 3, little-endian) is laid out as::

    "GGUF" | u32 version | u64 tensor_count | u64 kv_count
    kv_count x (string key | u32 value_type | value)
    tensor_count x (string name | u32 n_dims | n_dims x u64 | u32 ggml_type | u64 offset)
    padding to general.alignment | tensor data (offsets are relative to here)

Strings are a u64 byte length followed by UTF-8 bytes; arrays are a u32 item type, a u64 count
and the items.  The reader maps the file and walks only the header
(:mod:`hybrid.models.gguf_header`).  Arrays longer than
:data:`SMALL_ARRAY_LIMIT` (the vocabulary, its scores, the BPE merges) are skipped and kept as a
:class:`SkippedArray` holding their length, so reading a 262k-token vocabulary builds no list.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from math import prod
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, TypeVar

from hybrid.errors import ModelFileError
from hybrid.models.file_hash import sha256_file
from hybrid.models.ggml_types import GGML_TYPES, file_type_label
from hybrid.models.gguf_header import (
    SMALL_ARRAY_LIMIT,
    Corrupt,
    HeaderReader,
    SkippedArray,
    Truncated,
    read_tensor_entries,
)

# llama.cpp's sliding-window layers, by architecture: layer i slides when i % period < period - 1
# (``hparams.set_swa_pattern`` in llama.cpp's src/llama-model.cpp).
SLIDING_PATTERNS = {"gemma2": 2, "gemma3": 6, "cohere2": 4, "gpt-oss": 2}

if TYPE_CHECKING:
    from hybrid.hardware.plan import ModelFootprint

GGUF_MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)
DEFAULT_ALIGNMENT = 32


_BLOCK_TENSOR = re.compile(r"blk\.(\d+)\.")

_T = TypeVar("_T")

__all__ = [
    "DEFAULT_ALIGNMENT",
    "GGUF_MAGIC",
    "SMALL_ARRAY_LIMIT",
    "SUPPORTED_VERSIONS",
    "GgufInfo",
    "SkippedArray",
    "TensorInfo",
    "read_gguf",
    "read_gguf_layout",
]


@dataclass(frozen=True)
class TensorInfo:
    """One tensor's entry in the header.

    Attributes:
        name: Tensor name, e.g. ``blk.3.attn_q.weight``.
        shape: Elements along each dimension, innermost first (ggml order).
        ggml_type: ggml type id (see :data:`GGML_TYPES`).
        offset: Byte offset of the data, relative to the start of the data section.
        n_bytes: Bytes of data, from the type's block size (or from the gap to the next tensor
            for a type this reader does not know).
    """

    name: str
    shape: tuple[int, ...]
    ggml_type: int
    offset: int
    n_bytes: int

    @property
    def type_name(self) -> str:
        """The ggml type's name ("Q4_K", "F32", ...), or ``type<N>`` for an unknown id."""
        known = GGML_TYPES.get(self.ggml_type)
        return known[0] if known else f"type{self.ggml_type}"


@dataclass(frozen=True)
class GgufInfo:
    """What a GGUF header says about a model: enough to list it and plan memory for it.

    Attributes:
        path: The file read.
        file_bytes: Size of the file on disk.
        sha256: Hex SHA-256 of the whole file, or None unless asked for (it reads every byte).
        architecture: ``general.architecture`` ("llama", "gemma3", "qwen2", ...).
        name: ``general.name``, when present.
        file_type: Quantization label ("Q4_K_M"), from ``general.file_type`` or, when that is
            missing, the ggml type holding most weight bytes ("Q4_K").
        context_length: Tokens of context the model was trained with.
        block_count: Repeating transformer blocks (layers).
        embedding_length: Width of the hidden state.
        head_count: Attention heads (the largest, if it varies per layer).
        head_count_kv: Key/value heads (the largest, if it varies per layer).
        key_length: Width of one key head.
        value_length: Width of one value head.
        chat_template: ``tokenizer.chat_template`` (Jinja), or None for a model without one.
        bos_token: Text of the beginning-of-sequence token, when the header names it.
        eos_token: Text of the end-of-sequence token, when the header names it.
        layer_bytes: Weight bytes of each block ``blk.N.*``; ``len == block_count``.
        other_bytes: Weight bytes outside the blocks (embeddings, output head, norms).
        metadata: Every key/value of the header; arrays longer than :data:`SMALL_ARRAY_LIMIT`
            appear as :class:`SkippedArray`, small arrays as tuples.
        version: GGUF format version (2 or 3).
        tensors: Every tensor's header entry, in file order.
    """

    path: Path
    file_bytes: int
    sha256: str | None
    architecture: str
    name: str | None
    file_type: str
    context_length: int
    block_count: int
    embedding_length: int
    head_count: int
    head_count_kv: int
    key_length: int
    value_length: int
    chat_template: str | None
    bos_token: str | None
    eos_token: str | None
    layer_bytes: tuple[int, ...]
    other_bytes: int
    metadata: Mapping[str, object] = field(repr=False, hash=False)
    version: int = 3
    tensors: tuple[TensorInfo, ...] = field(default=(), repr=False)

    @property
    def weight_bytes(self) -> int:
        """Bytes of tensor data: the blocks plus everything outside them."""
        return sum(self.layer_bytes) + self.other_bytes

    @property
    def kv_bytes_per_token(self) -> int:
        """Bytes of f16 K and V cache one context token needs, all layers together."""
        return self.block_count * self.head_count_kv * (self.key_length + self.value_length) * 2

    @property
    def sliding_window(self) -> int:
        """Tokens the sliding-window layers attend to (``attention.sliding_window``), or 0
        when no layer of this architecture slides in llama.cpp."""
        if self.sliding_layers == 0:
            return 0
        window = self.metadata.get(f"{self.architecture}.attention.sliding_window")
        return window if isinstance(window, int) and not isinstance(window, bool) else 0

    @property
    def sliding_layers(self) -> int:
        """Layers llama.cpp runs with sliding-window attention (a fixed pattern per
        architecture: five of every six in Gemma 3, every other one in Gemma 2)."""
        period = SLIDING_PATTERNS.get(self.architecture)
        if period is None:
            return 0
        return sum(1 for layer in range(self.block_count) if layer % period < period - 1)

    @property
    def swa_kv_bytes_per_token(self) -> int:
        """Of :attr:`kv_bytes_per_token`, what the sliding-window layers take."""
        if self.sliding_window == 0:
            return 0
        per_layer = self.head_count_kv * (self.key_length + self.value_length) * 2
        return self.sliding_layers * per_layer

    @property
    def n_vocab(self) -> int:
        """Tokens in the vocabulary (``tokenizer.ggml.tokens``, else ``{arch}.vocab_size``),
        or 0 when the header gives neither."""
        tokens = self.metadata.get("tokenizer.ggml.tokens")
        if isinstance(tokens, SkippedArray):
            return tokens.length
        if isinstance(tokens, tuple):
            return len(tokens)
        size = self.metadata.get(f"{self.architecture}.vocab_size")
        return size if isinstance(size, int) and not isinstance(size, bool) else 0

    def footprint(self) -> ModelFootprint:
        """Describe this model for the hardware planner.

        Returns:
            A :class:`hybrid.hardware.plan.ModelFootprint` built from the header.
        """
        # Imported here: the planner is a sibling package, and the reader must stay usable
        # (and cheap to import) without it.
        from hybrid.hardware.plan import ModelFootprint

        return ModelFootprint(
            file_bytes=self.file_bytes,
            n_layers=self.block_count,
            layer_bytes=self.layer_bytes,
            other_bytes=self.other_bytes,
            kv_bytes_per_token=self.kv_bytes_per_token,
            context_length=self.context_length,
            swa_kv_bytes_per_token=self.swa_kv_bytes_per_token,
            sliding_window=self.sliding_window,
            n_vocab=self.n_vocab,
            n_head=self.head_count,
            n_embd=self.embedding_length,
            # llama.cpp turns flash attention off when keys and values differ in width.
            flash_attn_ok=self.key_length == self.value_length,
        )


def read_gguf(path: Path, *, with_sha256: bool = False) -> GgufInfo:
    """Read a GGUF file's header (metadata and tensor layout), never the tensor data.

    Args:
        path: The ``.gguf`` file.
        with_sha256: Also hash the whole file (reads every byte; off by default).

    Returns:
        The model's :class:`GgufInfo`.

    Raises:
        ModelFileError: The file is missing or unreadable, is not a GGUF file, is a GGUF
            version this reader does not know, is truncated, is corrupt, or lacks the metadata
            a language model has.  The message names the file and says what to do.
    """
    info = _mapped(path, _parse)
    if with_sha256:
        info = replace(info, sha256=sha256_file(path))
    return info


def read_gguf_layout(path: Path) -> tuple[Mapping[str, object], tuple[TensorInfo, ...]]:
    """Read any GGUF file's metadata and tensor entries, without asking it to be a model.

    The parts after the first of a split model hold tensors and ``split.*`` keys only, so
    :func:`read_gguf` would reject them; this reads them.

    Args:
        path: The ``.gguf`` file.

    Returns:
        The metadata (as in :attr:`GgufInfo.metadata`) and every tensor's entry.

    Raises:
        ModelFileError: As :func:`read_gguf`, except for the checks that it is a model.
    """
    return _mapped(path, _parse_layout)


def _mapped(path: Path, parse: Callable[[Path, int, mmap.mmap], _T]) -> _T:
    """Open and map a GGUF file, check its magic, and parse it; OS errors become ModelFileError."""
    try:
        with path.open("rb") as handle:
            file_bytes = os.fstat(handle.fileno()).st_size
            if file_bytes == 0:
                raise ModelFileError(f"{path} is empty, not a GGUF model. Download it again.")
            start = handle.read(len(GGUF_MAGIC))
            if start != GGUF_MAGIC:
                raise ModelFileError(
                    f"{path} is not a GGUF file (it starts with {start!r}, not b'GGUF'). hybrid "
                    "loads llama.cpp GGUF models: download a .gguf build of the model, or "
                    "convert it with llama.cpp's convert_hf_to_gguf.py."
                )
            with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                return parse(path, file_bytes, buf)
    except FileNotFoundError as exc:
        raise ModelFileError(
            f"model file {path} does not exist. Check the path, or run `hybrid models` to see "
            "the models hybrid can find."
        ) from exc
    except IsADirectoryError as exc:
        raise ModelFileError(
            f"{path} is a folder, not a model file. Name the .gguf file inside it."
        ) from exc
    except PermissionError as exc:
        raise ModelFileError(
            f"cannot read model file {path}: permission denied. Make it readable by this user."
        ) from exc
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}.") from exc


def _parse(path: Path, file_bytes: int, buf: mmap.mmap) -> GgufInfo:
    reader, version, metadata, sized = _walk(path, file_bytes, buf)
    try:
        bos = _token_text(reader, metadata, "tokenizer.ggml.bos_token_id")
        eos = _token_text(reader, metadata, "tokenizer.ggml.eos_token_id")
    except (Truncated, struct.error) as exc:
        raise _truncated(path, file_bytes, exc, reader) from exc
    except Corrupt as exc:
        raise _corrupt(path, exc) from exc
    return _build_info(path, file_bytes, version, metadata, sized, bos, eos)


def _parse_layout(
    path: Path, file_bytes: int, buf: mmap.mmap
) -> tuple[Mapping[str, object], tuple[TensorInfo, ...]]:
    _, _, metadata, sized = _walk(path, file_bytes, buf)
    return MappingProxyType(metadata), tuple(sized)


def _walk(
    path: Path, file_bytes: int, buf: mmap.mmap
) -> tuple[HeaderReader, int, dict[str, object], list[TensorInfo]]:
    """Walk the header: the version, the metadata and the sized tensor entries."""
    reader = HeaderReader(buf)
    reader.pos = len(GGUF_MAGIC)
    try:
        version = reader.u32()
        if version not in SUPPORTED_VERSIONS:
            raise _unsupported_version(path, version)
        n_tensors = reader.u64()
        n_kv = reader.u64()
        # More entries than bytes cannot be a cut-off file; smaller counts that run past the
        # end are reported as truncated by the reads themselves.
        if max(n_kv, n_tensors) > file_bytes:
            raise Corrupt(f"it claims {n_kv:,} metadata keys and {n_tensors:,} tensors")
        metadata: dict[str, object] = {}
        for _ in range(n_kv):
            key = reader.string()
            metadata[key] = reader.value(reader.u32())
        tensors = read_tensor_entries(reader, n_tensors)
        alignment = metadata.get("general.alignment", DEFAULT_ALIGNMENT)
        if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
            raise Corrupt(f"general.alignment is {alignment!r}, not a power of two")
        data_start = -(-reader.pos // alignment) * alignment
        sized = _size_tensors(tensors, file_bytes - data_start)
        data_end = data_start + max((t.offset + t.n_bytes for t in sized), default=0)
        if data_end > file_bytes:
            raise Truncated(data_end)
    except (Truncated, struct.error) as exc:
        raise _truncated(path, file_bytes, exc, reader) from exc
    except Corrupt as exc:
        raise _corrupt(path, exc) from exc
    return reader, version, metadata, sized


def _truncated(
    path: Path, file_bytes: int, exc: Truncated | struct.error, reader: HeaderReader
) -> ModelFileError:
    needed = exc.args[0] if isinstance(exc, Truncated) else reader.pos
    return ModelFileError(
        f"{path} is truncated: its header or data needs {needed:,} bytes but the file has "
        f"{file_bytes:,}. The download or copy was probably interrupted: fetch it again."
    )


def _corrupt(path: Path, exc: Corrupt) -> ModelFileError:
    return ModelFileError(f"{path} is a corrupt GGUF file: {exc}. Download or convert it again.")


def _unsupported_version(path: Path, version: int) -> ModelFileError:
    if version == 1:
        detail = "GGUF version 1, which llama.cpp no longer loads; download a newer conversion"
    elif int.from_bytes(version.to_bytes(4, "little"), "big") in SUPPORTED_VERSIONS:
        detail = "a big-endian GGUF file; download the little-endian build of the model"
    else:
        detail = (
            f"GGUF version {version}, which this hybrid does not know "
            f"(it reads versions {', '.join(map(str, SUPPORTED_VERSIONS))}); update hybrid"
        )
    return ModelFileError(f"{path} is {detail}.")


def _size_tensors(
    entries: list[tuple[str, tuple[int, ...], int, int]], data_bytes: int
) -> list[TensorInfo]:
    """Give each tensor its byte size: from its type, or from the gap to the next tensor."""
    by_offset = sorted(entry[3] for entry in entries)
    next_offset = {
        offset: by_offset[i + 1] if i + 1 < len(by_offset) else max(data_bytes, offset)
        for i, offset in enumerate(by_offset)
    }
    sized = []
    for name, shape, ggml_type, offset in entries:
        known = GGML_TYPES.get(ggml_type)
        if known is not None:
            _, block, block_bytes = known
            n_bytes = prod(shape) // block * block_bytes
        else:
            n_bytes = next_offset[offset] - offset
        sized.append(TensorInfo(name, shape, ggml_type, offset, n_bytes))
    return sized


def _token_text(reader: HeaderReader, metadata: Mapping[str, object], id_key: str) -> str | None:
    token_id = metadata.get(id_key)
    tokens = metadata.get("tokenizer.ggml.tokens")
    if not isinstance(token_id, int) or isinstance(token_id, bool):
        return None
    if isinstance(tokens, tuple):
        text = tokens[token_id] if 0 <= token_id < len(tokens) else None
        return text if isinstance(text, str) else None
    if isinstance(tokens, SkippedArray):
        return reader.string_at(tokens, token_id)
    return None


_MOST_BLOCKS = 4096
"""More blocks than any model has (the largest have a few hundred), unless it holds as many
tensors: a ``block_count`` above both is a corrupt header."""


def _build_info(
    path: Path,
    file_bytes: int,
    version: int,
    metadata: dict[str, object],
    tensors: list[TensorInfo],
    bos: str | None,
    eos: str | None,
) -> GgufInfo:
    if metadata.get("general.type") == "adapter":
        raise ModelFileError(
            f"{path} is a LoRA adapter, not a model. Point hybrid at the base model's .gguf."
        )
    arch = metadata.get("general.architecture")
    if not isinstance(arch, str) or not arch:
        raise ModelFileError(
            f"{path} has no general.architecture in its header, so llama.cpp cannot load it. "
            "Convert the model again with a current llama.cpp."
        )
    blocks: dict[int, int] = {}
    other_bytes = 0
    for tensor in tensors:
        match = _BLOCK_TENSOR.match(tensor.name)
        if match:
            index = int(match.group(1))
            blocks[index] = blocks.get(index, 0) + tensor.n_bytes
        else:
            other_bytes += tensor.n_bytes

    def number(key: str, default: int | None = None) -> int:
        value = metadata.get(f"{arch}.{key}", default)
        if isinstance(value, tuple):  # per-layer values (e.g. OpenELM's head counts)
            value = max((v for v in value if isinstance(v, int)), default=default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ModelFileError(
                f"{path} has no usable {arch}.{key} in its header, so it is not a language "
                "model hybrid can serve (a vision projector, an embedding-only file or a "
                "broken conversion?). Use the model's main .gguf file."
            )
        return value

    # A header without block_count still names its blocks: count them.
    block_count = number("block_count", max(blocks) + 1 if blocks else None)
    if not 0 <= block_count <= max(len(tensors), _MOST_BLOCKS):
        # More blocks than tensors, and more than any model has: a broken header (and not a
        # tuple to build). A vocabulary-only file names blocks but holds no tensor.
        raise ModelFileError(
            f"{path} says it has {block_count:,} blocks but holds {len(tensors):,} tensors: "
            "its header is corrupt. Download or convert the model again."
        )
    layer_bytes = tuple(blocks.get(i, 0) for i in range(block_count))
    other_bytes += sum(size for index, size in blocks.items() if index >= block_count)
    embedding_length = number("embedding_length")
    head_count = number("attention.head_count", 0)
    head_count_kv = number("attention.head_count_kv", head_count)
    default_head = embedding_length // head_count if head_count else 0
    key_length = number("attention.key_length", default_head)
    name = metadata.get("general.name")
    template = metadata.get("tokenizer.chat_template")
    return GgufInfo(
        path=path,
        file_bytes=file_bytes,
        sha256=None,
        architecture=arch,
        name=name if isinstance(name, str) else None,
        file_type=file_type_label(metadata.get("general.file_type"), tensors),
        context_length=number("context_length"),
        block_count=block_count,
        embedding_length=embedding_length,
        head_count=head_count,
        head_count_kv=head_count_kv,
        key_length=key_length,
        value_length=number("attention.value_length", default_head),
        chat_template=template if isinstance(template, str) and template.strip() else None,
        bos_token=bos,
        eos_token=eos,
        layer_bytes=layer_bytes,
        other_bytes=other_bytes,
        metadata=MappingProxyType(metadata),
        version=version,
        tensors=tuple(tensors),
    )
