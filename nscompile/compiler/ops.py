"""One table of the language's functions: meaning (NumPy), PyTorch printing, ONNX lowering.

Adding an elementwise function or an activation means adding one row here and its name to
`syntax.ELEMENTWISE` / `syntax.ACTIVATIONS`; a test checks the two stay in step. Every backend
reads its column: `interpret` and `fold` the NumPy function, `emit_torch` the format string,
`emit_onnx` the node builder, and training (`learn/train/core.py`) an activation's `nn` module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from nscompile.lang import syntax


class Graph(Protocol):
    """What an ONNX lowering needs of `emit_onnx.GraphBuilder`: fold and interpret load this
    table, and they need not load onnx."""

    def node(self, op: str, inputs: list[str]) -> str: ...

    def constant(self, value: float) -> str: ...


#: An ONNX lowering: (graph, the argument's value name) -> the result's value name.
OnnxLowering = Callable[[Graph, str], str]


def _nodes(*names: str) -> OnnxLowering:
    """The lowering that applies ONNX ops of one input in order (none: the identity)."""

    def lower(graph: Graph, h: str) -> str:
        for op in names:
            h = graph.node(op, [h])
        return h

    return lower


def _onnx_silu(graph: Graph, h: str) -> str:
    return graph.node("Mul", [h, graph.node("Sigmoid", [h])])  # opset 18 has no SiLU op


def _onnx_gelu(graph: Graph, h: str) -> str:
    # Exact gelu, as torch's default: x * (1 + erf(x / sqrt 2)) / 2 (Gelu is opset 20).
    scaled = graph.node("Mul", [h, graph.constant(1 / np.sqrt(2.0))])
    erf = graph.node("Add", [graph.node("Erf", [scaled]), graph.constant(1.0)])
    return graph.node("Mul", [graph.node("Mul", [h, erf]), graph.constant(0.5)])


#: The floor of the magnitude `log` and `sqrt` take: log(u) = log(max(|u|, FLOOR)) and
#: sqrt(u) = sqrt(max(|u|, FLOOR)). Standardised inputs are half negative and sometimes zero, so
#: both read the argument's magnitude, as product units do (Durbin & Rumelhart 1989: log|x|) and
#: as tnlearn writes its log basis (`torch.log(torch.abs(x) + 1e-8)`, which this floor leaves
#: exact). Exactly log|u| and sqrt|u| wherever |u| >= FLOOR; below it the values are log(1e-8)
#: = -18.42 and 1e-4, and the derivatives 0: every value and gradient is finite (|d/du| is at
#: most 1e8 for log, 5e3 for sqrt), the same in NumPy, torch and ONNX (`Log(Max(Abs(u), FLOOR))`).
FLOOR = 1e-8


def _magnitude(a: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(a), FLOOR)


def _log(a: np.ndarray) -> np.ndarray:
    return np.log(_magnitude(a))


def _sqrt(a: np.ndarray) -> np.ndarray:
    return np.sqrt(_magnitude(a))


def _softplus(a: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, a)  # log(1 + e^a), stable for large |a|


def _onnx_floored(op: str) -> OnnxLowering:
    """`op(max(|h|, FLOOR))`: ONNX's `log` and `sqrt` (see FLOOR)."""

    def lower(graph: Graph, h: str) -> str:
        return graph.node(op, [graph.node("Max", [graph.node("Abs", [h]), graph.constant(FLOOR)])])

    return lower


_TORCH_MAGNITUDE = f"torch.clamp(torch.abs({{}}), min={FLOOR!r})"


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # stable for large |a|


def _relu(a: np.ndarray) -> np.ndarray:
    return np.maximum(a, 0.0)


def _silu(a: np.ndarray) -> np.ndarray:
    return a * _sigmoid(a)


def _gelu(a: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return a * 0.5 * (1.0 + np.vectorize(erf)(a / sqrt(2.0)))


@dataclass(frozen=True)
class Op:
    """An elementwise function: its reference meaning and how each backend writes it."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    torch: str  # format string with one `{}` for the argument
    onnx: OnnxLowering


@dataclass(frozen=True)
class Activation(Op):
    """A layer's activation; `module` names its `torch.nn` class, for the MLP baseline."""

    module: str


ELEMENTWISE: dict[str, Op] = {
    op.name: op
    for op in (
        Op("abs", np.abs, "torch.abs({})", _nodes("Abs")),
        Op("cos", np.cos, "torch.cos({})", _nodes("Cos")),
        Op("exp", np.exp, "torch.exp({})", _nodes("Exp")),
        Op("log", _log, f"torch.log({_TORCH_MAGNITUDE})", _onnx_floored("Log")),
        Op("relu", _relu, "torch.relu({})", _nodes("Relu")),
        Op("sigmoid", _sigmoid, "torch.sigmoid({})", _nodes("Sigmoid")),
        Op("sin", np.sin, "torch.sin({})", _nodes("Sin")),
        # log(1 + e^u); torch returns u itself above u = 20, within 2e-9 of it.
        Op("softplus", _softplus, "nn.functional.softplus({})", _nodes("Softplus")),
        Op("sqrt", _sqrt, f"torch.sqrt({_TORCH_MAGNITUDE})", _onnx_floored("Sqrt")),
        # No guard at the poles u = pi/2 + k pi: the value is what float arithmetic gives there
        # (large, finite, and different in float32 and float64).
        Op("tan", np.tan, "torch.tan({})", _nodes("Tan")),
        Op("tanh", np.tanh, "torch.tanh({})", _nodes("Tanh")),
    )
}

ACTIVATIONS: dict[str, Activation] = {
    op.name: op
    for op in (
        Activation("gelu", _gelu, "nn.functional.gelu({})", _onnx_gelu, "GELU"),
        Activation("identity", lambda a: a, "{}", _nodes(), "Identity"),
        Activation("relu", _relu, "torch.relu({})", _nodes("Relu"), "ReLU"),
        Activation("sigmoid", _sigmoid, "torch.sigmoid({})", _nodes("Sigmoid"), "Sigmoid"),
        Activation("silu", _silu, "nn.functional.silu({})", _onnx_silu, "SiLU"),
        Activation("tanh", np.tanh, "torch.tanh({})", _nodes("Tanh"), "Tanh"),
    )
}

assert tuple(sorted(ELEMENTWISE)) == tuple(sorted(syntax.ELEMENTWISE))
assert tuple(sorted(ACTIVATIONS)) == tuple(sorted(syntax.ACTIVATIONS))
