"""A neuron's aggregation in tnlearn's notation, for the tnlearn peer of `nscompile bench`.

tnlearn's `TNLinear` evaluates a formula string of inner products `<w1, x**2>` joined by `+`,
`-` and `*`, with four functions; it adds its own bias. What it cannot express is a ValueError
that says why, and the benchmark skips that peer.
"""

from __future__ import annotations

from collections.abc import Iterator

from nscompile.lang import syntax
from nscompile.visitor import Visitor

TNLEARN_FUNCTIONS = {"sin", "cos", "exp", "tanh"}  # what TNLinear's evaluator knows


def tnlearn_formula(neuron: syntax.Neuron) -> tuple[str | None, str]:
    """The neuron in tnlearn's notation, or (None, why it has none)."""
    assigns = [stmt for stmt in neuron.body if isinstance(stmt, syntax.Assign)]
    if len(assigns) != 1:
        return None, "tnlearn takes one formula; this neuron has intermediate assignments"
    try:
        return _Terms(f"w{i}" for i in range(1, 1_000)).visit(assigns[0].expr), ""
    except ValueError as error:
        return None, str(error)


class _Terms(Visitor):
    """An aggregation -> tnlearn's formula text; its weights are named in order from `names`."""

    def __init__(self, names: Iterator[str]) -> None:
        self.names = names

    def _visit_Number(self, node: syntax.Number) -> str:
        return repr(float(node.value))

    def _visit_Inner(self, node: syntax.Inner) -> str:
        if node.form != syntax.INNER:
            raise ValueError(f"tnlearn's notation has no '{node.form}'")
        return f"<{next(self.names)}, {_ARGUMENT.visit(node.arg)}>"

    def _visit_Call(self, node: syntax.Call) -> str:
        if node.func == syntax.CP_NAME:
            arg, order = node.args
            assert isinstance(order, syntax.Number)
            terms = (
                f"<{next(self.names)}, {_ARGUMENT.visit(arg)}>" for _ in range(int(order.value))
            )
            return "*".join(terms)
        if node.func not in TNLEARN_FUNCTIONS:
            raise ValueError(f"tnlearn's TNLinear cannot evaluate '{node.func}'")
        return f"{node.func}({self.visit(node.args[0])})"

    def _visit_BinOp(self, node: syntax.BinOp) -> str:
        if node.op in "+-" and _is_bias(node.right):
            return self.visit(node.left)  # TNLinear adds its own bias
        if node.op == "+" and _is_bias(node.left):
            return self.visit(node.right)
        left, right = self.visit(node.left), self.visit(node.right)
        if node.op == "*":
            return f"{_wrap(node.left, left)}*{_wrap(node.right, right)}"
        return f"{left} {node.op} {_wrap(node.right, right)}"

    def _visit_Neg(self, node: syntax.Neg) -> str:
        return f"-{_wrap(node.operand, self.visit(node.operand))}"

    def _visit_Pow(self, node: syntax.Pow) -> str:
        return f"({self.visit(node.base)})**{int(node.exponent)}"

    def _visit_Name(self, node: syntax.Name) -> str:
        raise ValueError(f"tnlearn's notation cannot express '{type(node).__name__}' as a term")


class _Argument(Visitor):
    """An inner product's input-wide argument: x, powers, tnlearn's four functions."""

    def _visit_Name(self, node: syntax.Name) -> str:
        if node.name != syntax.INPUT_NAME:
            return self._inexpressible(node)
        return "x"

    def _visit_Pow(self, node: syntax.Pow) -> str:
        return f"{self.visit(node.base)}**{int(node.exponent)}"

    def _visit_Call(self, node: syntax.Call) -> str:
        if node.func not in TNLEARN_FUNCTIONS:
            raise ValueError(f"tnlearn's TNLinear cannot evaluate '{node.func}'")
        return f"{node.func}({self.visit(node.args[0])})"

    def _inexpressible(self, node: syntax.Expr) -> str:
        raise ValueError("tnlearn's notation cannot express this inner-product argument")

    _visit_Number = _visit_Inner = _visit_BinOp = _visit_Neg = _inexpressible


_ARGUMENT = _Argument()


def _is_bias(node: syntax.Expr) -> bool:
    return isinstance(node, syntax.Name) and node.name != syntax.INPUT_NAME


def _wrap(node: syntax.Expr, text: str) -> str:
    return f"({text})" if isinstance(node, syntax.BinOp) and node.op in "+-" else text
