"""The cost model of `nscompile bench`: an optimised neuron layer -> its forward FLOPs.

A product (m x k)(k x n) counts 2mkn; every elementwise operation one per element (a power k
as k - 1 multiplications); concatenations, slices, transposes and leaves nothing.
"""

from __future__ import annotations

import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
)

from nscompile.compiler.ir import (
    BATCH,
    IN,
    OUT,
    Apply,
    NeuronIR,
    product_factors,
)
from nscompile.visitor import Visitor


def forward_flops(neuron: NeuronIR, batch: int, in_features: int, out_features: int) -> int:
    """Floating-point operations of one forward pass of the optimised neuron layer."""
    counter = _Flops({BATCH: batch, IN: in_features, OUT: out_features})
    return sum(counter.total(e) for e in [e for _, e in neuron.assignments] + [neuron.output])


class _Flops(Visitor):
    """An IR node -> the FLOPs of the node itself, its operands not included."""

    def __init__(self, dims: dict[sp.Symbol, int]) -> None:
        self.dims = dims

    def total(self, expr: MatrixExpr) -> int:
        """The FLOPs of `expr` and of every matrix below it, each occurrence counted."""
        operands = [a for a in expr.args if isinstance(a, MatrixExpr)]
        return self.visit(expr) + sum(self.total(a) for a in operands)

    def dim(self, value: sp.Basic) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def size(self, node: MatrixExpr) -> int:
        return self.dim(node.shape[0]) * self.dim(node.shape[1])

    def _visit_MatMul(self, node: MatMul) -> int:
        scalar, matrices = product_factors(node)
        total = 0
        for left, right in zip(matrices, matrices[1:], strict=False):
            total += (
                2 * self.dim(left.shape[0]) * self.dim(left.shape[1]) * self.dim(right.shape[1])
            )
        return total + (self.size(node) if scalar != 1 else 0)

    def _visit_MatAdd(self, node: MatAdd) -> int:
        return (len(node.args) - 1) * self.size(node)

    def _visit_HadamardProduct(self, node: HadamardProduct) -> int:
        return (len(node.args) - 1) * self.size(node)

    def _visit_HadamardPower(self, node: HadamardPower) -> int:
        return (int(node.exp) - 1) * self.size(node)

    def _visit_Apply(self, node: Apply) -> int:
        return self.size(node)

    def _free(self, node: MatrixExpr) -> int:
        return 0  # moves or views the data, or is a leaf

    _visit_MatrixSymbol = _visit_OneMatrix = _visit_Transpose = _free
    _visit_HStack = _visit_VStack = _visit_ColumnSlice = _free
    # A conv's im2col is not computed: `Patches(a) W.T` costs what the conv costs, counted by
    # the product (rows: the output positions; inner size: in * k * k).
    _visit_Patches = _free
