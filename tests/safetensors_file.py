"""Write .safetensors files without the safetensors package (nor torch), for the weights tests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

CODES = {"<f8": "F64", "<f4": "F32", "<f2": "F16", "<i8": "I64", "<i4": "I32", "|u1": "U8"}


def write_safetensors(
    path: Path, arrays: Mapping[str, np.ndarray], codes: dict[str, str] | None = None
) -> Path:
    """Write `arrays` in the safetensors layout; `codes` overrides a tensor's dtype code."""
    header: dict[str, object] = {"__metadata__": {"format": "np"}}
    chunks: list[bytes] = []
    offset = 0
    for key in sorted(arrays):
        array = np.ascontiguousarray(arrays[key])
        data = array.astype(array.dtype.newbyteorder("<")).tobytes()
        overrides = codes or {}
        code = overrides[key] if key in overrides else CODES[array.dtype.newbyteorder("<").str]
        header[key] = {
            "dtype": code,
            "shape": list(array.shape),
            "data_offsets": [offset, offset + len(data)],
        }
        chunks.append(data)
        offset += len(data)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)  # the format pads the header to 8 bytes with spaces
    path.write_bytes(len(text).to_bytes(8, "little") + text + b"".join(chunks))
    return path
