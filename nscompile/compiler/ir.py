"""The IR: SymPy matrix expressions over one input matrix, plus parameters and assignments.

A neuron layer maps `x` (batch x in_features) to (batch x out_features). Projections are matrix
products `x * w.T`, products are `HadamardProduct`, powers `HadamardPower`, elementwise functions
`Apply` (our node: a named elementwise function). Three more node types are our own: `HStack`
and `VStack` (matrices side by side, one above the other) and `ColumnSlice` (a run of columns),
which fusion introduces. Nothing is ever expanded into monomials.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp
from sympy import (
    Basic,
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Transpose,
)
from sympy.core.symbol import Str

from nscompile.errors import InternalError

BATCH = sp.Symbol("batch", integer=True, positive=True)
IN = sp.Symbol("in_features", integer=True, positive=True)
OUT = sp.Symbol("out_features", integer=True, positive=True)
#: A conv layer's kernel side k, and the k * k positions it covers (see `Patches`).
KERNEL = sp.Symbol("kernel_size", integer=True, positive=True)
KERNEL_AREA = KERNEL**2
#: Prefix of compiler temporaries; spec names cannot start with "_" (see naming.py).
TEMP_PREFIX = "_t"


class HStack(MatrixExpr):
    """Matrices with the same row count, side by side (`torch.cat(dim=1)`)."""

    def __new__(cls, *mats: MatrixExpr) -> HStack:
        return Basic.__new__(cls, *mats)

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.args[0].shape[0], sp.Add(*[m.shape[1] for m in self.args]))


class VStack(MatrixExpr):
    """Matrices with the same column count, one above the other (`torch.cat(dim=0)`)."""

    def __new__(cls, *mats: MatrixExpr) -> VStack:
        return Basic.__new__(cls, *mats)

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (sp.Add(*[m.shape[0] for m in self.args]), self.args[0].shape[1])


class ColumnSlice(MatrixExpr):
    """Columns `start:stop` of a matrix."""

    def __new__(cls, mat: MatrixExpr, start: sp.Expr | int, stop: sp.Expr | int) -> ColumnSlice:
        return Basic.__new__(cls, mat, sp.sympify(start), sp.sympify(stop))

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.args[0].shape[0], self.args[2] - self.args[1])


class Patches(MatrixExpr):
    """The k x k patches of a feature map, one row per output position: a conv's im2col.

    Only in a conv layer's IR, where a matrix is a feature map seen as (positions x channels)
    and `Patches(a) * W.T` is the k x k conv of `a` with `W` (out x in x k x k, seen as
    out x in*k*k, channel-major); the layer's kernel, stride and padding apply. A map of `a`
    itself (`a * U.T`) is a 1 x 1 conv. The backends print `Patches` only inside such a
    product (a conv), never on its own; its rows are the output positions, which the IR
    does not tell apart from the input's (every term of a conv neuron is at the output's).
    """

    def __new__(cls, arg: MatrixExpr) -> Patches:
        return Basic.__new__(cls, arg)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.args[0].shape[0], self.args[0].shape[1] * KERNEL_AREA)


class Apply(MatrixExpr):
    """An elementwise function `name` applied to a matrix: `Apply(Str("sin"), x)`.

    Our own node rather than SymPy's `ElementwiseApplyFunction`, whose lambda CSE would look
    inside (and break when rebuilding); here the name is an atom.
    """

    def __new__(cls, name: Str, arg: MatrixExpr) -> Apply:
        return Basic.__new__(cls, name, arg)

    @property
    def name(self) -> str:
        return str(self.args[0])

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.args[1].shape


class BatchNorm(MatrixExpr):
    """A term under its own BatchNorm over its columns (a conv layer's output channels):
    `BatchNorm(Str("bn_w1"), term)`, the `nn.BatchNorm2d` module `bn_w1` of the layer applied
    to `term` (`bn=terms`; `NeuronIR.norms` lists the modules). Batch statistics in training,
    running ones in eval mode, so the backends never sum two such terms inside one conv.
    """

    def __new__(cls, name: Str, arg: MatrixExpr) -> BatchNorm:
        return Basic.__new__(cls, name, arg)

    @property
    def name(self) -> str:
        return str(self.args[0])

    @property
    def arg(self) -> MatrixExpr:
        return self.args[1]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.args[1].shape


class _UnitForm(MatrixExpr):
    """A per-unit form of each row of `arg` with one parameter matrix, one row per unit:
    (rows of arg) x (units)."""

    def __new__(cls, arg: MatrixExpr, param: MatrixSymbol) -> _UnitForm:
        return Basic.__new__(cls, arg, param)

    @property
    def arg(self) -> MatrixExpr:
        return self.args[0]

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return (self.args[0].shape[0], self.args[1].shape[0])


class QuadForm(_UnitForm):
    """Each unit's quadratic form of each row of its argument: `QuadForm(a, W)`[n, o] =
    a[n] W_o a[n]^T, with `W` the parameter out x in x in seen as the matrix out x in*in.

    In a conv layer's IR the argument is `Patches(a)` and `W` is out x (in x k x k) x (in x k x k)
    (a 7-dimensional tensor out x in x k x k x in x k x k): every patch's quadratic form. Not
    a product of matrices, so the fusion passes leave it whole; its cost (in * in per unit and
    row) dwarfs a projection's, so fusing a projection of the same argument into it would not
    pay.
    """

    @property
    def weight(self) -> MatrixSymbol:
        return self.args[1]


class SqDist(_UnitForm):
    """Each unit's squared Euclidean distance from each row of its argument to its centre:
    `SqDist(a, C)`[n, o] = ||a[n] - C[o]||^2, with `C` the parameter out x in.

    In a conv layer's IR the argument is `Patches(a)` and `C` is out x in x k x k (seen as out
    x in*k*k, as a conv weight): every patch's distance to each output channel's centre, the
    zero padding inside the patches, as Kervolution's Gaussian kernel reads it.
    """

    @property
    def centre(self) -> MatrixSymbol:
        return self.args[1]


def elementwise(name: str, arg: MatrixExpr) -> Apply:
    """`name` applied elementwise to `arg`."""
    return Apply(Str(name), arg)


#: Every matrix node type that lowering and the passes produce, SymPy's and ours: what every
#: IR walker (the backends, the evaluator, the FLOP count) handles, and all that `verify` admits.
#: tests/test_visitors.py checks the list against what compiling the examples and fuzzed specs
#: reaches, and each walker against the list.
NODE_TYPES: tuple[type[MatrixExpr], ...] = (
    MatrixSymbol,
    Transpose,
    MatMul,
    MatAdd,
    HadamardProduct,
    HadamardPower,
    OneMatrix,
    Apply,
    HStack,
    VStack,
    ColumnSlice,
    Patches,
    BatchNorm,
    QuadForm,
    SqDist,
)


@dataclass(frozen=True)
class Init:
    """Normal init, std = scale / sqrt(second_moment * fan_in); zeros when scale is 0.

    `uniform`: U(-bound, bound) with bound = scale / sqrt(second_moment * fan_in) instead, as
    `nn.Linear` initialises its weight and bias (bound 1 / sqrt(fan_in)). `constant`: that
    value everywhere instead.
    """

    fan_in: sp.Expr
    second_moment: float = 1.0
    scale: float = 1.0
    uniform: bool = False
    constant: float | None = None  # every value `constant` (a `scalar a = 1` of the spec)


@dataclass(frozen=True)
class Param:
    """A learnable tensor; `shape` is the tensor's shape, `symbol` its matrix in the IR."""

    name: str
    shape: tuple[sp.Expr, ...]
    init: Init
    # "weight" (out x in, used transposed), "factor", "output", "bias", "quadratic" (a
    # `QuadForm`'s out x in x in) or "centre" (a `SqDist`'s out x in)
    role: str

    @property
    def symbol(self) -> MatrixSymbol:
        if len(self.shape) == 1:
            return MatrixSymbol(self.name, 1, self.shape[0])
        # A conv weight (out x in x k x k) is the matrix out x in*k*k.
        return MatrixSymbol(self.name, self.shape[0], sp.Mul(*self.shape[1:]))


