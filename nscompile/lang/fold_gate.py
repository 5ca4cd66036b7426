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


def needs_fold(spec: s.Spec) -> bool:
    """True when some aggregation of `spec` could fold to something else."""
    for neuron in spec.neurons.values():
        for stmt in neuron.body:
            if isinstance(stmt, s.Assign) and not _plain(stmt.expr):
                return True
    return False


def _plain(expr: s.Expr) -> bool:
    try:
        return _degree(expr) <= s.MAX_FOLDED_POWER
    except _NeedsFold:
        return False


class _NeedsFold(Exception):
    pass


def _degree(node: s.Expr) -> int:
    """An upper bound of every exponent SymPy could fold into `node`; _NeedsFold otherwise."""
    if isinstance(node, s.Name):
        return 1
    if isinstance(node, s.Inner):
        _argument(node.arg)
        return 1  # a learnable term: its own symbol, never combined with another
    if isinstance(node, s.Call):
        if node.func == s.CP_NAME:
            _argument(node.args[0])
            return 1
        if len(node.args) != 1:
            raise _NeedsFold
        _degree(node.args[0])
        return 1  # a function of x is an opaque base
    if isinstance(node, s.BinOp):
        if node.op == "+":
            return max(_degree(node.left), _degree(node.right))
        if node.op == "*":
            return _degree(node.left) + _degree(node.right)
        raise _NeedsFold  # '-': terms may cancel
    if isinstance(node, s.Pow):
        if node.exponent != int(node.exponent) or node.exponent < 1:
            raise _NeedsFold
        degree = _degree(node.base) * int(node.exponent)
        if degree > s.MAX_FOLDED_POWER:
            raise _NeedsFold
        return degree
    raise _NeedsFold  # a number or a negation


def _argument(node: s.Expr) -> None:
    """A learnable term's argument: it must mention x (else fold says it is constant)."""
    if not _mentions_x(node) or _degree(node) > s.MAX_FOLDED_POWER:
        raise _NeedsFold


def _mentions_x(node: s.Expr) -> bool:
    if isinstance(node, s.Name):
        return node.name == s.INPUT_NAME
    if isinstance(node, s.Inner | s.Number):
        return False
    if isinstance(node, s.Call):
        return any(_mentions_x(a) for a in node.args[:1])
    if isinstance(node, s.BinOp):
        return _mentions_x(node.left) or _mentions_x(node.right)
    if isinstance(node, s.Neg):
        return _mentions_x(node.operand)
    if isinstance(node, s.Pow):
        return _mentions_x(node.base)
    return False
