"""The cost model of `nscompile bench`: an optimised neuron layer -> its forward FLOPs.

A product (m x k)(k x n) counts 2mkn; every elementwise operation one per element (a power k
as k - 1 multiplications); concatenations, slices, transposes and leaves nothing. In a conv
layer's IR a matrix is a feature map (positions x channels): `Patches(a) * W.T`, a k x k conv,
counts 2 * output positions * (in * k * k) * out, and whatever is computed under `Patches` (the
1 x 1 convs, powers and products the k x k convs read) counts at the input's positions.
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
    KERNEL,
    OUT,
    Apply,
    BatchNorm,
    NeuronIR,
    Patches,
    QuadForm,
    SqDist,
    product_factors,
)
from nscompile.visitor import Visitor


def forward_flops(neuron: NeuronIR, batch: int, in_features: int, out_features: int) -> int:
    """Floating-point operations of one forward pass of the optimised neuron layer."""
    counter = _Flops({BATCH: batch, IN: in_features, OUT: out_features})
    return sum(counter.total(e) for e in [e for _, e in neuron.assignments] + [neuron.output])


def conv_forward_flops(
    neuron: NeuronIR,
    out_positions: int,
    in_positions: int,
    in_channels: int,
    out_channels: int,
    kernel: int,
) -> int:
    """FLOPs of one forward pass of a conv neuron layer (`ProgramIR.conv_neurons`).

    `out_positions`: batch * H' * W' of the output, where the k x k convs (`Patches(a) * W.T`)
    and the sum of the terms are; `in_positions`: batch * H * W of the input, where what those
    convs read is computed (the same with stride 1 and padding k // 2). An assignment is counted
    at the input's positions unless it holds a k x k conv.
    """
    dims = {IN: in_channels, OUT: out_channels, KERNEL: kernel}
    inner = _Flops({**dims, BATCH: in_positions})
    outer = _Flops({**dims, BATCH: out_positions}, inner=inner)
    at_output: set[sp.Basic] = set()
    total = 0
    for target, expr in neuron.assignments:
        holds_conv = any(
            isinstance(node, Patches) or node in at_output for node in sp.preorder_traversal(expr)
        )
        if holds_conv:
            at_output.add(target)
        total += (outer if holds_conv else inner).total(expr)
    return total + outer.total(neuron.output)


class _Flops(Visitor):
    """An IR node -> the FLOPs of the node itself, its operands not included.

    `inner`: the counter of what lies under a `Patches` (a conv layer's input positions).
    """

    def __init__(self, dims: dict[sp.Symbol, int], inner: _Flops | None = None) -> None:
        self.dims = dims
        self.inner = inner

    def total(self, expr: MatrixExpr) -> int:
        """The FLOPs of `expr` and of every matrix below it, each occurrence counted."""
        if isinstance(expr, Patches) and self.inner is not None:
            return self.inner.total(expr.arg)
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

    def _visit_QuadForm(self, node: QuadForm) -> int:
        # a W (rows x n by n x out*n) and the products with a, summed: 2 rows n n out + 2 rows n out
        rows, n = self.dim(node.arg.shape[0]), self.dim(node.arg.shape[1])
        return 2 * rows * n * (n + 1) * self.dim(node.shape[1])

    def _visit_SqDist(self, node: SqDist) -> int:
        # -2 a C^T + |C|^2 (one GEMM with a bias) + |a|^2: 2 rows n out + rows out + 2 rows n
        rows, n = self.dim(node.arg.shape[0]), self.dim(node.arg.shape[1])
        return 2 * rows * n * self.dim(node.shape[1]) + self.size(node) + 2 * rows * n

    def _visit_BatchNorm(self, node: BatchNorm) -> int:
        return 2 * self.size(node)  # a scale and a shift per element (eval mode)

    def _free(self, node: MatrixExpr) -> int:
        return 0  # moves or views the data, or is a leaf

    _visit_MatrixSymbol = _visit_OneMatrix = _visit_Transpose = _free
    _visit_HStack = _visit_VStack = _visit_ColumnSlice = _free
    # A conv's im2col is not computed: `Patches(a) W.T` costs what the conv costs, counted by
    # the product (rows: the output positions; inner size: in * k * k).
    _visit_Patches = _free