@dataclass(frozen=True)
class NeuronIR:
    """One neuron layer: parameters, assignments in order, and the output expression."""

    name: str
    formula: str
    rank: int | None
    params: tuple[Param, ...]
    assignments: tuple[tuple[MatrixSymbol, MatrixExpr], ...]
    output: MatrixExpr
    input: MatrixSymbol = field(default_factory=lambda: MatrixSymbol("x", BATCH, IN))
    #: The per-term BatchNorm modules (`bn=terms`, see `BatchNorm`), in the order of the terms.
    norms: tuple[str, ...] = ()

    def verify(self) -> None:
        """Check shapes, definitions before use and names; raise InternalError if broken."""
        known = {self.input} | {p.symbol for p in self.params}
        names = [p.name for p in self.params] + list(self.norms)
        if len(set(names)) != len(names):
            raise InternalError(f"{self.name}: duplicate parameter names {names}")
        exprs = [e for _, e in self.assignments] + [self.output]
        used = [n.name for e in exprs for n in sp.preorder_traversal(e) if isinstance(n, BatchNorm)]
        if sorted(used) != sorted(self.norms):
            raise InternalError(f"{self.name}: BatchNorm nodes {used}, declared {self.norms}")
        for target, expr in self.assignments:
            _verify_expr(self.name, expr, known)
            if target.shape != expr.shape:
                raise InternalError(
                    f"{self.name}: {target} has shape {target.shape}, not {expr.shape}"
                )
            if target in known:
                raise InternalError(f"{self.name}: {target} assigned twice")
            known.add(target)
        _verify_expr(self.name, self.output, known)
        if self.output.shape != (BATCH, OUT):
            raise InternalError(f"{self.name}: output shape {self.output.shape}")

    def dump(self) -> str:
        """A stable text form: parameters, assignments and output, one per line."""
        lines = [f"neuron {self.name}  # {self.formula}"]
        for p in self.params:
            shape = ", ".join(str(s) for s in p.shape)
            init = p.init
            lines.append(
                f"  param {p.name}[{shape}] {p.role} "
                f"init({'uniform, ' if init.uniform else ''}fan_in={init.fan_in}, "
                f"m2={init.second_moment:.6g}, scale={init.scale:.6g}"
                + (f", constant={init.constant:.6g})" if init.constant is not None else ")")
            )
        lines += [f"  batchnorm {name}[{OUT}]" for name in self.norms]
        for target, expr in self.assignments:
            lines.append(f"  {target} = {sp.sstr(expr, order='lex')}")
        lines.append(f"  return {sp.sstr(self.output, order='lex')}")
        return "\n".join(lines)


