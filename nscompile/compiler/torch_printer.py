"""PyTorch expressions: IR expression -> the shortest correct torch code for it.

`emit_torch` lays out the module around what this prints; both import only the IR and SymPy.
"""

from __future__ import annotations

import math
import re

import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from nscompile.compiler import ops
from nscompile.compiler.ir import (
    TEMP_PREFIX,
    Apply,
    BatchNorm,
    ColumnSlice,
    HStack,
    Patches,
    QuadForm,
    SqDist,
    VStack,
    is_gemm,
    product_factors,
)
from nscompile.errors import InternalError
from nscompile.lang.precedence import ATOM, POWER, PRODUCT, SUM, UNARY
from nscompile.visitor import Visitor

#: Functions a generated module defines when its code calls them (`TorchPrinter.helpers`).
HELPERS = {
    "_squared_distance": '''
def _squared_distance(a: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """||a_n - c_o||^2 for every row n of a and row o of c, as |a_n|^2 - 2 a_n.c_o + |c_o|^2:
    one GEMM, never a (rows, units, features) difference; rounding may leave -1e-7 for 0."""
    return torch.addmm((c * c).sum(1), a, c.T, alpha=-2).add_((a * a).sum(1, keepdim=True))
''',
    "_conv_squared_distance": '''
def _conv_squared_distance(
    a: torch.Tensor, c: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """||p - c_o||^2 for every k x k patch p of a (zero padding included) and centre c_o
    (out x in x k x k), as |p|^2 - 2 p.c_o + |c_o|^2: two convs, never the patches."""
    distance = F.conv2d(a, -2 * c, (c * c).sum((1, 2, 3)), stride, padding)
    return distance.add_(F.conv2d(a * a, a.new_ones(1, *c.shape[1:]), None, stride, padding))
''',
    "_conv_quadratic": '''
def _conv_quadratic(
    a: torch.Tensor, w: torch.Tensor, stride: int, padding: int
) -> torch.Tensor:
    """p^T W_o p for every k x k patch p of a (zero padding included, F.unfold's channel-major
    order) and output channel o; w is out x (in x k x k) x (in x k x k)."""
    k = w.shape[-1]
    patches = F.unfold(a, k, padding=padding, stride=stride)  # batch x in*k*k x positions
    n = patches.shape[1]
    out = torch.einsum("bil,oij,bjl->bol", patches, w.reshape(len(w), n, n).to(a.dtype), patches)
    rows, cols = ((side + 2 * padding - k) // stride + 1 for side in a.shape[2:])
    return out.reshape(len(a), len(w), rows, cols)
''',
}

_SIZE_NAMES = re.compile(r"\b(in_features|out_features|kernel_size)\b")


def _size_code(expr: sp.Expr) -> str:
    return _SIZE_NAMES.sub(r"self.\1", sp.sstr(expr, order="lex"))


