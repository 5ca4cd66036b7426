"""Test helpers: compile a spec, import the generated module, compare with the IR evaluator."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from types import ModuleType

import numpy as np
import torch

from nscompile.compiler.interpret import evaluate_neuron
from nscompile.compiler.ir import NeuronIR
from nscompile.compiler.pipeline import Compiled, compile_text, to_torch
from nscompile.learn.loader import load_source


def import_source(source: str) -> ModuleType:
    """Import generated source the way the package does (`nscompile.learn.loader`)."""
    return load_source(source)


def compile_and_import(text: str, file: str = "spec.ns") -> tuple[Compiled, ModuleType]:
    compiled = compile_text(text, file)
    return compiled, import_source(to_torch(compiled))


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


def term_gradients(model: torch.nn.Module, grads: Sequence[torch.Tensor | None]) -> dict:
    """The gradients `grads` (one per `model.parameters()`, in order) under the state dict's
    per-term keys: a fused parameter's gradient is cut into its members' the way its members
    are, by the module's own state_dict hook. None (unused) stays None for each member."""
    clone = copy.deepcopy(model)
    unused = set()
    with torch.no_grad():
        for (name, param), grad in zip(clone.named_parameters(), grads, strict=True):
            if grad is None:
                unused.add(name)
                param.zero_()
            else:
                param.copy_(grad)
    state = clone.state_dict()
    if not unused:
        return dict(state)
    # Which per-term keys lie in an unused parameter: those the zeroed parameter alone feeds.
    marked = copy.deepcopy(clone)
    with torch.no_grad():
        for name, param in marked.named_parameters():
            param.fill_(1.0 if name in unused else 0.0)
    flags = marked.state_dict()
    return {
        k: (None if bool(flags[k].bool().all()) and flags[k].numel() else v)
        for k, v in state.items()
    }
