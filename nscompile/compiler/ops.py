"""One table of the language's functions: meaning (NumPy), PyTorch printing, ONNX lowering.

Adding an elementwise function or an activation means adding one row here and its name to
`syntax.ELEMENTWISE` / `syntax.ACTIVATIONS`; a test checks the two stay in step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from nscompile.lang import syntax


def _sigmoid(a: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * a))  # stable for large |a|


def _gelu(a: np.ndarray) -> np.ndarray:
    from math import erf, sqrt

    return a * 0.5 * (1.0 + np.vectorize(erf)(a / sqrt(2.0)))


@dataclass(frozen=True)
class Op:
    """An elementwise function: its reference meaning and how each backend writes it."""

    name: str
    numpy: Callable[[np.ndarray], np.ndarray]
    torch: str  # format string with one `{}` for the argument
    onnx: tuple[str, ...]  # ONNX op(s) applied in order; empty for identity


ELEMENTWISE: dict[str, Op] = {
    op.name: op
    for op in (
        Op("abs", np.abs, "torch.abs({})", ("Abs",)),
        Op("cos", np.cos, "torch.cos({})", ("Cos",)),
        Op("exp", np.exp, "torch.exp({})", ("Exp",)),
        Op("relu", lambda a: np.maximum(a, 0.0), "torch.relu({})", ("Relu",)),
        Op("sigmoid", _sigmoid, "torch.sigmoid({})", ("Sigmoid",)),
        Op("sin", np.sin, "torch.sin({})", ("Sin",)),
        Op("tanh", np.tanh, "torch.tanh({})", ("Tanh",)),
    )
}

ACTIVATIONS: dict[str, Op] = {
    op.name: op
    for op in (
        Op("gelu", _gelu, "nn.functional.gelu({})", ("Gelu",)),
        Op("identity", lambda a: a, "{}", ()),
        Op("relu", lambda a: np.maximum(a, 0.0), "torch.relu({})", ("Relu",)),
        Op("sigmoid", _sigmoid, "torch.sigmoid({})", ("Sigmoid",)),
        Op("silu", lambda a: a * _sigmoid(a), "nn.functional.silu({})", ("Silu",)),
        Op("tanh", np.tanh, "torch.tanh({})", ("Tanh",)),
    )
}

assert tuple(sorted(ELEMENTWISE)) == tuple(sorted(syntax.ELEMENTWISE))
assert tuple(sorted(ACTIVATIONS)) == tuple(sorted(syntax.ACTIVATIONS))
