"""ggml's tensor types and llama.cpp's file types, as the GGUF format numbers them.

Used to size tensors from their shapes (bytes = elements / block size x bytes per block) and to
name a file's quantization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hybrid.models.gguf import TensorInfo

_QK_K = 256
GGML_TYPES: Mapping[int, tuple[str, int, int]] = MappingProxyType(
    {
        # ggml_type id: (name, elements per block, bytes per block), as in ggml.h / ggml-common.h
        0: ("F32", 1, 4),
        1: ("F16", 1, 2),
        2: ("Q4_0", 32, 2 + 16),
        3: ("Q4_1", 32, 2 + 2 + 16),
        6: ("Q5_0", 32, 2 + 4 + 16),
        7: ("Q5_1", 32, 2 + 2 + 4 + 16),
        8: ("Q8_0", 32, 2 + 32),
        9: ("Q8_1", 32, 4 + 4 + 32),
        10: ("Q2_K", _QK_K, 2 + 2 + _QK_K // 16 + _QK_K // 4),
        11: ("Q3_K", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + 12),
        12: ("Q4_K", _QK_K, 2 + 2 + _QK_K // 2 + 12),
        13: ("Q5_K", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 8 + 12),
        14: ("Q6_K", _QK_K, 2 + _QK_K // 2 + _QK_K // 4 + _QK_K // 16),
        15: ("Q8_K", _QK_K, 4 + _QK_K + _QK_K // 8),
        16: ("IQ2_XXS", _QK_K, 2 + _QK_K // 4),
        17: ("IQ2_XS", _QK_K, 2 + _QK_K // 4 + _QK_K // 32),
        18: ("IQ3_XXS", _QK_K, 2 + _QK_K // 4 + _QK_K // 8),
        19: ("IQ1_S", _QK_K, 2 + _QK_K // 8 + _QK_K // 16),
        20: ("IQ4_NL", 32, 2 + 16),
        21: ("IQ3_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 8 + _QK_K // 32 + 4),
        22: ("IQ2_S", _QK_K, 2 + _QK_K // 4 + _QK_K // 16),
        23: ("IQ4_XS", _QK_K, 2 + 2 + _QK_K // 2 + _QK_K // 64),
        24: ("I8", 1, 1),
        25: ("I16", 1, 2),
        26: ("I32", 1, 4),
        27: ("I64", 1, 8),
        28: ("F64", 1, 8),
        29: ("IQ1_M", _QK_K, _QK_K // 8 + _QK_K // 16 + _QK_K // 32),
        30: ("BF16", 1, 2),
        # 31-33 and 36-38 are repacked Q4_0 / IQ4_NL layouts that older files may still hold.
        31: ("Q4_0_4_4", 32, 2 + 16),
        32: ("Q4_0_4_8", 32, 2 + 16),
        33: ("Q4_0_8_8", 32, 2 + 16),
        34: ("TQ1_0", _QK_K, 2 + 4 * 13),
        35: ("TQ2_0", _QK_K, 2 + 64),
        36: ("IQ4_NL_4_4", 32, 2 + 16),
        37: ("IQ4_NL_4_8", 32, 2 + 16),
        38: ("IQ4_NL_8_8", 32, 2 + 16),
        39: ("MXFP4", 32, 1 + 16),
        40: ("NVFP4", 64, 4 + 32),
        41: ("Q1_0", 128, 2 + 16),
    }
)
"""ggml tensor types: id -> (name, elements per block, bytes per block)."""

FILE_TYPE_LABELS: Mapping[int, str] = MappingProxyType(
    {
        # llama_ftype (llama.h): what `general.file_type` holds
        0: "F32",
        1: "F16",
        2: "Q4_0",
        3: "Q4_1",
        4: "Q4_1_SOME_F16",
        7: "Q8_0",
        8: "Q5_0",
        9: "Q5_1",
        10: "Q2_K",
        11: "Q3_K_S",
        12: "Q3_K_M",
        13: "Q3_K_L",
        14: "Q4_K_S",
        15: "Q4_K_M",
        16: "Q5_K_S",
        17: "Q5_K_M",
        18: "Q6_K",
        19: "IQ2_XXS",
        20: "IQ2_XS",
        21: "Q2_K_S",
        22: "IQ3_XS",
        23: "IQ3_XXS",
        24: "IQ1_S",
        25: "IQ4_NL",
        26: "IQ3_S",
        27: "IQ3_M",
        28: "IQ2_S",
        29: "IQ2_M",
        30: "IQ4_XS",
        31: "IQ1_M",
        32: "BF16",
        33: "Q4_0_4_4",
        34: "Q4_0_4_8",
        35: "Q4_0_8_8",
        36: "TQ1_0",
        37: "TQ2_0",
        38: "MXFP4_MOE",
        39: "NVFP4",
        40: "Q1_0",
    }
)
"""llama.cpp file types (``general.file_type``): id -> quantization label."""

GUESSED_FILE_TYPE = 1024
"""llama.cpp ORs this into ``general.file_type`` when it guessed the type."""


def file_type_label(file_type: object, tensors: Iterable[TensorInfo]) -> str:
    """Name the quantization: llama.cpp's label, else the type holding most weight bytes."""
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        label = FILE_TYPE_LABELS.get(file_type & ~GUESSED_FILE_TYPE)
        if label is not None:
            return label
    bytes_by_type: dict[str, int] = {}
    for tensor in tensors:
        if len(tensor.shape) >= 2:  # 1-D norms and biases stay F32 in every quantization
            bytes_by_type[tensor.type_name] = (
                bytes_by_type.get(tensor.type_name, 0) + tensor.n_bytes
            )
    if not bytes_by_type:
        return "unknown"
    return max(bytes_by_type, key=lambda name: bytes_by_type[name])
