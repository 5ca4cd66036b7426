"""The AST of the .ns language: frozen dataclasses, one per construct.

Spans and comments never take part in equality of expressions; comments do take part in
equality of statements and declarations, so that `parse(unparse(ast)) == ast` covers them.
The language's fixed vocabularies and bounds live here too, as facts of the language.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from nscompile.errors import Span
from nscompile.visitor import Visitor

# --- vocabularies and bounds -------------------------------------------------------------

#: The input symbol of every neuron.
INPUT_NAME = "x"
#: Names that denote the learnable per-unit bias.
BIAS_NAMES = ("b", "bias")
#: Elementwise functions of one argument (see `ops.py` for their meaning).
ELEMENTWISE = (
    "abs", "cos", "exp", "log", "relu", "sigmoid", "sin", "softplus", "sqrt", "tan", "tanh",
)  # fmt: skip
#: The CP interaction term `cp(x, k)`.
CP_NAME = "cp"
#: Learnable per-unit forms of an input-wide expression besides `<w, e>` (`Inner.form`):
#: `quad(e, W)` = e^T W_o e (a quadratic form, W out x in x in) and `sqdist(e, c)` =
#: ||e - c_o||^2 (the squared distance to a learnable centre, c out x in).
INNER = "inner"
QUAD_NAME = "quad"
SQDIST_NAME = "sqdist"
FORMS = (QUAD_NAME, SQDIST_NAME)
#: Activations a dense layer may apply after its aggregation.
ACTIVATIONS = ("gelu", "identity", "relu", "sigmoid", "silu", "tanh")
#: Pooling kinds: `maxpool K`, `avgpool K`.
POOLS = ("avg", "max")
#: A layer's bare word that asks for BatchNorm.
BN_WORD = "bn"
#: `bn=MODE`: one BatchNorm after the neuron's sum (what `bn` alone says), or one per term.
BN_SUM = "sum"
BN_TERMS = "terms"
BN_MODES = (BN_SUM, BN_TERMS)
#: A residual block's word for an ordinary (not task-driven) conv: `first=plain`.
PLAIN_WORD = "plain"
#: Largest conv kernel, stride and padding; largest image side.
MAX_KERNEL = 31
MAX_SIDE = 65_536
#: Task kinds of a network.
TASKS = ("classification", "regression")
# What a data command or estimator accepts: a spec's task, or `auto` (decided from the target).
TASK_CHOICES = ("auto", *TASKS)

#: Largest power `x**k` and largest CP order `cp(x, k)`.
MAX_ORDER = 9
#: Largest power of one base once folding has multiplied them (`(x**9)**9`, `x**2 * x**9`).
MAX_FOLDED_POWER = MAX_ORDER**2
#: Largest CP rank.
MAX_RANK = 4096
#: Largest layer width (input or dense).
MAX_WIDTH = 1_000_000
#: Largest number of classes of a classification head.
MAX_CLASSES = 1_000_000
#: Largest magnitude of a constant, written or folded: float32's, since the model runs in float32.
MAX_NUMBER = 3.4028234663852886e38


def _span() -> Span | None:
    return field(default=None, compare=False, repr=False)  # type: ignore[return-value]


# --- expressions -------------------------------------------------------------------------


@dataclass(frozen=True)
class Number:
    """A numeric constant, e.g. `0.5`."""

    value: float
    span: Span | None = _span()


@dataclass(frozen=True)
class Name:
    """A bare name: the input `x`, the bias `b`/`bias`, or an error."""

    name: str
    span: Span | None = _span()


@dataclass(frozen=True)
class Inner:
    """An inner product `<weight, arg>`: `arg` applied elementwise, then a learnable linear map.

    `form` names another learnable per-unit form of `arg` with the same kind and checks:
    `quad(arg, weight)`, the quadratic form, or `sqdist(arg, weight)`, the squared distance
    to a centre (see `FORMS`); `INNER` is the inner product.
    """

    weight: str
    arg: Expr
    span: Span | None = _span()
    form: str = INNER


@dataclass(frozen=True)
class Call:
    """A function call: an elementwise function `sin(e)` or the CP term `cp(x, k)`."""

    func: str
    args: tuple[Expr, ...]
    span: Span | None = _span()


@dataclass(frozen=True)
class BinOp:
    """`left op right` with op one of `+`, `-`, `*` (`*` is elementwise)."""

    op: str
    left: Expr
    right: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Neg:
    """Unary minus."""

    operand: Expr
    span: Span | None = _span()


@dataclass(frozen=True)
class Pow:
    """`base ** exponent`; the checker requires a positive integer exponent."""

    base: Expr
    exponent: float
    span: Span | None = _span()


Expr = Number | Name | Inner | Call | BinOp | Neg | Pow


class _Children(Visitor):
    """An expression -> its sub-expressions, left to right."""

    def _visit_Number(self, node: Number) -> tuple[Expr, ...]:
        return ()

    def _visit_Name(self, node: Name) -> tuple[Expr, ...]:
        return ()

    def _visit_Inner(self, node: Inner) -> tuple[Expr, ...]:
        return (node.arg,)

    def _visit_Call(self, node: Call) -> tuple[Expr, ...]:
        return node.args

    def _visit_BinOp(self, node: BinOp) -> tuple[Expr, ...]:
        return (node.left, node.right)

    def _visit_Neg(self, node: Neg) -> tuple[Expr, ...]:
        return (node.operand,)

    def _visit_Pow(self, node: Pow) -> tuple[Expr, ...]:
        return (node.base,)


_CHILDREN = _Children()


def children(expr: Expr) -> tuple[Expr, ...]:
    """An expression -> its sub-expressions, left to right (none for a number or a name)."""
    return _CHILDREN.visit(expr)


def substitute(expr: Expr, names: dict[str, Expr]) -> Expr:
    """`expr` with every Name in `names` replaced by its expression (a neuron's intermediates
    inlined: `Neuron.output`)."""
    if isinstance(expr, Name):
        return names.get(expr.name, expr)
    if isinstance(expr, Inner):
        return replace(expr, arg=substitute(expr.arg, names))
    if isinstance(expr, Call):
        return replace(expr, args=tuple(substitute(a, names) for a in expr.args))
    if isinstance(expr, BinOp):
        return replace(expr, left=substitute(expr.left, names), right=substitute(expr.right, names))
    if isinstance(expr, Neg):
        return replace(expr, operand=substitute(expr.operand, names))
    if isinstance(expr, Pow):
        return replace(expr, base=substitute(expr.base, names))
    return expr


# --- statements and declarations ---------------------------------------------------------


@dataclass(frozen=True)
class Comments:
    """Comments attached to a line: whole-line comments above it and one at its end."""

    leading: tuple[str, ...] = ()
    trailing: str | None = None


NO_COMMENTS = Comments()


@dataclass(frozen=True)
class Rank:
    """`rank R`: the CP rank of the neuron's `cp` terms."""

    rank: int
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class ScalarItem:
    """One learnable per-unit scalar of a `scalar` statement, with its initial value or None."""

    name: str
    init: float | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Scalars:
    """`scalar a1 = 1, br, bg`: learnable per-unit scalars (one value per unit or channel)."""

    items: tuple[ScalarItem, ...]
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Assign:
    """`y = expr`: the aggregation function; `z = expr` before it: a named intermediate."""

    target: str
    expr: Expr
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Input:
    """`input D`: the network's input width."""

    width: int
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Dense:
    """`dense O [neuron] [activation]`: a layer of O units; no neuron means a plain linear map."""

    width: int
    neuron: str | None = None
    activation: str | None = None
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Task:
    """`task regression` or `task classification [C]`."""

    kind: str
    classes: int | None = None
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class ImageInput:
    """`input C x H x W`: the network takes images of C channels, H rows and W columns."""

    channels: int
    height: int
    width: int
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Option:
    """One option of a layer: a bare word (`td`, `relu`, `bn`; value None) or `key=value`."""

    key: str
    value: int | str | None = None
    span: Span | None = _span()


