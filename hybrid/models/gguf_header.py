"""Walking a GGUF header: the bounds-checked reads behind :func:`hybrid.models.gguf.read_gguf`.

A :class:`HeaderReader` reads little-endian integers, strings, metadata values and arrays from a
mapped file, checking every read against the file's end.  Arrays longer than
:data:`SMALL_ARRAY_LIMIT` (the vocabulary, its scores, the BPE merges) are skipped and kept as a
:class:`SkippedArray` holding their length, so reading a 262k-token vocabulary builds no list.
Malformed input raises :class:`Truncated` or :class:`Corrupt`, which the caller turns into a
:class:`~hybrid.errors.ModelFileError` naming the file.
"""

from __future__ import annotations

import mmap
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

SMALL_ARRAY_LIMIT = 1024
"""Arrays with more items than this are skipped and recorded as a :class:`SkippedArray`."""

_MAX_DIMS = 8  # ggml uses 4; anything far above means the header is corrupt

_STRING = 8
_ARRAY = 9
_SCALARS: Mapping[int, tuple[str, struct.Struct]] = MappingProxyType(
    {
        0: ("uint8", struct.Struct("<B")),
        1: ("int8", struct.Struct("<b")),
        2: ("uint16", struct.Struct("<H")),
        3: ("int16", struct.Struct("<h")),
        4: ("uint32", struct.Struct("<I")),
        5: ("int32", struct.Struct("<i")),
        6: ("float32", struct.Struct("<f")),
        7: ("bool", struct.Struct("<?")),
        10: ("uint64", struct.Struct("<Q")),
        11: ("int64", struct.Struct("<q")),
        12: ("float64", struct.Struct("<d")),
    }
)
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class SkippedArray:
    """Stands in the metadata for an array too long to keep, such as the vocabulary.

    Attributes:
        item_type: GGUF type of the items ("string", "float32", "array", ...).
        length: Number of items.
        offset: File offset of the first item.
    """

    item_type: str
    length: int
    offset: int = field(default=0, compare=False)

    def __str__(self) -> str:
        return f"<{self.length:,} {self.item_type} items>"


class Truncated(Exception):
    """The header runs past the end of the file; ``args[0]`` is the bytes it needs."""


class Corrupt(Exception):
    """The header holds a value no valid GGUF file holds."""


def _short_strings_pattern() -> re.Pattern[bytes]:
    """A regex that steps over 256 strings whose lengths are all below 256 bytes.

    Such a string is a length byte ``L``, seven zero bytes and ``L`` bytes of text, so one
    branch per length matches it exactly.  Running the regex engine over a vocabulary is about
    three times faster than a Python loop reading each length; ``re`` caches the compiled form.
    """
    branches = b"|".join(
        re.escape(bytes([length])) + b"\x00" * 7 + b".{%d}" % length for length in range(256)
    )
    return re.compile(b"(?:" + branches + b"){256}+", re.DOTALL)


class HeaderReader:
    """Walks the header in a mapped file, checking every read against the file's end."""

    def __init__(self, buf: mmap.mmap) -> None:
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self._short_strings: re.Pattern[bytes] | None = None

    def need(self, n_bytes: int) -> None:
        if self.pos + n_bytes > self.size:
            raise Truncated(self.pos + n_bytes)

    def u32(self) -> int:
        self.need(4)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        self.need(8)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> str:
        length = self.u64()
        self.need(length)
        raw = self.buf[self.pos : self.pos + length]
        self.pos += length
        return raw.decode("utf-8", errors="replace")

    def skip_strings(self, count: int) -> None:
        """Step over ``count`` strings without decoding them."""
        buf, pos, size = self.buf, self.pos, self.size
        unpack = _U64.unpack_from
        if self._short_strings is None:
            self._short_strings = _short_strings_pattern()
        fast = self._short_strings.match
        remaining = count
        while remaining:
            if remaining >= 256 and (found := fast(buf, pos)) is not None:
                pos = found.end()
                remaining -= 256
                continue
            # A long string in this run (or the last few): fall back to reading lengths.
            for _ in range(min(remaining, 256)):
                if pos + 8 > size:
                    raise Truncated(pos + 8)
                pos += 8 + unpack(buf, pos)[0]
            remaining -= min(remaining, 256)
        if pos > size:
            raise Truncated(pos)
        self.pos = pos

    def value(self, value_type: int) -> object:
        scalar = _SCALARS.get(value_type)
        if scalar is not None:
            codec = scalar[1]
            self.need(codec.size)
            (value,) = codec.unpack_from(self.buf, self.pos)
            self.pos += codec.size
            return value
        if value_type == _STRING:
            return self.string()
        if value_type == _ARRAY:
            return self.array(keep=True)
        raise Corrupt(f"unknown metadata value type {value_type}")

    def array(self, *, keep: bool) -> object:
        """Read an array: a tuple when kept and small, else a :class:`SkippedArray`."""
        item_type = self.u32()
        count = self.u64()
        start = self.pos
        keep = keep and count <= SMALL_ARRAY_LIMIT
        scalar = _SCALARS.get(item_type)
        if scalar is not None:
            type_name, codec = scalar
            self.need(count * codec.size)
            items: tuple[object, ...] = ()
            if keep:
                items = struct.unpack_from(f"<{count}{codec.format[-1]}", self.buf, self.pos)
            self.pos += count * codec.size
        elif item_type == _STRING:
            type_name = "string"
            self.need(count * 8)  # every string has at least its length
            if keep:
                items = tuple(self.string() for _ in range(count))
            else:
                self.skip_strings(count)
        elif item_type == _ARRAY:
            type_name = "array"
            self.need(count * 12)  # every nested array has at least its type and count
            nested = [self.array(keep=keep) for _ in range(count)]
            items = tuple(nested) if keep else ()
        else:
            raise Corrupt(f"unknown array item type {item_type}")
        if keep:
            return items
        return SkippedArray(type_name, count, start)

    def string_at(self, array: SkippedArray, index: int) -> str | None:
        """Decode item ``index`` of a skipped string array (walks the items before it)."""
        if array.item_type != "string" or not 0 <= index < array.length:
            return None
        saved = self.pos
        try:
            self.pos = array.offset
            if index:
                self.skip_strings(index)
            return self.string()
        finally:
            self.pos = saved


def read_tensor_entries(
    reader: HeaderReader, count: int
) -> list[tuple[str, tuple[int, ...], int, int]]:
    entries = []
    for _ in range(count):
        name = reader.string()
        n_dims = reader.u32()
        if n_dims > _MAX_DIMS:
            raise Corrupt(f"tensor {name!r} claims {n_dims} dimensions")
        reader.need(8 * n_dims)
        shape = struct.unpack_from(f"<{n_dims}Q", reader.buf, reader.pos)
        reader.pos += 8 * n_dims
        ggml_type = reader.u32()
        offset = reader.u64()
        entries.append((name, tuple(int(d) for d in shape), ggml_type, offset))
    return entries
