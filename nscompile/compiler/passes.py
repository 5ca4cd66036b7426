"""Optimisation passes over the IR: `PASSES`, the one list of `(name, function)` pairs, in order.

Each pass is a pure `NeuronIR -> NeuronIR` function whose docstring shows the IR before and after.
The list starts by inlining every assignment, so running it on its own output gives the same
result (a test checks `optimize(optimize(ir)) == optimize(ir)`). With `verify=True`, `optimize`
checks the IR after every pass and names the pass that broke it; each pass has a before/after
case in `tests/passes/NAME.txt`, and `nscompile ir SPEC --after NAME` prints its output.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable

import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Transpose,
)
from sympy.simplify.cse_main import tree_cse

from nscompile.compiler.ir import (
    TEMP_PREFIX,
    BatchNorm,
    ColumnSlice,
    HStack,
    NeuronIR,
    ProgramIR,
    VStack,
)
from nscompile.errors import InternalError

Pass = Callable[[NeuronIR], NeuronIR]
NamedPass = tuple[str, Pass]


def _with_output(ir: NeuronIR, output: MatrixExpr) -> NeuronIR:
    return dataclasses.replace(ir, output=output)


def _bottom_up(expr: sp.Basic, rule: Callable[[sp.Basic], sp.Basic]) -> sp.Basic:
    """Rebuild `expr` from its leaves, applying `rule` to every rebuilt node."""
    if not expr.args or isinstance(expr, MatrixSymbol):
        return rule(expr)
    args = tuple(_bottom_up(a, rule) for a in expr.args)
    node = expr.func(*args) if args != expr.args else expr
    return rule(node)


def inline(ir: NeuronIR) -> NeuronIR:
    """Assignments `t = e; ... t ...` -> one output expression `... e ...`."""
    output = ir.output
    for target, expr in reversed(ir.assignments):
        output = output.xreplace({target: expr})
    return dataclasses.replace(ir, assignments=(), output=output)


def canonicalise(ir: NeuronIR) -> NeuronIR:
    """`a ⊙ a` -> `a**2`, `(a**j)**k` -> `a**(j*k)`, `a**1` -> `a`; flat sums/products."""

    def rule(node: sp.Basic) -> sp.Basic:
        if isinstance(node, (MatMul, MatAdd, HadamardProduct)):
            args = [a for a in node.args if not (isinstance(node, MatMul) and a == 1)]
            if len(args) == 1 and isinstance(args[0], MatrixExpr):
                return rule(args[0])  # `1 * a`, a sum or product of one term: just `a`
        if isinstance(node, HadamardProduct):
            factors = _flatten(node, HadamardProduct)
            exponents: dict[sp.Basic, int] = {}
            for factor in factors:
                base, k = (factor.base, int(factor.exp)) if _is_power(factor) else (factor, 1)
                exponents[base] = exponents.get(base, 0) + k
            if len(exponents) == len(factors) == len(node.args):
                return node
            parts = [
                base if k == 1 else rule(HadamardPower(base, k)) for base, k in exponents.items()
            ]
            return parts[0] if len(parts) == 1 else HadamardProduct(*parts)
        if isinstance(node, HadamardPower):
            base, k = node.base, int(node.exp)
            if isinstance(base, HadamardPower):
                return rule(HadamardPower(base.base, int(base.exp) * k))
            return base if k == 1 else node
        if isinstance(node, MatAdd):
            terms = _flatten(node, MatAdd)
            return MatAdd(*terms) if len(terms) != len(node.args) else node
        return node

    return _with_output(ir, _bottom_up(ir.output, rule))


def power_chains(ir: NeuronIR) -> NeuronIR:
    """`x**2 ... x**3` -> `x**2 ... x**2 ⊙ x`: each power reuses the next lower one present."""
    powers: dict[sp.Basic, set[int]] = {}
    for node in sp.preorder_traversal(ir.output):
        if isinstance(node, HadamardPower):
            powers.setdefault(node.base, set()).add(int(node.exp))

    def chain(base: sp.Basic, k: int) -> sp.Basic:
        lower = [j for j in powers.get(base, ()) if j < k]
        if k == 1:
            return base
        if not lower:
            return HadamardPower(base, k)
        j = max(lower)
        if k - j == j:
            return HadamardPower(chain(base, j), 2)
        return HadamardProduct(chain(base, j), chain(base, k - j))

    def rule(node: sp.Basic) -> sp.Basic:
        return chain(node.base, int(node.exp)) if isinstance(node, HadamardPower) else node

    return _with_output(ir, _bottom_up(ir.output, rule))


def fuse_projections(ir: NeuronIR) -> NeuronIR:
    """`a W1, a W2, ...` (same argument a) -> one `a [W1 | W2 | ...]` and a column slice each.

    One GEMM instead of one per weight: the CP factors `a U_m` and the maps inside products or
    functions (`<w2, x>*<w3, x>`, `sin(<w, x>)`) of the same argument `a` share it. A map that is
    only ever a term of a sum (`<w1, x>` in `<w1, x> + cp(x, 2)`) stays its own product: the
    backends accumulate it into the sum (`torch.addmm`), which costs nothing extra, while fused
    it would need the split, whose backward copies its whole batch x out gradient. Measured with
    `examples/bench_codegen.py`: about 10% faster per training step on the TD layer.
    """
    params = {p.symbol for p in ir.params}
    groups: dict[sp.Basic, list[sp.Basic]] = {}
    for node in _non_summands(ir.output):
        split = _projection(node, params)
        if split is not None and node not in groups.setdefault(split[0], []):
            groups[split[0]].append(node)
    mapping: dict[sp.Basic, sp.Basic] = {}
    for arg, nodes in groups.items():
        if len(nodes) < 2:
            continue
        weights = [_projection(n, params)[1] for n in nodes]  # type: ignore[index]
        fused = MatMul(arg, HStack(*weights))
        start: sp.Expr = sp.Integer(0)
        for node, weight in zip(nodes, weights, strict=True):
            stop = start + weight.shape[1]
            scalars = [a for a in node.args if not isinstance(a, MatrixExpr)]
            piece = ColumnSlice(fused, start, stop)
            mapping[node] = MatMul(*scalars, piece) if scalars else piece
            start = stop
    return _with_output(ir, ir.output.xreplace(mapping)) if mapping else ir


def _non_summands(expr: sp.Basic) -> list[sp.Basic]:
    """Every node of `expr` in preorder that appears at least once outside a sum's terms."""
    seen: dict[sp.Basic, None] = {}
    stack: list[tuple[sp.Basic, bool]] = [(expr, True)]  # the output: a sum of one term
    while stack:
        node, summand = stack.pop()
        if not summand:
            seen.setdefault(node, None)
        if not isinstance(node, MatrixSymbol):
            in_sum = isinstance(node, MatAdd | BatchNorm)
            stack.extend((a, in_sum) for a in reversed(node.args))
    return list(seen)


