"""Test helper: split a real GGUF model into parts the way llama.cpp's ``gguf-split`` does.

It uses the ``gguf`` package (llama.cpp's own gguf-py): ``GGUFReader`` reads the model's keys
and tensors, and ``GGUFWriter`` with ``split_max_tensors`` writes the parts, named
``<stem>-00001-of-0000N.gguf``.  The first part holds every metadata key; each part carries
``split.no``, ``split.count`` and ``split.tensors.count``, and the tensors are spread over the
parts in their original order.
"""

from __future__ import annotations

from pathlib import Path

import gguf


def split_gguf(source: Path, folder: Path, stem: str, parts: int) -> list[Path]:
    """Write ``source`` again as a split model of ``parts`` files in ``folder``.

    Args:
        source: A single-file GGUF model.
        folder: Where the parts go (created if missing).
        stem: The parts' common name: ``<stem>-00001-of-0000N.gguf``, ...
        parts: How many parts to write (at least 2, at most the number of tensors).

    Returns:
        The part files, first part first.

    Raises:
        ValueError: ``parts`` is below 2 or above the model's tensor count.
    """
    reader = gguf.GGUFReader(source)
    tensors = list(reader.tensors)
    if not 2 <= parts <= len(tensors):
        raise ValueError(f"parts must be between 2 and {len(tensors)} for {source}, not {parts}")
    per_part = -(-len(tensors) // parts)  # ceil: the last part may hold fewer tensors
    architecture = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    folder.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(
        folder / f"{stem}.gguf",
        arch=str(architecture),
        endianess=reader.endianess,
        split_max_tensors=per_part,
    )
    for field in reader.fields.values():
        # the writer adds the architecture itself; GGUF.* are the reader's virtual fields
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue
        value_type = field.types[0]
        sub_type = field.types[-1] if value_type == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), value_type, sub_type=sub_type)
    for tensor in tensors:
        writer.add_tensor_info(
            tensor.name,
            tensor.data.shape,
            tensor.data.dtype,
            tensor.data.nbytes,
            tensor.tensor_type,
        )
    names = writer.format_shard_names(folder / f"{stem}.gguf")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in tensors:
        writer.write_tensor_data(tensor.data, tensor_endianess=reader.endianess)
    writer.close()
    return names