@dataclass(frozen=True)
class Conv:
    """`conv O [options]`: a conv layer of O output channels (see `lang.layers`)."""

    width: int
    options: tuple[Option, ...] = ()
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Pool:
    """`maxpool K [options]` or `avgpool K [options]`."""

    kind: str
    kernel: int
    options: tuple[Option, ...] = ()
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class GlobalPool:
    """`globalpool`: the average over every position, C x H x W -> C."""

    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Flatten:
    """`flatten`: C x H x W -> C * H * W features."""

    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


@dataclass(frozen=True)
class Block:
    """`block O [options]`: a residual basic block of O output channels."""

    width: int
    options: tuple[Option, ...] = ()
    comments: Comments = NO_COMMENTS
    span: Span | None = _span()


NeuronStmt = Rank | Scalars | Assign
ImageStmt = Conv | Pool | GlobalPool | Flatten | Block
NetworkStmt = Input | ImageInput | Dense | ImageStmt | Task


@dataclass(frozen=True)
class Neuron:
    """`neuron NAME { rank R  y = expr }`."""

    name: str
    body: tuple[NeuronStmt, ...]
    comments: Comments = NO_COMMENTS
    closing: tuple[str, ...] = ()
    span: Span | None = _span()
    name_span: Span | None = _span()

    @property
    def rank(self) -> int | None:
        ranks = [s.rank for s in self.body if isinstance(s, Rank)]
        return ranks[0] if ranks else None

    @property
    def assign(self) -> Assign | None:
        """The output's assignment (`y = ...`, the last one)."""
        assigns = [s for s in self.body if isinstance(s, Assign)]
        return assigns[-1] if assigns else None

    @property
    def intermediates(self) -> tuple[Assign, ...]:
        """The named intermediates (`z = ...`), the assignments before the output's."""
        assigns = [s for s in self.body if isinstance(s, Assign)]
        return tuple(assigns[:-1])

    @property
    def scalars(self) -> dict[str, float | None]:
        """The learnable per-unit scalars, in order, with their initial values (None: as a
        bias)."""
        return {i.name: i.init for s in self.body if isinstance(s, Scalars) for i in s.items}

    def output(self) -> Expr | None:
        """The output's expression with every intermediate inlined (what the neuron computes;
        shared intermediates share their weights)."""
        names: dict[str, Expr] = {}
        for stmt in self.intermediates:
            names[stmt.target] = substitute(stmt.expr, names)
        assign = self.assign
        return substitute(assign.expr, names) if assign is not None else None


