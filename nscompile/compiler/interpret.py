"""A float64 NumPy evaluator of the IR: the reference the backends are tested against."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)

from nscompile.compiler import ops
from nscompile.compiler.ir import (
    BATCH,
    IN,
    OUT,
    Apply,
    ColumnSlice,
    HStack,
    NetworkIR,
    NeuronIR,
    ProgramIR,
    VStack,
)
from nscompile.errors import InternalError

Env = dict[sp.Basic, np.ndarray]


def evaluate_neuron(
    neuron: NeuronIR, x: np.ndarray, params: Mapping[str, np.ndarray], out_features: int
) -> np.ndarray:
    """Evaluate one neuron layer on `x` (batch x in) with tensors named as in the module."""
    dims = {BATCH: x.shape[0], IN: x.shape[1], OUT: out_features}
    env: Env = {neuron.input: np.asarray(x, dtype=np.float64)}
    for param in neuron.params:
        value = np.asarray(params[param.name], dtype=np.float64)
        env[param.symbol] = value.reshape(1, -1) if param.role == "bias" else value
    evaluator = _Evaluator(env, dims)
    for target, expr in neuron.assignments:
        env[target] = evaluator(expr)
    return evaluator(neuron.output)


def evaluate_network(
    program: ProgramIR, network: NetworkIR, x: np.ndarray, state: Mapping[str, np.ndarray]
) -> np.ndarray:
    """Evaluate a whole network with a state dict keyed like the generated module's."""
    neurons = {n.name: n for n in program.neurons}
    h = np.asarray(x, dtype=np.float64)
    for index, layer in enumerate(network.layers, start=1):
        prefix = f"layer{index}."
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if layer.neuron is None:
            h = h @ np.asarray(own["weight"], np.float64).T + np.asarray(own["bias"], np.float64)
        else:
            h = evaluate_neuron(neurons[layer.neuron], h, own, layer.out_features)
        h = ops.ACTIVATIONS[layer.activation].numpy(h)
    return h


class _Evaluator:
    def __init__(self, env: Env, dims: dict[sp.Symbol, int]) -> None:
        self.env = env
        self.dims = dims

    def __call__(self, expr: sp.Basic) -> np.ndarray:
        if expr in self.env:
            return self.env[expr]
        handler = _HANDLERS.get(type(expr))
        if handler is None:
            if isinstance(expr, sp.Expr) and expr.is_number:
                return np.asarray(float(expr))
            raise InternalError(f"cannot evaluate {type(expr).__name__}: {expr}")
        return handler(self, expr)

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))


def _symbol(ev: _Evaluator, node: MatrixSymbol) -> np.ndarray:
    raise InternalError(f"{node} has no value")


def _matmul(ev: _Evaluator, node: MatMul) -> np.ndarray:
    scalar, matrices = 1.0, []
    for arg in node.args:
        if isinstance(arg, sp.MatrixExpr):
            matrices.append(ev(arg))
        else:
            scalar *= float(arg)
    result = matrices[0]
    for matrix in matrices[1:]:
        result = result @ matrix
    return scalar * result


def _product(ev: _Evaluator, node: HadamardProduct) -> np.ndarray:
    result = ev(node.args[0])
    for arg in node.args[1:]:
        result = result * ev(arg)
    return result


_HANDLERS: dict[type, Callable[[_Evaluator, sp.Basic], np.ndarray]] = {
    MatrixSymbol: _symbol,
    Transpose: lambda ev, n: ev(n.arg).T,
    MatMul: _matmul,
    MatAdd: lambda ev, n: sum((ev(a) for a in n.args[1:]), ev(n.args[0])),
    HadamardProduct: _product,
    HadamardPower: lambda ev, n: ev(n.base) ** int(n.exp),
    Apply: lambda ev, n: ops.ELEMENTWISE[n.name].numpy(ev(n.arg)),
    HStack: lambda ev, n: np.concatenate([ev(a) for a in n.args], axis=1),
    VStack: lambda ev, n: np.concatenate([ev(a) for a in n.args], axis=0),
    ColumnSlice: lambda ev, n: ev(n.args[0])[:, ev.size(n.args[1]) : ev.size(n.args[2])],
    OneMatrix: lambda ev, n: np.ones((ev.size(n.shape[0]), ev.size(n.shape[1]))),
    ZeroMatrix: lambda ev, n: np.zeros((ev.size(n.shape[0]), ev.size(n.shape[1]))),
}  # type: ignore[dict-item]
