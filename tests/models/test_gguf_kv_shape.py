"""What the KV planner reads from a GGUF header: the vocabulary's size, the attention's shape,
whether llama.cpp runs flash attention for it, and its sliding-window layers."""

from __future__ import annotations

from pathlib import Path

from gguf_writer import UINT32, tiny_model

from hybrid.models.gguf import SMALL_ARRAY_LIMIT, read_gguf


def test_the_vocabulary_is_counted_however_the_header_keeps_it(tmp_path: Path) -> None:
    small = read_gguf(tiny_model().write(tmp_path / "small.gguf"))
    assert small.n_vocab == 5  # a short vocabulary is kept as a tuple

    n = SMALL_ARRAY_LIMIT + 10
    large = tiny_model(vocab=[f"t{i}" for i in range(n)])
    assert read_gguf(large.write(tmp_path / "large.gguf")).n_vocab == n  # a SkippedArray

    sized = tiny_model().drop("tokenizer.ggml.tokens").drop("tokenizer.ggml.bos_token_id")
    sized.drop("tokenizer.ggml.eos_token_id").set("llama.vocab_size", UINT32, 32000)
    assert read_gguf(sized.write(tmp_path / "sized.gguf")).n_vocab == 32000

    bare = tiny_model().drop("tokenizer.ggml.tokens").drop("tokenizer.ggml.bos_token_id")
    bare.drop("tokenizer.ggml.eos_token_id")
    assert read_gguf(bare.write(tmp_path / "bare.gguf")).n_vocab == 0


def test_the_footprint_carries_the_attention_shape(tmp_path: Path) -> None:
    footprint = read_gguf(tiny_model().write(tmp_path / "tiny.gguf")).footprint()
    assert (footprint.n_vocab, footprint.n_embd, footprint.n_head) == (5, 256, 8)
    assert footprint.flash_attn_ok  # keys and values of one width (256 / 8 each)
    assert footprint.sliding_window == 0 and footprint.swa_kv_bytes_per_token == 0


def test_keys_and_values_of_different_widths_run_without_flash_attention(tmp_path: Path) -> None:
    model = tiny_model().set("llama.attention.key_length", UINT32, 192)
    model.set("llama.attention.value_length", UINT32, 128)
    info = read_gguf(model.write(tmp_path / "mla.gguf"))
    assert not info.footprint().flash_attn_ok
    # f16 K and V of 2 KV heads, per layer and token, over 2 layers.
    assert info.kv_bytes_per_token == 2 * 2 * (192 + 128) * 2


def test_gemma2_slides_every_other_layer_within_its_window(tmp_path: Path) -> None:
    model = tiny_model(arch="gemma2", n_layers=4)
    model.set("gemma2.attention.sliding_window", UINT32, 4096)
    info = read_gguf(model.write(tmp_path / "gemma2.gguf"))
    assert (info.sliding_layers, info.sliding_window) == (2, 4096)
    footprint = info.footprint()
    assert footprint.swa_kv_bytes_per_token * 2 == footprint.kv_bytes_per_token
    # An architecture whose layers all attend to everything slides none, whatever the header.
    llama = tiny_model().set("llama.attention.sliding_window", UINT32, 4096)
    assert read_gguf(llama.write(tmp_path / "llama.gguf")).sliding_window == 0
    # A window the header does not give: no layer is sized by it.
    unsized = tiny_model(arch="gemma3", n_layers=6)
    assert read_gguf(unsized.write(tmp_path / "gemma3.gguf")).swa_kv_bytes_per_token == 0
