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
from sympy import MatMul, MatrixSymbol, OneMatrix, Transpose

from nscompile.compiler.ir import HStack, Patches, VStack, product_factors
from nscompile.compiler.torch_printer import TorchPrinter, _number
from nscompile.errors import InternalError
from nscompile.lang.precedence import ATOM, PRODUCT

#: The k x k conv of a conv neuron layer, with the layer's own stride and padding.
_CONV = "F.conv2d({}, {}, stride=self.stride, padding=self.padding)"


class ConvPrinter(TorchPrinter):
    """Prints a conv neuron's IR expressions (see the module docstring)."""

    def __init__(self, params: set[MatrixSymbol], biases: set[MatrixSymbol]) -> None:
        super().__init__(params, accumulate=False)
        self.biases = biases

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

    def _conv(self, left: sp.Basic, weight: sp.Basic) -> str:
        if isinstance(left, Patches):
            return _CONV.format(self(left.arg), self.weight(weight))
        if isinstance(left, HStack) and all(isinstance(a, Patches) for a in left.args):
            inputs = ", ".join(self(a.arg) for a in left.args)
            return _CONV.format(f"torch.cat([{inputs}], dim=1)", self.weight(weight))
        return f"F.conv2d({self(left)}, {self.weight(weight)})"  # 1 x 1

    def weight(self, node: sp.Basic) -> str:
        """A map's weight as a conv weight (out x in x k x k)."""
        if isinstance(node, Transpose) and node.arg in self.params:
            return f"self.{node.arg.name}"
        if isinstance(node, HStack | VStack):
            dim = 0 if isinstance(node, HStack) else 1
            return f"torch.cat([{', '.join(self.weight(a) for a in node.args)}], dim={dim})"
        raise InternalError(f"not a conv weight: {node}")