def fuse_sums(ir: NeuronIR) -> NeuronIR:
    """`a1 A1 + a2 A2 + ...` -> `[a1 | a2 | ...] [A1; A2; ...]`: one GEMM for a sum of maps.

    This is how the output maps of several CP terms share one product. Only maps whose left
    side holds parameters are fused here: maps of the input alone (`x W1`, `x**2 W2`) already
    have a full inner dimension, and whether concatenating `x | x**2` pays depends on the batch
    size, which the IR does not know. The PyTorch backend decides it per call (one GEMM over
    all the sum's maps up to 512 rows, `compiler/storage.py`); ONNX accumulates them.
    """
    params = {p.symbol for p in ir.params}

    def rule(node: sp.Basic) -> sp.Basic:
        if not isinstance(node, MatAdd):
            return node
        maps = [t for t in node.args if _projection(t, params) and not _scalars(t)]
        learned = [t for t in maps if _projection(t, params)[0].atoms(MatrixSymbol) & params]  # type: ignore[index]
        if len(learned) < 2:
            return node
        parts = [_projection(t, params) for t in learned]
        fused = MatMul(HStack(*[p[0] for p in parts]), VStack(*[p[1] for p in parts]))  # type: ignore[index]
        return MatAdd(fused, *[t for t in node.args if t not in learned])

    return _with_output(ir, _bottom_up(ir.output, rule))


def eliminate_common(ir: NeuronIR) -> NeuronIR:
    """Shared subexpressions -> assignments to temporaries `_t0, _t1, ...`.

    This is SymPy's tree CSE (`sympy.cse` without its `opt_cse` rewrites, which turn matrix
    products into scalar `Mul`s).
    """
    taken = {str(t) for t, _ in ir.assignments}
    names = (f"{TEMP_PREFIX}{i}" for i in itertools.count() if f"{TEMP_PREFIX}{i}" not in taken)
    replacements, (output,) = tree_cse(
        [ir.output], (sp.Symbol(n) for n in names), opt_subs={}, order="canonical"
    )
    # Sizes such as `2*out_features` inside column slices are not matrices: put them back.
    sizes: dict[sp.Basic, sp.Basic] = {}
    kept = []
    for target, expr in replacements:
        expr = expr.xreplace(sizes)
        if isinstance(expr, MatrixExpr):
            kept.append((target, expr))
        else:
            sizes[target] = expr
    output = output.xreplace(sizes)
    assignments = ir.assignments + tuple(kept)
    return dataclasses.replace(ir, assignments=assignments, output=output)


