"""Tensors for a compiled network: a saved state dict, or the generated module's initialisation.

This is the one place outside generated code that needs torch to produce weights; the ONNX
emitter itself only sees NumPy arrays.
"""

from __future__ import annotations

import importlib.util
import pickle
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from nscompile.errors import InputError


def load_state(path: str) -> dict[str, np.ndarray]:
    """Read a state dict saved with `torch.save(model.state_dict(), path)` (or .safetensors)."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"no weights file '{path}'", hint="give the path of a saved state dict")
    if file.suffix == ".safetensors":
        return _load_safetensors(file)
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
    try:
        from safetensors.numpy import load_file
    except ImportError:
        raise InputError("reading .safetensors needs the safetensors package") from None
    try:
        return dict(load_file(str(file)))
    except Exception as error:  # the library raises several types for a corrupt file
        raise InputError(f"'{file}' is not a readable safetensors file ({error})") from None


def _as_arrays(path: str, state: object) -> dict[str, np.ndarray]:
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
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "nscompile_generated_model.py"
        path.write_text(source, encoding="utf-8")
        spec = importlib.util.spec_from_file_location("nscompile_generated_model", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    torch.manual_seed(seed)
    model = module.build(network)
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
