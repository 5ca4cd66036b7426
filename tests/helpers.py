"""Test helpers: compile a spec, import the generated module, compare with the IR evaluator."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import torch

from nscompile.compiler.interpret import evaluate_neuron
from nscompile.compiler.ir import NeuronIR
from nscompile.compiler.pipeline import Compiled, compile_text, to_torch

_counter = itertools.count()


def import_source(source: str, directory: Path) -> ModuleType:
    """Write generated source into `directory` and import it under a fresh module name."""
    name = f"generated_{next(_counter)}"
    path = directory / f"{name}.py"
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def compile_and_import(
    text: str, directory: Path, file: str = "spec.ns"
) -> tuple[Compiled, ModuleType]:
    compiled = compile_text(text, file)
    return compiled, import_source(to_torch(compiled), directory)


def relative_error(actual: np.ndarray, expected: np.ndarray) -> float:
    """||actual - expected|| / max(||expected||, tiny), in float64."""
    diff = np.linalg.norm(np.asarray(actual, np.float64) - expected)
    return float(diff / max(np.linalg.norm(expected), 1e-30))


def layer_parity(
    layer_cls: type, neuron: NeuronIR, in_features: int, out_features: int, batch: int, seed: int
) -> float:
    """Relative error of the generated layer (float32) against the IR evaluated in float64."""
    torch.manual_seed(seed)
    layer = layer_cls(in_features, out_features)
    x = torch.randn(batch, in_features, generator=torch.Generator().manual_seed(seed + 1))
    with torch.no_grad():
        actual = layer(x).numpy()
    params = {k: v.detach().double().numpy() for k, v in layer.state_dict().items()}
    expected = evaluate_neuron(neuron, x.double().numpy(), params, out_features)
    return relative_error(actual, expected)
