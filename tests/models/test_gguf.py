"""The GGUF header reader, on small files written by the test writer (and the real model)."""

from __future__ import annotations

import hashlib
import math
import struct
from pathlib import Path

import pytest
from gguf_writer import (
    ARRAY,
    BOOL,
    F32,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    Q4_K,
    Q6_K,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    tensor_bytes,
    tiny_model,
)

from hybrid.errors import ModelFileError
from hybrid.models.embedded import ensure_embedded_model
from hybrid.models.file_hash import sha256_file
from hybrid.models.gguf import SMALL_ARRAY_LIMIT, SkippedArray, read_gguf


def test_reads_what_a_user_sees_in_the_model_list(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "tiny.gguf")

    info = read_gguf(path)

    assert info.path == path
    assert info.file_bytes == path.stat().st_size
    assert info.sha256 is None
    assert info.architecture == "llama"
    assert info.name == "Tiny Test Model"
    assert info.file_type == "Q4_K_M"
    assert info.context_length == 4096
    assert info.block_count == 2
    assert info.embedding_length == 256
    assert (info.head_count, info.head_count_kv) == (8, 2)
    # No key_length/value_length keys: llama.cpp's default is embedding_length / head_count.
    assert (info.key_length, info.value_length) == (32, 32)
    assert info.chat_template is not None and "messages" in info.chat_template
    assert (info.bos_token, info.eos_token) == ("<s>", "</s>")
    assert info.version == 3


def test_weight_bytes_are_split_per_block_and_match_the_data_section(tmp_path: Path) -> None:
    model = tiny_model(n_layers=3)
    path = model.write(tmp_path / "tiny.gguf")

    info = read_gguf(path)

    block = tensor_bytes((256,), F32) + tensor_bytes((256, 256), Q4_K)
    block += tensor_bytes((512, 256), Q6_K)
    assert info.layer_bytes == (block, block, block)
    outside = sum(
        tensor_bytes(shape, kind)
        for name, shape, kind in model.tensors
        if not name.startswith("blk")
    )
    assert info.other_bytes == outside
    # Every tensor byte is accounted for: the sizes reach exactly to the end of the file.
    last = max(info.tensors, key=lambda t: t.offset)
    assert len(model.header()) + last.offset + last.n_bytes == info.file_bytes
    assert info.weight_bytes == sum(t.n_bytes for t in info.tensors)
    assert [t.name for t in info.tensors] == [name for name, _, _ in model.tensors]
    assert info.tensors[0].shape == (256, 64)
    assert info.tensors[1].type_name == "F32"


def test_version_2_files_read_like_version_3(tmp_path: Path) -> None:
    v3 = tiny_model()
    v2 = tiny_model()
    v2.version = 2

    info3 = read_gguf(v3.write(tmp_path / "v3.gguf"))
    info2 = read_gguf(v2.write(tmp_path / "v2.gguf"))

    assert info2.version == 2
    assert (info2.architecture, info2.layer_bytes, info2.file_type) == (
        info3.architecture,
        info3.layer_bytes,
        info3.file_type,
    )


def test_every_metadata_value_type_round_trips(tmp_path: Path) -> None:
    model = tiny_model()
    values: dict[str, tuple[int, object]] = {
        "t.uint8": (UINT8, 255),
        "t.int8": (INT8, -128),
        "t.uint16": (UINT16, 65535),
        "t.int16": (INT16, -32768),
        "t.uint32": (UINT32, 2**32 - 1),
        "t.int32": (INT32, -(2**31)),
        "t.uint64": (UINT64, 2**64 - 1),
        "t.int64": (INT64, -(2**63)),
        "t.float32": (FLOAT32, 0.5),
        "t.float64": (FLOAT64, math.pi),
        "t.bool": (BOOL, True),
        "t.string": (STRING, "héllo ✓"),
        "t.empty": (ARRAY, (INT32, [])),
        "t.ints": (ARRAY, (INT16, [1, -2, 3])),
        "t.bools": (ARRAY, (BOOL, [True, False])),
        "t.strings": (ARRAY, (STRING, ["a", "", "ccc"])),
        "t.nested": (ARRAY, (ARRAY, [(UINT8, [1, 2]), (UINT8, []), (UINT8, [3])])),
        "t.deep": (ARRAY, (ARRAY, [(ARRAY, [(STRING, ["x"])])])),
    }
    for key, (value_type, value) in values.items():
        model.set(key, value_type, value)

    metadata = read_gguf(model.write(tmp_path / "types.gguf")).metadata

    assert metadata["t.uint8"] == 255
    assert metadata["t.int8"] == -128
    assert metadata["t.uint16"] == 65535
    assert metadata["t.int16"] == -32768
    assert metadata["t.uint32"] == 2**32 - 1
    assert metadata["t.int32"] == -(2**31)
    assert metadata["t.uint64"] == 2**64 - 1
    assert metadata["t.int64"] == -(2**63)
    assert metadata["t.float32"] == 0.5
    assert metadata["t.float64"] == math.pi
    assert metadata["t.bool"] is True
    assert metadata["t.string"] == "héllo ✓"
    assert metadata["t.empty"] == ()
    assert metadata["t.ints"] == (1, -2, 3)
    assert metadata["t.bools"] == (True, False)
    assert metadata["t.strings"] == ("a", "", "ccc")
    assert metadata["t.nested"] == ((1, 2), (), (3,))
    assert metadata["t.deep"] == ((("x",),),)
    # Keys after the odd values are still read at the right place.
    assert metadata["general.architecture"] == "llama"