@dataclass(frozen=True)
class Network:
    """`network NAME { input D  dense ...  task ... }`."""

    name: str
    body: tuple[NetworkStmt, ...]
    comments: Comments = NO_COMMENTS
    closing: tuple[str, ...] = ()
    span: Span | None = _span()
    name_span: Span | None = _span()

    @property
    def input_width(self) -> int | None:
        """The input width of a network of features; None for one of images."""
        inputs = [s.width for s in self.body if isinstance(s, Input)]
        return inputs[0] if inputs else None

    @property
    def image_input(self) -> ImageInput | None:
        """`input C x H x W`, or None for a network of features."""
        inputs = [s for s in self.body if isinstance(s, ImageInput)]
        return inputs[0] if inputs else None

    @property
    def stages(self) -> tuple[Dense | ImageStmt, ...]:
        """Every layer statement in order: dense layers and the image ones."""
        kinds = (Dense, Conv, Pool, GlobalPool, Flatten, Block)
        return tuple(s for s in self.body if isinstance(s, kinds))

    @property
    def layers(self) -> tuple[Dense, ...]:
        return tuple(s for s in self.body if isinstance(s, Dense))

    @property
    def task(self) -> Task | None:
        tasks = [s for s in self.body if isinstance(s, Task)]
        return tasks[0] if tasks else None


Decl = Neuron | Network


@dataclass(frozen=True)
class Spec:
    """A whole .ns file: declarations in order, and the comments after the last one."""

    decls: tuple[Decl, ...]
    trailing: tuple[str, ...] = ()

    @property
    def neurons(self) -> dict[str, Neuron]:
        return {d.name: d for d in self.decls if isinstance(d, Neuron)}

    @property
    def networks(self) -> dict[str, Network]:
        return {d.name: d for d in self.decls if isinstance(d, Network)}
