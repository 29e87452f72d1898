"""Copy a GGUF file with one more string in its metadata (e.g. a chat template).

Tensor offsets are relative to the data section, so the header can grow as long as the data
section starts again on the file's alignment.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path
from typing import BinaryIO

STRING, ARRAY = 8, 9
FIXED = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


def _skip_value(f: BinaryIO, value_type: int) -> None:
    if value_type == STRING:
        (length,) = struct.unpack("<Q", f.read(8))
        f.seek(length, 1)
    elif value_type == ARRAY:
        item_type, count = struct.unpack("<IQ", f.read(12))
        if item_type in FIXED:
            f.seek(FIXED[item_type] * count, 1)
        else:
            for _ in range(count):
                _skip_value(f, item_type)
    else:
        f.seek(FIXED[value_type], 1)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("<Q", len(data)) + data


def add_string_metadata(source: Path, target: Path, key: str, value: str) -> None:
    """Write ``target``: ``source`` with ``key = value`` added to its metadata."""
    with source.open("rb") as f:
        magic, version, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
        assert magic == b"GGUF" and version == 3
        kv_start = f.tell()
        alignment = 32
        for _ in range(n_kv):
            (key_length,) = struct.unpack("<Q", f.read(8))
            name = f.read(key_length).decode()
            (value_type,) = struct.unpack("<I", f.read(4))
            if name == "general.alignment":
                (alignment,) = struct.unpack("<I", f.read(4))
            else:
                _skip_value(f, value_type)
        kv_end = f.tell()
        for _ in range(n_tensors):
            (name_length,) = struct.unpack("<Q", f.read(8))
            f.seek(name_length, 1)
            (n_dims,) = struct.unpack("<I", f.read(4))
            f.seek(8 * n_dims + 4 + 8, 1)
        tensors_end = f.tell()
        data_start = -(-tensors_end // alignment) * alignment
        f.seek(kv_start)
        kvs = f.read(kv_end - kv_start)
        tensor_infos = f.read(tensors_end - kv_end)
        header = struct.pack("<4sIQQ", magic, version, n_tensors, n_kv + 1)
        header += kvs + _string(key) + struct.pack("<I", STRING) + _string(value) + tensor_infos
        header += b"\0" * (-len(header) % alignment)
        with target.open("wb") as out:
            out.write(header)
            f.seek(data_start)
            shutil.copyfileobj(f, out, 1 << 20)