class TorchPrinter(Visitor):
    """Prints IR expressions as PyTorch expressions, with the fewest parentheses."""

    def __init__(
        self,
        params: set[MatrixSymbol],
        accumulate: bool = True,
        stored: dict[sp.Basic, str] | None = None,
    ) -> None:
        self.params = params
        self.accumulate = accumulate
        self.stored = stored or {}  # concatenations of parameters kept as one parameter
        self.accumulates = False  # whether a printed sum used the module's _accumulate
        self.helpers: set[str] = set()  # the module's functions (`HELPERS`) the code calls
        self.functional = False  # whether the code calls torch.nn.functional (`F.`)
        self.pieces: dict[ColumnSlice, str] = {}

    def split(self, symbol: MatrixSymbol, pieces: list[tuple[sp.Expr, sp.Expr]]) -> str:
        """`t0_0, t0_1 = t0.split([a, b], dim=1)`: one backward op instead of one per slice."""
        local = self.local(symbol)
        names = [f"{local}_{i}" for i in range(len(pieces))]
        for name, (start, stop) in zip(names, pieces, strict=True):
            self.pieces[ColumnSlice(symbol, start, stop)] = name
        sizes = ", ".join(_size_code(stop - start) for start, stop in pieces)
        return f"{', '.join(names)} = {local}.split([{sizes}], dim=1)"

    def __call__(self, expr: sp.Basic) -> str:
        return self.print(expr)[0]

    def local(self, symbol: MatrixSymbol) -> str:
        name = str(symbol.name)
        if not name.startswith(TEMP_PREFIX):
            raise InternalError(f"assignment to non-temporary {name}")
        return "t" + name[len(TEMP_PREFIX) :]

    def print(self, expr: sp.Basic) -> tuple[str, int]:
        """IR expression -> (code, precedence); InternalError for a node type it cannot print."""
        if expr in self.stored:
            return self.stored[expr], ATOM
        return self.visit(expr)

    def operand(self, expr: sp.Basic, parent: int) -> str:
        code, precedence = self.print(expr)
        return f"({code})" if precedence <= parent else code

    def _visit_QuadForm(self, node: QuadForm) -> tuple[str, int]:
        """`a W_o a^T` per unit: `F.bilinear`'s y = x1^T A x2 with A = W (out x in x in)."""
        arg = self(node.arg)
        self.functional = True
        return f"F.bilinear({arg}, {arg}, {self(node.weight)})", ATOM

    def _visit_SqDist(self, node: SqDist) -> tuple[str, int]:
        self.helpers.add("_squared_distance")
        return f"_squared_distance({self(node.arg)}, {self(node.centre)})", ATOM

    def _visit_BatchNorm(self, node: BatchNorm) -> tuple[str, int]:
        """A term under its own `nn.BatchNorm2d` module (`bn=terms`)."""
        return f"self.{node.name}({self(node.arg)})", ATOM

    def _visit_MatrixSymbol(self, node: MatrixSymbol) -> tuple[str, int]:
        name = str(node.name)
        if node in self.params:
            return f"self.{name}", ATOM
        if name.startswith(TEMP_PREFIX):
            return self.local(node), ATOM
        if name == "x":
            return "x", ATOM
        raise InternalError(f"unknown symbol {name}")

    def _visit_MatMul(self, node: MatMul) -> tuple[str, int]:
        scalar, matrices = product_factors(node)
        if all(isinstance(m, OneMatrix) for m in matrices):
            return _number(scalar)
        code = " @ ".join(self.operand(m, PRODUCT) for m in matrices)
        if len(matrices) > 1 and scalar == 1:
            return code, PRODUCT
        if scalar == 1:
            return self.print(matrices[0])
        if scalar == -1:  # `-a @ b` is `(-a) @ b`: a product, not a negation, to its neighbours
            return f"-{code}", (PRODUCT if len(matrices) > 1 else UNARY)
        return f"{_number(scalar)[0]} * {code}", PRODUCT

    def _visit_MatAdd(self, node: MatAdd) -> tuple[str, int]:
        """A sum with matrix products: accumulated in place into the first product's result.

        `_accumulate((a @ b).add_(e), c, d)`: the first product is a fresh tensor that nothing
        else holds and that no backward needs, so every other product is added into it by the
        GEMM itself (`addmm_`) and every other term by `add_`. No tensor per product and no
        tensor per partial sum: on the CPU each of those is a large allocation, and measured
        with `nscompile bench` they cost more than the arithmetic. `_accumulate` casts the
        operands to the sum's dtype, which under autocast is what torch.addmm would do.
        """
        gemms = [t for t in node.args if is_gemm(t) and product_factors(t)[0] == 1]
        if not gemms or len(node.args) == 1 or not self.accumulate:
            return self.sum(list(node.args))
        first = gemms[0]
        acc = f"({self(first)})"
        for term in node.args:
            if term is first:
                continue
            if is_gemm(term):
                scalar, (a, b) = product_factors(term)
                alpha = "" if scalar == 1 else f", alpha={_number(scalar)[0]}"
                acc = f"_accumulate({acc}, {self(a)}, {self(b)}{alpha})"
                self.accumulates = True
            else:
                acc += f".add_({self(term)})"
        return acc, ATOM

    def sum(self, terms: list[sp.Basic]) -> tuple[str, int]:
        parts: list[str] = []
        for term in terms:
            code, precedence = self.print(term)
            if parts and code.startswith("-") and precedence in (UNARY, PRODUCT):
                parts.append(f"- {code[1:]}")
            else:
                parts.append(("+ " if parts else "") + (f"({code})" if precedence < SUM else code))
        return " ".join(parts), SUM

    def _visit_HadamardProduct(self, node: HadamardProduct) -> tuple[str, int]:
        return " * ".join(self.operand(a, PRODUCT) for a in node.args), PRODUCT

    def _visit_HadamardPower(self, node: HadamardPower) -> tuple[str, int]:
        return f"{self.operand(node.base, POWER)}**{int(node.exp)}", POWER

    def _visit_Apply(self, node: Apply) -> tuple[str, int]:
        return ops.ELEMENTWISE[node.name].torch.format(self(node.arg)), ATOM

    def _visit_HStack(self, node: HStack) -> tuple[str, int]:
        return self.cat(node, dim=1)

    def _visit_VStack(self, node: VStack) -> tuple[str, int]:
        return self.cat(node, dim=0)

    def cat(self, node: HStack | VStack, dim: int) -> tuple[str, int]:
        return f"torch.cat([{', '.join(self(a) for a in node.args)}], dim={dim})", ATOM

    def _visit_ColumnSlice(self, node: ColumnSlice) -> tuple[str, int]:
        if node in self.pieces:
            return self.pieces[node], ATOM
        mat, start, stop = node.args
        lo = "" if start == 0 else _size_code(start)
        return f"{self.operand(mat, ATOM - 1)}[:, {lo}:{_size_code(stop)}]", ATOM

    def _visit_Transpose(self, node: Transpose) -> tuple[str, int]:
        return f"{self.operand(node.arg, ATOM - 1)}.T", ATOM

    def _visit_Patches(self, node: Patches) -> tuple[str, int]:
        raise InternalError(f"patches outside a conv: {node}")  # see conv_printer

    def _visit_OneMatrix(self, node: OneMatrix) -> tuple[str, int]:
        return "1", ATOM  # a constant broadcast over the batch

    def _visit_Number(self, node: sp.Number) -> tuple[str, int]:
        return _number(node)


#: Whole numbers print as Python ints below this; larger ones overflow torch's int64 scalars.
_EXACT_INT = 2**53


def _number(value: sp.Basic) -> tuple[str, int]:
    number = float(value)
    if not math.isfinite(number):  # fold rejects these; `inf` would be an undefined name
        raise InternalError(f"a non-finite constant {value} reached the backend")
    code = str(int(number)) if number.is_integer() and abs(number) < _EXACT_INT else repr(number)
    return code, (UNARY if number < 0 else ATOM)