def _verify_expr(owner: str, expr: MatrixExpr, known: set[MatrixSymbol]) -> None:
    for node in sp.preorder_traversal(expr):
        if isinstance(node, MatrixExpr) and type(node) not in NODE_TYPES:
            raise InternalError(f"{owner}: {type(node).__name__} is no IR node type: {node}")
        if isinstance(node, MatrixSymbol) and node not in known:
            raise InternalError(f"{owner}: {node} used before it is defined")
    _ = expr.shape  # shape errors raise here


@dataclass(frozen=True)
class LayerIR:
    """One dense layer of a network: a neuron layer, or a plain linear map when neuron is None."""

    neuron: str | None
    in_features: int
    out_features: int
    activation: str


@dataclass(frozen=True)
class ConvIR:
    """A conv layer: a conv neuron layer (`ProgramIR.conv_neurons`), or `nn.Conv2d` when
    neuron is None; then BatchNorm if `bn`, then the activation."""

    neuron: str | None
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    activation: str
    bn: bool
    term_bn: bool = False  # a BatchNorm per term instead (`ProgramIR.term_bn_neurons`)


@dataclass(frozen=True)
class PoolIR:
    """Max or average pooling (`kind`), or the global average when `kernel` is 0."""

    kind: str
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class FlattenIR:
    """C x H x W -> C*H*W features, channel-major."""


