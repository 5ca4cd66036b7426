"""A float64 NumPy evaluator of the IR: the reference the backends are tested against."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
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
    Patches,
    ProgramIR,
    VStack,
)
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key
from nscompile.visitor import Visitor

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
        prefix = layer_key(index, "")  # "layer3.": every key of the layer's parameters
        own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
        if layer.neuron is None:
            h = h @ np.asarray(own["weight"], np.float64).T + np.asarray(own["bias"], np.float64)
        else:
            h = evaluate_neuron(neurons[layer.neuron], h, own, layer.out_features)
        h = ops.ACTIVATIONS[layer.activation].numpy(h)
    return h


class _Evaluator(Visitor):
    """IR expressions -> float64 arrays, given the values of the symbols and the sizes."""

    def __init__(self, env: Env, dims: dict[sp.Symbol, int]) -> None:
        self.env = env
        self.dims = dims

    def __call__(self, expr: sp.Basic) -> np.ndarray:
        if expr in self.env:
            return self.env[expr]
        return self.visit(expr)

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def _visit_MatrixSymbol(self, node: MatrixSymbol) -> np.ndarray:
        raise InternalError(f"{node} has no value")

    def _visit_Transpose(self, node: Transpose) -> np.ndarray:
        return self(node.arg).T

    def _visit_MatMul(self, node: MatMul) -> np.ndarray:
        scalar, matrices = 1.0, []
        for arg in node.args:
            if isinstance(arg, MatrixExpr):
                matrices.append(self(arg))
            else:
                scalar *= float(arg)
        result = matrices[0]
        for matrix in matrices[1:]:
            result = result @ matrix
        return scalar * result

    def _visit_MatAdd(self, node: MatAdd) -> np.ndarray:
        return sum((self(a) for a in node.args[1:]), self(node.args[0]))

    def _visit_HadamardProduct(self, node: HadamardProduct) -> np.ndarray:
        result = self(node.args[0])
        for arg in node.args[1:]:
            result = result * self(arg)
        return result

    def _visit_HadamardPower(self, node: HadamardPower) -> np.ndarray:
        return self(node.base) ** int(node.exp)

    def _visit_Apply(self, node: Apply) -> np.ndarray:
        return ops.ELEMENTWISE[node.name].numpy(self(node.arg))

    def _visit_HStack(self, node: HStack) -> np.ndarray:
        return np.concatenate([self(a) for a in node.args], axis=1)

    def _visit_VStack(self, node: VStack) -> np.ndarray:
        return np.concatenate([self(a) for a in node.args], axis=0)

    def _visit_ColumnSlice(self, node: ColumnSlice) -> np.ndarray:
        return self(node.args[0])[:, self.size(node.args[1]) : self.size(node.args[2])]

    def _visit_Patches(self, node: Patches) -> np.ndarray:
        # Conv layers are not evaluated here yet: their parity is torch against onnxruntime
        # and against torch.nn.functional (tests/test_conv.py, tests/test_conv_onnx.py).
        raise InternalError("the NumPy evaluator does not evaluate conv layers")

    def _visit_OneMatrix(self, node: OneMatrix) -> np.ndarray:
        return np.ones((self.size(node.shape[0]), self.size(node.shape[1])))

    def _visit_ZeroMatrix(self, node: ZeroMatrix) -> np.ndarray:
        return np.zeros((self.size(node.shape[0]), self.size(node.shape[1])))

    def _visit_Number(self, node: sp.Number) -> np.ndarray:
        return np.asarray(float(node))
