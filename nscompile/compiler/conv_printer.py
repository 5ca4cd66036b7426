"""PyTorch expressions of a conv layer's IR: maps become `F.conv2d`, channels are dim 1.

In a conv neuron's IR (`ir.Patches`) a matrix is a feature map seen as positions x channels,
so `Patches(a) @ W.T` prints as the k x k conv `F.conv2d(a, W, stride, padding)`, `a @ U.T`
as the 1 x 1 conv `F.conv2d(a, U)`, and a concatenation of weights as `torch.cat` on the
dimension the fusion chose: output channels (dim 0) for maps of the same argument side by
side, input channels (dim 1) for a sum of maps over concatenated arguments. Column slices and
splits are channel slices (dim 1, as for dense layers). Sums print plainly: no `addmm`.
"""

from __future__ import annotations

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from nscompile.compiler.ir import HStack, Patches, QuadForm, SqDist, VStack, product_factors
from nscompile.compiler.torch_printer import TorchPrinter, _number
from nscompile.errors import InternalError
from nscompile.lang.precedence import ATOM, PRODUCT

#: The k x k conv of a conv neuron layer, with the layer's own stride and padding.
_CONV = "F.conv2d({}, {}, {}, self.stride, self.padding)"


class ConvPrinter(TorchPrinter):
    """Prints a conv neuron's IR expressions (see the module docstring)."""

    def __init__(
        self, params: set[MatrixSymbol], biases: set[MatrixSymbol], accumulate: bool = True
    ) -> None:
        super().__init__(params, accumulate=False)
        self.biases = biases
        self.sums_in_place = accumulate

    def _visit_MatAdd(self, node: MatAdd) -> tuple[str, int]:
        """A sum with a k x k conv: the bias passed to that conv, every other term added in
        place into its output, a fresh tensor that no backward needs (`nscompile bench`:
        three full-size out-of-place adds were 12% of a 64 -> 64 layer's forward)."""
        terms = list(node.args)
        first = next((a for a in terms if self._is_conv(a)), None)
        if not self.sums_in_place or first is None:
            return self.sum(terms)
        bias = next((a for a in terms if self._is_bias(a)), None)
        _, (left, weight) = product_factors(first)
        extra = f"self.{product_factors(bias)[1][0].name}" if bias is not None else "None"
        acc = self._conv(left, weight, extra)
        for term in terms:
            if term is not first and term is not bias:
                acc += f".add_({self(term)})"
        return acc, ATOM

    def _is_conv(self, node: sp.Basic) -> bool:
        if not isinstance(node, MatMul):
            return False
        scalar, matrices = product_factors(node)
        left = matrices[0]
        patches = isinstance(left, Patches) or (
            isinstance(left, HStack) and all(isinstance(a, Patches) for a in left.args)
        )
        return scalar == 1 and len(matrices) == 2 and patches

    def _is_bias(self, node: sp.Basic) -> bool:
        if not isinstance(node, MatMul):
            return False
        scalar, matrices = product_factors(node)
        return scalar == 1 and len(matrices) == 1 and matrices[0] in self.biases

    def _visit_QuadForm(self, node: QuadForm) -> tuple[str, int]:
        if not isinstance(node.arg, Patches):
            raise InternalError(f"a conv layer's quadratic form of no patches: {node}")
        self.helpers.add("_conv_quadratic")
        weight = self(node.weight)
        return f"_conv_quadratic({self(node.arg.arg)}, {weight}, self.stride, self.padding)", ATOM

    def _visit_SqDist(self, node: SqDist) -> tuple[str, int]:
        if not isinstance(node.arg, Patches):
            raise InternalError(f"a conv layer's distance of no patches: {node}")
        self.helpers.add("_conv_squared_distance")
        centre = self(node.centre)
        code = f"_conv_squared_distance({self(node.arg.arg)}, {centre}, self.stride, self.padding)"
        return code, ATOM

    def _visit_MatMul(self, node: MatMul) -> tuple[str, int]:
        scalar, matrices = product_factors(node)
        if len(matrices) == 1 and matrices[0] in self.biases:
            code = f"self.{matrices[0].name}[:, None, None]"
        elif len(matrices) == 2 and not isinstance(matrices[0], OneMatrix):
            code = self._conv(*matrices)
        else:
            return super()._visit_MatMul(node)
        if scalar == 1:
            return code, ATOM
        return f"{_number(scalar)[0]} * {code}", PRODUCT

    def _conv(self, left: sp.Basic, weight: sp.Basic, bias: str = "None") -> str:
        if isinstance(left, Patches):
            return _CONV.format(self(left.arg), self.weight(weight), bias)
        if isinstance(left, HStack) and all(isinstance(a, Patches) for a in left.args):
            inputs = ", ".join(self(a.arg) for a in left.args)
            return _CONV.format(f"torch.cat([{inputs}], dim=1)", self.weight(weight), bias)
        return f"F.conv2d({self(left)}, {self.weight(weight)})"  # 1 x 1

    def weight(self, node: sp.Basic) -> str:
        """A map's weight as a conv weight (out x in x k x k)."""
        if isinstance(node, Transpose) and node.arg in self.params:
            return f"self.{node.arg.name}"
        if isinstance(node, HStack | VStack):
            dim = 0 if isinstance(node, HStack) else 1
            return f"torch.cat([{', '.join(self.weight(a) for a in node.args)}], dim={dim})"
        raise InternalError(f"not a conv weight: {node}")