@dataclass(frozen=True)
class BlockIR:
    """A residual basic block: `act(BN(conv2(act(BN(conv1(h))))) + shortcut(h))`, the 3 x 3
    convs task-driven where `first`/`second` name a neuron (plain and bias-free otherwise),
    the shortcut a 1 x 1 conv and BatchNorm when `projection`, else the identity. With
    `term_bn`, a task-driven conv normalises each of its terms (`ProgramIR.term_bn_neurons`)
    and has no BN after it."""

    in_channels: int
    out_channels: int
    first: str | None
    second: str | None
    stride: int
    activation: str
    projection: bool
    term_bn: bool = False

    def normalised(self, neuron: str | None) -> bool:
        """Whether a BatchNorm follows the block's conv of `neuron` (else its terms have theirs)."""
        return neuron is None or not self.term_bn


StageIR = LayerIR | ConvIR | PoolIR | FlattenIR | BlockIR


@dataclass(frozen=True)
class NetworkIR:
    """A network: its layers in order and its task; `image` is (C, H, W) for one of images
    (then `input_width` is C*H*W)."""

    name: str
    input_width: int
    layers: tuple[StageIR, ...]
    task: str
    classes: int | None
    summary: str
    image: tuple[int, int, int] | None = None

    @property
    def out_features(self) -> int:
        last = self.layers[-1]
        assert isinstance(last, LayerIR)  # the checker makes a dense layer the last
        return last.out_features

    @property
    def widths(self) -> list[int]:
        """The output width of every dense, conv and block stage, in order (the head last)."""
        return [
            layer.out_features if isinstance(layer, LayerIR) else layer.out_channels
            for layer in self.layers
            if isinstance(layer, LayerIR | ConvIR | BlockIR)
        ]


def stage_neurons(layer: StageIR) -> tuple[str, ...]:
    """The neurons a stage uses: a dense or conv layer's own, a block's one or two."""
    if isinstance(layer, BlockIR):
        names: tuple[str | None, ...] = (layer.first, layer.second)
    elif isinstance(layer, LayerIR | ConvIR):
        names = (layer.neuron,)
    else:
        names = ()
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass(frozen=True)
class ProgramIR:
    """Everything compiled from one spec file."""

    source_name: str
    source_sha256: str
    neurons: tuple[NeuronIR, ...]
    networks: tuple[NetworkIR, ...]
    #: The neurons some conv layer or block uses, lowered as conv layers (see `Patches`).
    conv_neurons: tuple[NeuronIR, ...] = ()
    #: The neurons a `bn=terms` conv layer or block uses: conv layers, a `BatchNorm` per term.
    term_bn_neurons: tuple[NeuronIR, ...] = ()

    def verify(self) -> None:
        for neuron in self.neurons + self.conv_neurons + self.term_bn_neurons:
            neuron.verify()

    def conv_neuron(self, name: str, term_bn: bool = False) -> NeuronIR:
        """The conv-mode IR of neuron `name`, the one with a BatchNorm per term if `term_bn`."""
        for neuron in self.term_bn_neurons if term_bn else self.conv_neurons:
            if neuron.name == name:
                return neuron
        raise InternalError(f"no conv-mode IR for neuron '{name}' (term_bn={term_bn})")

    def parameter_count(self, network: NetworkIR) -> int:
        """The number of learnable scalars in `network`, from the shapes: nothing is allocated."""
        neurons = {n.name: n for n in self.neurons}

        def conv(
            neuron: str | None, cin: int, cout: int, k: int, bias: bool, term_bn: bool = False
        ) -> int:
            if neuron is None:  # nn.Conv2d
                return (cin * k * k + bias) * cout
            sizes = {IN: cin, OUT: cout, KERNEL: k}
            ir = self.conv_neuron(neuron, term_bn)
            norms = 2 * cout * len(ir.norms)  # each BatchNorm's weight and bias
            return sum(int(sp.Mul(*p.shape).subs(sizes)) for p in ir.params) + norms

        total = 0
        for layer in network.layers:
            if isinstance(layer, ConvIR):
                total += conv(layer.neuron, layer.in_channels, layer.out_channels, layer.kernel,
                              True, layer.term_bn) + 2 * layer.out_channels * layer.bn  # fmt: skip
            elif isinstance(layer, BlockIR):
                cin, cout, tb = layer.in_channels, layer.out_channels, layer.term_bn
                total += conv(layer.first, cin, cout, 3, False, tb)
                total += conv(layer.second, cout, cout, 3, False, tb)
                total += 2 * cout * (layer.normalised(layer.first) + layer.normalised(layer.second))
                total += (cin * cout + 2 * cout) * layer.projection
            elif not isinstance(layer, LayerIR):
                continue  # pooling and flatten: no parameters
            elif layer.neuron is None:  # nn.Linear: weight and bias
                total += (layer.in_features + 1) * layer.out_features
            else:
                sizes = {IN: layer.in_features, OUT: layer.out_features}
                for param in neurons[layer.neuron].params:
                    total += int(sp.Mul(*param.shape).subs(sizes))
        return total

    def dump(self) -> str:
        parts = [n.dump() for n in self.neurons]
        parts += [n.dump().replace("neuron ", "conv neuron ", 1) for n in self.conv_neurons]
        parts += [
            n.dump().replace("neuron ", "conv neuron (bn=terms) ", 1) for n in self.term_bn_neurons
        ]
        for net in self.networks:
            parts.append(f"network {net.name}  # {net.summary}")
        return "\n\n".join(parts) + "\n"


