"""Tensors for a compiled network: a saved state dict, or the generated module's initialisation.

This is the one place outside generated code that needs torch to produce weights; the ONNX
emitter itself only sees NumPy arrays. torch is imported inside the functions that need it:
reading a .safetensors file does not, and importing torch takes longer than emitting the ONNX.
"""

from __future__ import annotations

import json
import math
import pickle
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.loader import load_source

# safetensors dtype codes (https://github.com/huggingface/safetensors, format section).
# BF16 has no NumPy type: its bits are the upper half of a float32 and are widened below.
_SAFETENSORS_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16, "BF16": np.uint16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8,
    "U64": np.uint64, "U32": np.uint32, "U16": np.uint16, "U8": np.uint8, "BOOL": np.bool_,
}  # fmt: skip
_MAX_HEADER = 100_000_000  # the format's own limit on the JSON header


def load_state(path: str) -> dict[str, np.ndarray]:
    """Read a state dict saved with `torch.save(model.state_dict(), path)` (or .safetensors)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no weights file '{path}'", hint="give the path of a saved state dict")
    if file.suffix == ".safetensors":
        return _load_safetensors(file)
    import torch

    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise InputError(
            f"'{path}' is not a PyTorch state dict ({first[:200]})",
            hint="save one with torch.save(model.state_dict(), path)",
        ) from None
    return _as_arrays(path, state)


def _load_safetensors(file: Path) -> dict[str, np.ndarray]:
    """Read a .safetensors file as float32 arrays, like `_as_arrays` does for torch.save files.

    The format is simple enough to read directly (8-byte little-endian header length, a JSON
    header of dtype, shape and data_offsets per tensor, then the raw little-endian bytes), so
    neither the safetensors package nor torch is needed.
    """
    try:
        return _parse_safetensors(file.read_bytes())
    except OSError as error:
        raise InputError(f"cannot read '{file}': {error.strerror or error}") from None
    except ValueError as error:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"'{file}' is not a readable safetensors file ({error})") from None


def _parse_safetensors(data: bytes) -> dict[str, np.ndarray]:
    if len(data) < 8:
        raise ValueError("shorter than its 8-byte header length")
    size = int.from_bytes(data[:8], "little")
    if size > min(_MAX_HEADER, len(data) - 8):
        raise ValueError(f"header length {size} exceeds the file")
    header = json.loads(data[8 : 8 + size].decode("utf-8"))
    if not isinstance(header, dict):
        raise ValueError("the header is not a JSON object")
    body = memoryview(data)[8 + size :]
    arrays: dict[str, np.ndarray] = {}
    for key, entry in header.items():
        if key != "__metadata__":
            arrays[key] = _tensor(key, entry, body)
    return arrays


def _tensor(key: str, entry: object, body: memoryview) -> np.ndarray:
    if not isinstance(entry, dict) or not {"dtype", "shape", "data_offsets"} <= entry.keys():
        raise ValueError(f"tensor '{key}' lacks dtype, shape or data_offsets")
    code, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if code not in _SAFETENSORS_DTYPES:
        raise ValueError(f"tensor '{key}' has dtype {code}, which nscompile does not read")
    lists = isinstance(shape, list) and isinstance(offsets, list) and len(offsets) == 2
    if not lists or not all(type(n) is int and n >= 0 for n in (*shape, *offsets)):
        raise ValueError(f"tensor '{key}' has a bad shape or data_offsets")
    begin, end = offsets
    dtype = np.dtype(_SAFETENSORS_DTYPES[code]).newbyteorder("<")
    if not begin <= end <= len(body) or end - begin != dtype.itemsize * math.prod(shape):
        raise ValueError(f"tensor '{key}' has data_offsets that do not fit its shape and dtype")
    array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape)
    if code == "BF16":
        return (array.astype(np.uint32) << 16).view(np.float32)
    return array.astype(np.float32)


def _as_arrays(path: str, state: object) -> dict[str, np.ndarray]:
    import torch

    if not isinstance(state, Mapping) or not all(isinstance(k, str) for k in state):
        raise InputError(
            f"'{path}' holds a {type(state).__name__}, not a state dict",
            hint="save one with torch.save(model.state_dict(), path)",
        )
    arrays: dict[str, np.ndarray] = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise InputError(f"entry '{key}' of '{path}' is a {type(value).__name__}, not a tensor")
        arrays[key] = value.detach().to(torch.float32).numpy()
    return arrays


def initial_state(source: str, network: str, seed: int) -> dict[str, np.ndarray]:
    """The state dict of `build(network)` from generated `source`, initialised with `seed`."""
    import torch

    module = load_source(source)
    torch.manual_seed(seed)
    model = module.build(network)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
