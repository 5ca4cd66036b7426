"""Where a `bn=terms` layer's BatchNorms go in an inference graph: optimised IR -> a `FoldPlan`.

In eval mode the BatchNorm of term t is a per-channel affine `s_t * term + c_t` (`s_t = weight
/ sqrt(running_var + eps)`, `c_t = bias - running_mean * s_t`). The ONNX export
(`emit_onnx_conv`) scales a weight by `s_t` where that is exact and adds every `c_t` to the
layer's bias; this module decides where, from the IR alone (the same for every layer of the
neuron, whatever its weights):

- a term that is one map `[c *] a * W.T` (a k x k conv `<w, e(x)>`, the output conv of a cp
  term, `0.5 * <w, x>`): `s_t` (times `c`) scales W's output channels;
- a product (`<w1, x> * <w2, x>`): `s_t` goes into its first factor that is a map, whether that
  map is its own product or its columns of a fused one (`ColumnSlice(t, i, j)` of
  `t = a * [W1 | W2].T`, what `fuse_projections` makes); a constant times a term, into the term;
- anything else (a power of a map, a function of one, a sum inside a term): nowhere; the export
  multiplies the term by `s_t`, one `Mul` with a (1, C, 1, 1) constant.

A map takes a scale only when nothing else reads the same values: the term, the slice and the
fused map must each occur once (a power chain `m**2 * m` reads `m` twice, and scaling `m` would
scale both). The shifts go into the bias when the bias is a summand of the output (`c * bias`:
the bias becomes `bias + sum_t c_t / c`), else into one `Add` after the sum.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import sympy as sp
from sympy import HadamardProduct, MatAdd, MatMul, MatrixSymbol, OneMatrix

from nscompile.compiler.ir import OUT, BatchNorm, ColumnSlice, NeuronIR, product_factors


@dataclass(frozen=True)
class Fold:
    """Where one BatchNorm's scale goes: output columns `start:stop` of map `target` (a
    `MatMul` of the IR), its own constant folded in too when `with_coefficient`; `target`
    None: an explicit multiplication of the term."""

    target: MatMul | None = None
    start: sp.Expr = sp.Integer(0)
    stop: sp.Expr = OUT
    with_coefficient: bool = False


@dataclass(frozen=True)
class FoldPlan:
    """Every BatchNorm's `Fold`, and the output's bias summand that takes the shifts (or None)."""

    folds: dict[str, Fold]
    bias: MatMul | None


def fold_plan(neuron: NeuronIR) -> FoldPlan:
    """The optimised conv-mode IR of a `bn=terms` neuron -> where its BatchNorms fold."""
    finder = _Finder(neuron)
    folds = {}
    for expr in finder.exprs:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, BatchNorm):
                folds[node.name] = finder.fold(node.arg) if finder.once(node.arg) else Fold()
    return FoldPlan(folds, finder.bias_summand())


class _Finder:
    """The IR's definitions and how often each node occurs, for `fold_plan`."""

    def __init__(self, neuron: NeuronIR) -> None:
        self.neuron = neuron
        self.exprs = [e for _, e in neuron.assignments] + [neuron.output]
        self.defs = dict(neuron.assignments)
        self.params = {p.symbol for p in neuron.params}
        self.uses = Counter(n for e in self.exprs for n in sp.preorder_traversal(e))

    def once(self, node: sp.Basic) -> bool:
        return self.uses[node] == 1

    def fold(self, term: sp.Basic) -> Fold:
        """Where a scale of `term`'s value can go (`Fold()`: nowhere)."""
        if isinstance(term, MatrixSymbol) and term in self.defs and self.once(term):
            return self.fold(self.defs[term])
        if self.is_map(term):
            return Fold(term, with_coefficient=True)
        if isinstance(term, MatMul):  # a constant times a term: the term takes the scale
            coefficient, matrices = product_factors(term)
            if len(matrices) == 1 and coefficient.is_number:
                return self.fold(matrices[0]) if self.once(matrices[0]) else Fold()
        if isinstance(term, HadamardProduct):
            for factor in term.args:
                found = self.fold(factor) if self.once(factor) else Fold()
                if found.target is not None:
                    return found
        if isinstance(term, ColumnSlice):
            return self.fold_slice(term)
        return Fold()

    def fold_slice(self, piece: ColumnSlice) -> Fold:
        """Columns of a fused map: the map itself, read only through disjoint slices."""
        fused, start, stop = piece.args
        source = self.defs.get(fused, fused)
        if not self.is_map(source) or product_factors(source)[0] != 1:
            return Fold()
        slices = [n for n in self.uses if isinstance(n, ColumnSlice) and n.args[0] == fused]
        if self.uses[fused] != sum(self.uses[s] for s in slices):
            return Fold()  # something reads the whole map
        if not self.once(piece) or (fused in self.defs and not self.once(source)):
            return Fold()
        return Fold(source, start, stop)

    def is_map(self, node: sp.Basic) -> bool:
        """`[c *] a * W` with `a` a feature map and `W` a weight (parameters alone)."""
        if not isinstance(node, MatMul):
            return False
        coefficient, matrices = product_factors(node)
        if len(matrices) != 2 or not coefficient.is_number or coefficient == 0:
            return False
        left, weight = matrices
        symbols = weight.atoms(MatrixSymbol)
        return not isinstance(left, OneMatrix) and bool(symbols) and symbols <= self.params

    def bias_summand(self) -> MatMul | None:
        """The output's `c * bias` summand, when the bias occurs there and nowhere else."""
        output = self.neuron.output
        biases = {p.symbol for p in self.neuron.params if p.role == "bias"}
        summands = output.args if isinstance(output, MatAdd) else (output,)
        for node in summands:
            if not isinstance(node, MatMul):
                continue
            coefficient, matrices = product_factors(node)
            found = len(matrices) == 1 and matrices[0] in biases
            if found and coefficient.is_number and coefficient != 0 and self.once(matrices[0]):
                return node
        return None
