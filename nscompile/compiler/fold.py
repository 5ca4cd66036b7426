"""Constant folding on a scalar model of each aggregation, and the errors folding reveals.

`check` judges a spec's form; this stage judges its values as lowering will see them once
SymPy has simplified: `<w, (x - x)**2>` projects a constant, `0 * <w, x>` is a term that
vanishes, `exp(710) * <w, x>` holds a constant no float32 model can, `((x**9)**9)**9` a power
no backend should print. Each is a SpecError at the smallest node that shows it, raised for
`nscompile check` and compilation alike (both run `pipeline.front_end`).

The model is scalar: `x` is one real symbol (every function is elementwise, so one feature
stands for all), each learnable term (`<w, e>`, `cp(e, k)`, `b`) its own symbol, an
elementwise function of a non-constant an opaque function and of a constant its value
(`ops.ELEMENTWISE`, as lowering folds it). SymPy simplifies commuting scalars at least as far
as the IR's matrices, so whatever the IR would fold away is caught here first.

`fold(spec) -> spec` returns the spec unchanged; `ERRORS` lists the codes.
"""

from __future__ import annotations

import itertools

import numpy as np
import sympy as sp

from nscompile.compiler import ops
from nscompile.errors import SpecError
from nscompile.lang import syntax as s
from nscompile.lang.check_errors import ERRORS as CHECK_ERRORS
from nscompile.lang.unparse import unparse_expr
from nscompile.visitor import Visitor

#: code -> (message, hint), `str.format` templates like `check.ERRORS`.
ERRORS = {
    "E136": ("'{arg}' does not depend on x: it simplifies to {value}",
             "the argument of <w, ...> or cp(...) must vary with x; "
             "a constant term is the bias b"),
    "E137": ("'{node}' simplifies to zero",
             "'{term}' is multiplied by zero and learns nothing; remove it"),
    "E139": ("'{node}' folds to {value}, beyond float32's range",
             f"the model computes in float32: constants must lie within +-{s.MAX_NUMBER:.4g}"),
    "E170": ("'{node}' folds to a power {value} of '{base}'",
             f"nested and multiplied powers multiply: at most {s.MAX_FOLDED_POWER} in all "
             "(float32 overflows long before)"),
}  # fmt: skip
assert not set(ERRORS) & set(CHECK_ERRORS), "one code, one meaning"

X = sp.Symbol("x", real=True)


def number(value: float) -> sp.Number:
    """A literal as SymPy holds it: exact when whole (so `2**9` stays exact), else a Float."""
    return sp.Integer(int(value)) if float(value).is_integer() else sp.Float(value)


def fold(spec: s.Spec) -> s.Spec:
    """Fold every neuron's aggregation; return `spec` unchanged or raise the first SpecError."""
    for neuron in spec.decls:
        if isinstance(neuron, s.Neuron) and neuron.assign is not None:
            folder = _Folder()
            for stmt in neuron.intermediates:  # folded once: `z - z` is seen to cancel
                folder.names[stmt.target] = folder.fold(stmt.expr)
            folder.fold(neuron.assign.expr)
    return spec


def _error(code: str, span: s.Span | None, **fields: object) -> SpecError:
    message, hint = ERRORS[code]
    return SpecError(code, message.format(**fields), span, hint.format(**fields))


def _shown(value: sp.Expr) -> str:
    """A folded constant for a message: 6 significant digits, however large."""
    if not value.is_finite:
        return _NON_FINITE.get(value, "not a number")
    if abs(value) < 1e300:
        return f"{float(value):.6g}"
    return str(sp.Float(value, 6))  # past float64: SymPy's own digits


_NON_FINITE = {sp.oo: "infinity", -sp.oo: "-infinity"}


class _Folder(Visitor):
    """Folds the expression of one neuron; remembers which symbol stands for which term."""

    def __init__(self) -> None:
        self.terms: dict[sp.Symbol, s.Expr] = {}
        self.ids = itertools.count()
        self.names: dict[str, sp.Expr] = {}  # the neuron's intermediates, folded

    def fold(self, node: s.Expr) -> sp.Expr:
        value = self.visit(node)
        self._check_range(node, value)
        return value

    def _check_range(self, node: s.Expr, value: sp.Expr) -> None:
        """Every constant in the folded value must fit in float32, every power be bounded."""
        for constant in value.atoms(sp.Number):
            if not constant.is_finite or abs(constant) > s.MAX_NUMBER:
                shown = _shown(constant)
                raise _error("E139", node.span, node=unparse_expr(node), value=shown)
        for power in value.atoms(sp.Pow):  # the backends print the folded exponent as it is
            if power.exp.is_number and abs(power.exp) > s.MAX_FOLDED_POWER:
                base = self._shown(power.base)
                raise _error("E170", node.span, node=unparse_expr(node), value=power.exp, base=base)

    def _shown(self, value: sp.Expr) -> str:
        """A folded sub-expression for a message, its terms in the spec's own words."""
        words = {symbol: sp.Symbol(unparse_expr(term)) for symbol, term in self.terms.items()}
        return sp.sstr(value.xreplace(words))

    def _learnable(self, node: s.Expr) -> sp.Symbol:
        symbol = sp.Symbol(f"_term{next(self.ids)}")  # '_' : no spec name can collide
        self.terms[symbol] = node
        return symbol

    def _input_wide(self, node: s.Expr) -> sp.Expr:
        """The argument of a learnable term: it must still vary with x once folded."""
        value = self.fold(node)
        if X not in value.free_symbols:
            raise _error("E136", node.span, arg=unparse_expr(node), value=_shown(value))
        return value

    def _visit_Number(self, node: s.Number) -> sp.Expr:
        return number(node.value)

    def _visit_Name(self, node: s.Name) -> sp.Expr:
        if node.name in self.names:
            return self.names[node.name]
        return X if node.name == s.INPUT_NAME else self._learnable(node)

    def _visit_Inner(self, node: s.Inner) -> sp.Expr:
        self._input_wide(node.arg)
        return self._learnable(node)

    def _visit_Call(self, node: s.Call) -> sp.Expr:
        if node.func == s.CP_NAME:
            self._input_wide(node.args[0])
            return self._learnable(node)
        arg = self.fold(node.args[0])
        if arg.free_symbols:
            return sp.Function(node.func)(arg)
        with np.errstate(all="ignore"):  # an overflow becomes inf, reported by _check_range
            result = float(ops.ELEMENTWISE[node.func].numpy(np.array(float(arg))))
        return sp.Float(result) if np.isfinite(result) else sp.sympify(result)

    def _visit_BinOp(self, node: s.BinOp) -> sp.Expr:
        left, right = self.fold(node.left), self.fold(node.right)
        value = {"+": left + right, "-": left - right, "*": left * right}[node.op]
        # A product can lose a term, and a sum of an intermediate's uses (`z - z`); otherwise
        # each symbol is used once, so no two terms cancel.
        lost = (left.free_symbols | right.free_symbols) - value.free_symbols - {X}
        if lost:
            term = unparse_expr(self.terms[min(lost, key=str)])
            raise _error("E137", node.span, node=unparse_expr(node), term=term)
        return value

    def _visit_Neg(self, node: s.Neg) -> sp.Expr:
        return -self.fold(node.operand)

    def _visit_Pow(self, node: s.Pow) -> sp.Expr:
        return self.fold(node.base) ** int(node.exponent)