def remove_dead(ir: NeuronIR) -> NeuronIR:
    """`_t0 = w.T; _t1 = e; return x*_t0` (`_t1` unused) -> `return x*w.T`.

    Drops assignments nothing uses and inlines those that only rename or transpose a symbol.
    """
    trivial = {t: e for t, e in ir.assignments if _is_trivial(e)}
    assignments = [(t, e.xreplace(trivial)) for t, e in ir.assignments if t not in trivial]
    output = ir.output.xreplace(trivial)
    live = set(output.free_symbols) | set(output.atoms(MatrixSymbol))
    kept = []
    for target, expr in reversed(assignments):
        if target in live:
            kept.append((target, expr))
            live |= expr.atoms(MatrixSymbol)
    return dataclasses.replace(ir, assignments=tuple(reversed(kept)), output=output)


PASSES: tuple[NamedPass, ...] = (
    ("inline", inline),
    ("canonicalise", canonicalise),
    ("power_chains", power_chains),
    ("fuse_projections", fuse_projections),
    ("fuse_sums", fuse_sums),
    ("eliminate_common", eliminate_common),
    ("remove_dead", remove_dead),
)
PASS_NAMES = tuple(name for name, _ in PASSES)


def passes_through(name: str) -> tuple[NamedPass, ...]:
    """The pass list up to and including the pass called `name`; KeyError for an unknown name."""
    if name not in PASS_NAMES:
        raise KeyError(name)
    return PASSES[: PASS_NAMES.index(name) + 1]


def verify_after(stage: str, ir: NeuronIR | ProgramIR) -> None:
    """Run `ir.verify()`; a broken IR is reported with the stage that produced it."""
    try:
        ir.verify()
    except InternalError as error:
        raise InternalError(f"{stage} broke the IR: {error}") from error


def optimize_neuron(
    ir: NeuronIR, passes: tuple[NamedPass, ...] | None = None, verify: bool = False
) -> NeuronIR:
    """Run `passes` (default `PASSES`) in order; with `verify`, check the IR after each one."""
    for name, run in PASSES if passes is None else passes:
        ir = run(ir)
        if verify:
            verify_after(f"pass '{name}'", ir)
    return ir


def optimize(
    program: ProgramIR, passes: tuple[NamedPass, ...] | None = None, verify: bool = False
) -> ProgramIR:
    """Run every pass (default `PASSES`), in order, on every neuron; see `optimize_neuron`."""
    neurons = tuple(optimize_neuron(n, passes, verify) for n in program.neurons)
    conv = tuple(optimize_neuron(n, passes, verify) for n in program.conv_neurons)
    normed = tuple(optimize_neuron(n, passes, verify) for n in program.term_bn_neurons)
    return dataclasses.replace(program, neurons=neurons, conv_neurons=conv, term_bn_neurons=normed)


def _flatten(node: sp.Basic, kind: type) -> list[sp.Basic]:
    out: list[sp.Basic] = []
    for arg in node.args:
        out.extend(_flatten(arg, kind) if isinstance(arg, kind) else [arg])
    return out


def _is_power(node: sp.Basic) -> bool:
    return isinstance(node, HadamardPower)


def _scalars(node: sp.Basic) -> list[sp.Basic]:
    return [a for a in node.args if not isinstance(a, MatrixExpr)]


def _projection(node: sp.Basic, params: set[MatrixSymbol]) -> tuple[sp.Basic, sp.Basic] | None:
    """`[c *] a * W` with W a parameter or its transpose -> (a, W); None for anything else."""
    if not isinstance(node, MatMul):
        return None
    matrices = [a for a in node.args if isinstance(a, MatrixExpr)]
    if len(matrices) < 2:
        return None
    weight = matrices[-1]
    base = weight.arg if isinstance(weight, Transpose) else weight
    if base not in params:
        return None
    if isinstance(matrices[0], OneMatrix):
        return None  # a broadcast bias, not a projection
    arg = matrices[0] if len(matrices) == 2 else MatMul(*matrices[:-1])
    return arg, weight


def _is_trivial(expr: sp.Basic) -> bool:
    """A symbol, its transpose, or a matrix of ones (the broadcast of per-unit vectors: with
    several of them, `ones * b1` and `ones * b2`, CSE would name the ones)."""
    return isinstance(expr, MatrixSymbol | OneMatrix) or (
        isinstance(expr, Transpose) and isinstance(expr.arg, MatrixSymbol)
    )
