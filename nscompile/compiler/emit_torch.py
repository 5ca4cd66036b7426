"""PyTorch backend: ProgramIR -> the source of one standalone module that imports only torch.

Python decides every string here; `templates/module.py.jinja` only lays them out.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable

import jinja2
import sympy as sp
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix, Transpose

from nscompile import __version__
from nscompile.compiler import ops
from nscompile.compiler.ir import (
    TEMP_PREFIX,
    Apply,
    ColumnSlice,
    HStack,
    NetworkIR,
    NeuronIR,
    Param,
    ProgramIR,
    VStack,
    column_partitions,
    product_factors,
)
from nscompile.compiler.storage import Group, Member, fused_groups, output_terms
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key, unique_class_names
from nscompile.lang.precedence import ATOM, POWER, PRODUCT, SUM, UNARY
from nscompile.resources import data_path
from nscompile.visitor import Visitor

_SAFE_DOC = re.compile(r"[A-Za-z0-9_ <>,+\-*().;=]*\Z")
_SIZE_NAMES = re.compile(r"\b(in_features|out_features)\b")


def emit_torch(program: ProgramIR, accumulate: bool = True) -> str:
    """ProgramIR (optimised) -> Python source text, byte-identical for the same input.

    `accumulate=False` prints sums as plain `+` instead of accumulating in place (`add_`,
    `_accumulate`): with the un-optimised IR this is the layer written the obvious way, the
    reference of `nscompile bench`.
    """
    names = unique_class_names(
        [n.name for n in program.neurons] + [n.name for n in program.networks],
        {n.name: "Layer" for n in program.neurons},
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_path("templates", "module.py.jinja").parent)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    neurons = [_neuron_view(n, names[n.name], accumulate) for n in program.neurons]
    return env.get_template("module.py.jinja").render(
        version=__version__,
        source_name=program.source_name,
        sha256=program.source_sha256,
        accumulates=any(n["accumulates"] for n in neurons),
        fuses=any(n["fused"] for n in neurons),
        neurons=neurons,
        networks=[_network_view(n, names) for n in program.networks],
    )


def _safe_doc(text: str) -> str:
    if not _SAFE_DOC.match(text):
        raise InternalError(f"unexpected character in docstring text {text!r}")
    return text


def _neuron_view(neuron: NeuronIR, class_name: str, accumulate: bool) -> dict[str, object]:
    groups = fused_groups(neuron) if accumulate else []
    stored = {g.node: f"self.{g.name}" for g in groups}
    for group in groups:  # the output sum's right sides: row slices of its stacked parameter
        for right, start, stop in group.rows:
            lo = "" if start == 0 else _size_code(start)
            stored[right] = f"self.{group.name}[{lo}:{_size_code(stop)}]"
    printer = TorchPrinter({p.symbol for p in neuron.params}, accumulate, stored)
    partitions = column_partitions(neuron)
    body = []
    for target, expr in neuron.assignments:
        body.append(f"{printer.local(target)} = {printer(expr)}")
        if target in partitions:
            body.append(printer.split(target, partitions[target]))
    return {
        "class_name": class_name,
        "name": neuron.name,
        "formula": _safe_doc(f"y = {neuron.formula}"),
        "rank": neuron.rank,
        "params": _param_lines(neuron, groups),
        "inits": [_init_code(p) for p in neuron.params],
        "fused": [
            (g.name, _members_doc(g), _tuple_code(m.param.name for m in g.members)) for g in groups
        ],
        "terms": _tuple_code(p.name for p in neuron.params),
        "views": [(m.param.name, _view_code(g, m)) for g in groups for m in g.members],
        "body": body,
        "result": printer(neuron.output),
        "one_gemm": _one_gemm(printer, neuron, groups),
        "accumulates": printer.accumulates,
    }


def _network_view(network: NetworkIR, names: dict[str, str]) -> dict[str, object]:
    layers, lines = [], []
    for index, layer in enumerate(network.layers, start=1):
        module = names[layer.neuron] if layer.neuron else "nn.Linear"
        attribute = layer_key(index)
        layers.append(f"self.{attribute} = {module}({layer.in_features}, {layer.out_features})")
        source = "x" if index == 1 else "h"
        call = ops.ACTIVATIONS[layer.activation].torch.format(f"self.{attribute}({source})")
        lines.append(call)
    return {
        "class_name": names[network.name],
        "name": network.name,
        "summary": _safe_doc(network.summary),
        "task": network.task,
        "in_features": network.input_width,
        "out_features": network.layers[-1].out_features,
        "layers": layers,
        "steps": lines,
    }


def _one_gemm(printer: TorchPrinter, neuron: NeuronIR, groups: list[Group]) -> str | None:
    """The output sum as one GEMM over its concatenated left sides, or None without an output
    group: `torch.addmm(rest, torch.cat([x, x**2, p], dim=1), self._fused0)`."""
    group = next((g for g in groups if g.rows), None)
    if group is None:
        return None
    terms = output_terms(neuron.output)
    lefts = []
    for term in terms:
        left = product_factors(term)[1][0]
        lefts += [printer(a) for a in left.args] if isinstance(left, HStack) else [printer(left)]
    gemm = f"torch.cat([{', '.join(lefts)}], dim=1), self.{group.name}"
    rest = [a for a in neuron.output.args if a not in terms]
    if not rest:
        return f"torch.mm({gemm})"
    return f"torch.addmm({printer.sum(rest)[0]}, {gemm})"


def _param_lines(neuron: NeuronIR, groups: list[Group]) -> list[tuple[str, str]]:
    """(attribute, shape code) per stored parameter: a fused group where its first member was."""
    group_of = {m.param.name: g for g in groups for m in g.members}
    lines, done = [], set()
    for param in neuron.params:
        group = group_of.get(param.name)
        if group is None:
            lines.append((param.name, _shape_code(param)))
        elif group.name not in done:
            done.add(group.name)
            lines.append((group.name, ", ".join(sp.sstr(s, order="lex") for s in group.shape)))
    return lines


def _tuple_code(names: Iterable[str]) -> str:
    """`("a", "b")`, or `("a",)` for one name."""
    quoted = [f'"{n}"' for n in names]
    return f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"


def _members_doc(group: Group) -> str:
    """`[cp2_u1 | cp2_u2]` (side by side) or `[cp2_a; cp3_a]` (stacked), `.T` where transposed."""
    names = [m.param.name + (".T" if m.transposed else "") for m in group.members]
    return "[" + (" | " if group.dim == 1 else "; ").join(names) + "]"


def _view_code(group: Group, member: Member) -> str:
    """The member's view of the stored tensor: its columns (side by side) or rows (stacked)."""
    lo = "" if member.start == 0 else _size_code(member.start)
    span = f"{lo}:{_size_code(member.stop)}"
    code = f"self.{group.name}[:, {span}]" if group.dim == 1 else f"self.{group.name}[{span}]"
    return code + (".T" if member.transposed else "")