def test_big_arrays_keep_only_their_length_and_later_keys_still_read(tmp_path: Path) -> None:
    n = SMALL_ARRAY_LIMIT * 3 + 7
    # Short tokens (the fast path), one longer than 255 bytes (the slow path), then short again.
    vocab = [f"tok{i}" for i in range(n)]
    vocab[1500] = "L" * 300
    vocab[2000] = "<|im_end|>"
    model = tiny_model(vocab=vocab)
    model.set("tokenizer.ggml.scores", ARRAY, (FLOAT32, [0.0] * n))
    model.set("tokenizer.ggml.merges", ARRAY, (STRING, ["a b"] * n))
    model.set("tokenizer.ggml.eos_token_id", UINT32, 2000)
    model.set("after.everything", STRING, "still here")

    info = read_gguf(model.write(tmp_path / "vocab.gguf"))

    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, SkippedArray)
    assert (tokens.item_type, tokens.length) == ("string", n)
    assert str(tokens) == f"<{n:,} string items>"
    scores = info.metadata["tokenizer.ggml.scores"]
    assert isinstance(scores, SkippedArray) and scores.length == n
    assert info.metadata["after.everything"] == "still here"
    assert info.bos_token == "tok1"
    assert info.eos_token == "<|im_end|>"
    assert info.block_count == 2


def test_nested_big_arrays_are_skipped_too(tmp_path: Path) -> None:
    model = tiny_model()
    inner = [(STRING, ["ab", "c"])] * (SMALL_ARRAY_LIMIT + 1)
    model.set("t.big_nested", ARRAY, (ARRAY, inner))
    model.set("t.after", UINT8, 7)

    metadata = read_gguf(model.write(tmp_path / "nested.gguf")).metadata

    assert metadata["t.big_nested"] == SkippedArray("array", SMALL_ARRAY_LIMIT + 1)
    assert metadata["t.after"] == 7


def test_per_layer_head_counts_take_the_largest(tmp_path: Path) -> None:
    model = tiny_model()
    model.set("llama.attention.head_count", ARRAY, (INT32, [4, 8]))
    model.set("llama.attention.head_count_kv", ARRAY, (INT32, [1, 4]))
    model.set("llama.attention.key_length", UINT32, 64)
    model.set("llama.attention.value_length", UINT32, 48)

    info = read_gguf(model.write(tmp_path / "elm.gguf"))

    assert (info.head_count, info.head_count_kv) == (8, 4)
    assert (info.key_length, info.value_length) == (64, 48)
    assert info.kv_bytes_per_token == 2 * 4 * (64 + 48) * 2


def test_quantization_falls_back_to_the_dominant_tensor_type(tmp_path: Path) -> None:
    unlabelled = tiny_model().drop("general.file_type")
    guessed = tiny_model().set("general.file_type", UINT32, 1024 | 18)

    assert read_gguf(unlabelled.write(tmp_path / "a.gguf")).file_type == "Q6_K"
    assert read_gguf(guessed.write(tmp_path / "b.gguf")).file_type == "Q6_K"


def test_a_model_without_chat_template_says_so(tmp_path: Path) -> None:
    path = tiny_model(chat_template=None).write(tmp_path / "base.gguf")

    assert read_gguf(path).chat_template is None


def test_alignment_from_the_header_is_honoured(tmp_path: Path) -> None:
    model = tiny_model()
    model.alignment = 64
    model.set("general.alignment", UINT32, 64)

    info = read_gguf(model.write(tmp_path / "aligned.gguf"))

    assert info.file_bytes == len(model.header()) + model.data_bytes()
    assert len(model.header()) % 64 == 0


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"nothere\.gguf does not exist"):
        read_gguf(tmp_path / "nothere.gguf")


def test_a_folder_is_not_a_model(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="is a folder"):
        read_gguf(tmp_path)


def test_bad_magic_says_it_is_not_gguf(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors.gguf"
    path.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}" + b"\0" * 100)

    with pytest.raises(ModelFileError, match=r"model\.safetensors\.gguf is not a GGUF file"):
        read_gguf(path)


def test_empty_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "empty.gguf"
    path.write_bytes(b"")

    with pytest.raises(ModelFileError, match=r"empty\.gguf is empty"):
        read_gguf(path)