def column_partitions(neuron: NeuronIR) -> dict[MatrixSymbol, list[tuple[sp.Expr, sp.Expr]]]:
    """Temporaries whose column slices cover all their columns exactly, with the slices in order.

    A backend can compute such a temporary's pieces with one split instead of one slice each.
    """
    slices: dict[MatrixSymbol, set[tuple[sp.Expr, sp.Expr]]] = {}
    for expr in [e for _, e in neuron.assignments] + [neuron.output]:
        for node in sp.preorder_traversal(expr):
            if isinstance(node, ColumnSlice) and isinstance(node.args[0], MatrixSymbol):
                slices.setdefault(node.args[0], set()).add((node.args[1], node.args[2]))
    partitions = {}
    for symbol, pieces in slices.items():
        ordered = sorted(pieces, key=lambda p: sp.default_sort_key(p[0]))
        ordered = _chain(ordered, symbol.shape[1])
        if ordered is not None:
            partitions[symbol] = ordered
    return partitions


def _chain(
    pieces: list[tuple[sp.Expr, sp.Expr]], width: sp.Expr
) -> list[tuple[sp.Expr, sp.Expr]] | None:
    """The pieces in column order if they tile [0, width) exactly, else None."""
    by_start = {start: (start, stop) for start, stop in pieces}
    if len(by_start) != len(pieces):
        return None
    ordered, position = [], sp.Integer(0)
    while position in by_start:
        ordered.append(by_start[position])
        position = by_start[position][1]
    if len(ordered) != len(pieces) or sp.simplify(position - width) != 0:
        return None
    return ordered


def product_factors(node: sp.Basic) -> tuple[sp.Expr, list[MatrixExpr]]:
    """A `MatMul` as (scalar coefficient, matrix factors), for the backends.

    A leading `OneMatrix(batch, 1)` only broadcasts a bias row over the batch, which both
    backends do implicitly, so it is dropped here.
    """
    scalar = sp.Mul(*[a for a in node.args if not isinstance(a, MatrixExpr)])
    matrices = [a for a in node.args if isinstance(a, MatrixExpr)]
    while len(matrices) > 1 and isinstance(matrices[0], sp.OneMatrix) and matrices[0].shape[1] == 1:
        matrices = matrices[1:]
    return scalar, matrices


def is_gemm(term: sp.Basic) -> bool:
    """A product of exactly two matrices (no broadcast ones) with a numeric coefficient."""
    if not isinstance(term, MatMul):
        return False
    scalar, matrices = product_factors(term)
    ones = any(isinstance(m, sp.OneMatrix) for m in matrices)
    return bool(scalar.is_number) and len(matrices) == 2 and not ones