def _size_code(expr: sp.Expr) -> str:
    return _SIZE_NAMES.sub(r"self.\1", sp.sstr(expr, order="lex"))


def _shape_code(param: Param) -> str:
    return ", ".join(sp.sstr(s) for s in param.shape)


def _init_code(param: Param) -> str:
    init = param.init
    if init.scale == 0:
        return f"nn.init.zeros_(self.{param.name})"
    fan = _size_code(init.fan_in)
    m2 = "" if init.second_moment == 1 else f"{init.second_moment:.6g} * "
    size = f"{init.scale:.6g} / math.sqrt({m2}{fan})"
    if init.uniform:
        return f"nn.init.uniform_(self.{param.name}, -{size}, {size})"
    return f"nn.init.normal_(self.{param.name}, std={size})"


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
        gemms = [t for t in node.args if _gemm(t) and product_factors(t)[0] == 1]
        if not gemms or len(node.args) == 1 or not self.accumulate:
            return self.sum(list(node.args))
        first = gemms[0]
        acc = f"({self(first)})"
        for term in node.args:
            if term is first:
                continue
            if _gemm(term):
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

    def _visit_OneMatrix(self, node: OneMatrix) -> tuple[str, int]:
        return "1", ATOM  # a constant broadcast over the batch

    def _visit_Number(self, node: sp.Number) -> tuple[str, int]:
        return _number(node)


def _gemm(term: sp.Basic) -> bool:
    """A product of exactly two matrices with a numeric coefficient: `_accumulate` material."""
    if not isinstance(term, MatMul):
        return False
    scalar, matrices = product_factors(term)
    return (
        scalar.is_number
        and len(matrices) == 2
        and not any(isinstance(m, OneMatrix) for m in matrices)
    )


#: Whole numbers print as Python ints below this; larger ones overflow torch's int64 scalars.
_EXACT_INT = 2**53


def _number(value: sp.Basic) -> tuple[str, int]:
    number = float(value)
    if not math.isfinite(number):  # fold rejects these; `inf` would be an undefined name
        raise InternalError(f"a non-finite constant {value} reached the backend")
    code = str(int(number)) if number.is_integer() and abs(number) < _EXACT_INT else repr(number)
    return code, (UNARY if number < 0 else ATOM)
