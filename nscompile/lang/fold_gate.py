"""Which aggregations need `fold` at all: a syntactic test that keeps SymPy out of `check`.

`fold` (SymPy on a scalar model) finds constants out of range, terms that vanish, arguments
that do not vary with x, and folded powers past `MAX_FOLDED_POWER`. Each of those needs one of:
a numeric literal (besides a power's exponent and cp's order), a negation or a subtraction (to
cancel), an argument without x, or powers multiplied past the bound. An aggregation with none
of them folds to itself: sums and products of distinct learnable terms and positive powers of
functions of x cannot cancel, vanish or become constant. Such a spec skips the stage, which saves
SymPy's import (half a second) in `nscompile check`; anything else goes through `fold`.
tests/test_fuzz.py checks the claim: every fuzzed spec the gate lets through folds cleanly.
"""

from __future__ import annotations

from nscompile.lang import syntax as s
from nscompile.visitor import Visitor


def needs_fold(spec: s.Spec) -> bool:
    """True when some aggregation of `spec` could fold to something else."""
    for neuron in spec.neurons.values():
        for stmt in neuron.body:
            if isinstance(stmt, s.Assign) and not _plain(stmt.expr):
                return True
    return False


def _plain(expr: s.Expr) -> bool:
    try:
        return _DEGREE.visit(expr) <= s.MAX_FOLDED_POWER
    except _NeedsFold:
        return False


class _NeedsFold(Exception):
    pass


class _Degree(Visitor):
    """An upper bound of every exponent SymPy could fold into a node; _NeedsFold otherwise."""

    def _visit_Name(self, node: s.Name) -> int:
        return 1

    def _visit_Inner(self, node: s.Inner) -> int:
        self.argument(node.arg)
        return 1  # a learnable term: its own symbol, never combined with another

    def _visit_Call(self, node: s.Call) -> int:
        if node.func == s.CP_NAME:
            self.argument(node.args[0])
            return 1
        if len(node.args) != 1:
            raise _NeedsFold
        self.visit(node.args[0])
        return 1  # a function of x is an opaque base

    def _visit_BinOp(self, node: s.BinOp) -> int:
        if node.op == "+":
            return max(self.visit(node.left), self.visit(node.right))
        if node.op == "*":
            return self.visit(node.left) + self.visit(node.right)
        raise _NeedsFold  # '-': terms may cancel

    def _visit_Pow(self, node: s.Pow) -> int:
        if node.exponent != int(node.exponent) or node.exponent < 1:
            raise _NeedsFold
        degree = self.visit(node.base) * int(node.exponent)
        if degree > s.MAX_FOLDED_POWER:
            raise _NeedsFold
        return degree

    def _visit_Number(self, node: s.Number) -> int:
        raise _NeedsFold  # a constant may be out of range, or zero a term

    def _visit_Neg(self, node: s.Neg) -> int:
        raise _NeedsFold  # terms may cancel

    def argument(self, node: s.Expr) -> None:
        """A learnable term's argument: it must mention x (else fold says it is constant)."""
        if not _MENTIONS_X.visit(node) or self.visit(node) > s.MAX_FOLDED_POWER:
            raise _NeedsFold


class _MentionsX(Visitor):
    """Whether the input occurs in a node outside any learnable term."""

    def _visit_Name(self, node: s.Name) -> bool:
        return node.name == s.INPUT_NAME

    def _visit_Number(self, node: s.Number) -> bool:
        return False

    def _visit_Inner(self, node: s.Inner) -> bool:
        return False

    def _visit_Call(self, node: s.Call) -> bool:
        return any(self.visit(a) for a in node.args[:1])

    def _visit_BinOp(self, node: s.BinOp) -> bool:
        return self.visit(node.left) or self.visit(node.right)

    def _visit_Neg(self, node: s.Neg) -> bool:
        return self.visit(node.operand)

    def _visit_Pow(self, node: s.Pow) -> bool:
        return self.visit(node.base)


_DEGREE = _Degree()
_MENTIONS_X = _MentionsX()