@pytest.mark.parametrize("keep", [4, 10, 30, 0.5, 0.9, -1])
def test_truncated_files_are_reported_as_truncated(tmp_path: Path, keep: float) -> None:
    whole = tiny_model().to_bytes()
    header = len(tiny_model().header())
    cut = {0.5: header // 2, 0.9: header - 3, -1: len(whole) - 1}.get(keep, keep)
    path = tmp_path / "cut.gguf"
    path.write_bytes(whole[: int(cut)])

    with pytest.raises(ModelFileError, match=r"cut\.gguf is truncated.*fetch it again"):
        read_gguf(path)


def test_unknown_versions_and_byte_orders_are_explained(tmp_path: Path) -> None:
    def with_version(raw_version: bytes) -> Path:
        data = bytearray(tiny_model().to_bytes())
        data[4:8] = raw_version
        path = tmp_path / "v.gguf"
        path.write_bytes(bytes(data))
        return path

    with pytest.raises(ModelFileError, match=r"GGUF version 1, which llama\.cpp no longer loads"):
        read_gguf(with_version(struct.pack("<I", 1)))
    with pytest.raises(ModelFileError, match="big-endian"):
        read_gguf(with_version(struct.pack(">I", 3)))
    with pytest.raises(ModelFileError, match=r"GGUF version 9.*update hybrid"):
        read_gguf(with_version(struct.pack("<I", 9)))


def test_corrupt_value_type_is_reported(tmp_path: Path) -> None:
    key = b"general.architecture"
    raw = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
    path = tmp_path / "corrupt.gguf"
    path.write_bytes(raw + struct.pack("<I", 42) + b"\0" * 64)

    with pytest.raises(ModelFileError, match="corrupt GGUF file: unknown metadata value type 42"):
        read_gguf(path)


def test_absurd_counts_are_corrupt_not_a_hang(tmp_path: Path) -> None:
    path = tmp_path / "huge.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 2**60, 2**60) + b"\0" * 64)

    with pytest.raises(ModelFileError, match="corrupt"):
        read_gguf(path)


def test_a_file_without_model_metadata_is_not_servable(tmp_path: Path) -> None:
    projector = tiny_model().drop("llama.context_length")
    no_arch = tiny_model().drop("general.architecture")

    with pytest.raises(ModelFileError, match=r"no usable llama\.context_length"):
        read_gguf(projector.write(tmp_path / "mmproj.gguf"))
    with pytest.raises(ModelFileError, match=r"no general\.architecture"):
        read_gguf(no_arch.write(tmp_path / "noarch.gguf"))


def test_a_lora_adapter_is_refused_with_a_hint(tmp_path: Path) -> None:
    adapter = tiny_model().set("general.type", STRING, "adapter")

    with pytest.raises(ModelFileError, match="LoRA adapter, not a model"):
        read_gguf(adapter.write(tmp_path / "lora.gguf"))


def test_footprint_describes_the_model_for_the_planner(tmp_path: Path) -> None:
    info = read_gguf(tiny_model().write(tmp_path / "tiny.gguf"))

    footprint = info.footprint()

    assert footprint.file_bytes == info.file_bytes
    assert footprint.n_layers == 2
    assert footprint.layer_bytes == info.layer_bytes
    assert footprint.other_bytes == info.other_bytes
    # f16 K and V: 2 layers x 2 kv heads x (32 + 32) dims x 2 bytes
    assert footprint.kv_bytes_per_token == 2 * 2 * (32 + 32) * 2
    assert footprint.context_length == 4096


def test_sha256_matches_hashlib_and_reports_progress(tmp_path: Path) -> None:
    path = tmp_path / "blob.bin"
    data = bytes(range(256)) * 9000
    path.write_bytes(data)
    seen: list[tuple[int, int]] = []

    digest = sha256_file(path, progress=lambda done, total: seen.append((done, total)))

    assert digest == hashlib.sha256(data).hexdigest()
    assert seen[-1] == (len(data), len(data))
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)


def test_sha256_on_request(tmp_path: Path) -> None:
    path = tiny_model().write(tmp_path / "tiny.gguf")

    info = read_gguf(path, with_sha256=True)

    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_of_a_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match=r"gone\.gguf"):
        sha256_file(tmp_path / "gone.gguf")


@pytest.mark.slow
def test_the_real_embedded_model(tmp_path: Path) -> None:
    path = ensure_embedded_model(tmp_path)

    info = read_gguf(path)

    assert info.architecture == "gemma3"
    assert info.file_type == "Q4_K_M"
    assert info.context_length == 32768
    assert info.chat_template is None
    assert info.block_count == 18 and len(info.layer_bytes) == 18
    assert all(size > 0 for size in info.layer_bytes)
    assert (info.bos_token, info.eos_token) == ("<bos>", "<eos>")
    tokens = info.metadata["tokenizer.ggml.tokens"]
    assert isinstance(tokens, SkippedArray) and tokens.length == 262144
    # Weights fill the file but for the header (vocabulary included): a few MB.
    header_bytes = info.file_bytes - info.weight_bytes
    assert 0 < header_bytes < 16_000_000
    assert info.footprint().kv_bytes_per_token == 18 * 1 * (256 + 256) * 2


def test_a_header_with_more_blocks_than_tensors_is_refused_as_corrupt(tmp_path: Path) -> None:
    model = tiny_model()
    model.set("llama.block_count", UINT32, 0xFFFFFFFF)
    path = model.write(tmp_path / "corrupt.gguf")

    with pytest.raises(ModelFileError, match="its header is corrupt"):
        read_gguf(path)
