"""Semantic checks: names, arities, orders, ranks, widths, and where `x` may appear.

`check(spec) -> spec` returns the spec unchanged or raises the first problem in source order
as one `SpecError` at the offending node, with a hint. Expressions are checked by *kind*:
scalar (constants only), input-wide (an elementwise function of `x`, one value per input
feature, allowed only inside `<w, ...>` or as the first argument of `cp`) and unit-wide (one
value per output unit: `<w, x>`, `cp(x, k)`, `b`). `y` must be unit-wide.

`ERRORS` lists every code with its message and hint; the errors that need the values of
constants (E136, E137, E139, E170) come from `fold`, the next stage.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from nscompile.errors import Span, did_you_mean
from nscompile.lang import syntax as s
from nscompile.lang.check_errors import ERRORS, FUNCTIONS
from nscompile.lang.check_errors import error as _error
from nscompile.lang.layers import shapes, show
from nscompile.lang.naming import why_not_allowed
from nscompile.lang.unparse import format_number, unparse_expr
from nscompile.visitor import Visitor

#: Words of the .ns language; a declaration so named could not be referred to.
KEYWORDS = (
    "avgpool", "block", "conv", "dense", "flatten", "globalpool", "input", "maxpool", "network",
    "neuron", "rank", "task",
)  # fmt: skip
SCALAR, INPUT, UNIT = "scalar", "input-wide", "unit-wide"


def check(spec: s.Spec, file: str = "<string>") -> s.Spec:
    """Validate a parsed spec.

    Args:
        spec: the parser's output.
        file: the file name for the one error without a node (an empty spec).

    Returns:
        `spec`, unchanged.

    Raises:
        SpecError: the first problem in source order (codes in `ERRORS`).
    """
    if not spec.decls:
        raise _error("E100", Span.point(file, 1, 1))
    first: dict[str, s.Decl] = {}
    for decl in spec.decls:
        _check_decl_name(decl, first)
        first.setdefault(decl.name, decl)
        if isinstance(decl, s.Neuron):
            _check_neuron(decl)
        else:
            _check_network(decl, spec)
    return spec


def _check_decl_name(decl: s.Decl, first: dict[str, s.Decl]) -> None:
    name, span = decl.name, decl.name_span
    if name in first:
        raise _error("E101", span, name=name, line=_line(first[name].name_span))
    keyword = f"'{name}' is a keyword of the .ns language" if name in KEYWORDS else None
    if reason := why_not_allowed(name) or keyword:
        raise _error("E102", span, name=name, reason=reason)
    if isinstance(decl, s.Neuron) and name in s.ACTIVATIONS:
        raise _error("E103", span, name=name)


def _line(span: Span | None) -> int | str:
    return span.line if span else "?"


def _shown(value: int) -> str:
    """A count for a message; 5000-digit numbers are described, not printed."""
    text = str(value)
    return text if len(text) <= 15 else f"a {len(text)}-digit number"


def _in_range(code: str, value: int, high: int, span: Span | None, **fields: object) -> None:
    if not 1 <= value <= high:
        raise _error(code, span, None, value=_shown(value), high=high, **fields)


# --- neurons -------------------------------------------------------------------------------


def _check_neuron(neuron: s.Neuron) -> None:
    scope = _Scope(has_rank=neuron.rank is not None)
    for stmt in neuron.body:
        if isinstance(stmt, s.Scalars):
            for item in stmt.items:
                scope.declare(item.name, item.span, UNIT, "a per-unit scalar")
                if item.init is not None and abs(item.init) > s.MAX_NUMBER:
                    raise _error("E134", item.span)
    seen_rank = seen_assign = False
    assigns = [stmt for stmt in neuron.body if isinstance(stmt, s.Assign)]
    outputs = [i for i, stmt in enumerate(assigns) if stmt.target == "y"]
    if outputs and outputs[0] < len(assigns) - 1:  # something after the output
        raise _error("E111", assigns[outputs[0] + 1].span)
    for stmt in neuron.body:
        if isinstance(stmt, s.Rank):
            if seen_rank:
                raise _error("E113", stmt.span)
            _in_range("E114", stmt.rank, s.MAX_RANK, stmt.span)
            seen_rank = True
            continue
        if not isinstance(stmt, s.Assign):
            continue
        if stmt is not assigns[-1]:
            _check_intermediate(scope, stmt)
            continue
        if stmt.target != "y":
            raise _error("E112", _leading_name_span(stmt.span, stmt.target), name=stmt.target)
        kind = scope.kind(stmt.expr)
        if kind == INPUT:  # a function of x alone: suggest projecting it
            raise _error(
                "E133", stmt.expr.span, ERRORS["E131"][1].format(arg=unparse_expr(stmt.expr))
            )
        if kind == SCALAR:
            raise _error("E133", stmt.expr.span)
        if not scope.weights and not scope.cp_terms:  # unit-wide through the bias alone
            raise _error("E138", stmt.expr.span)
        seen_assign = True
    if not seen_assign:
        raise _error("E110", neuron.name_span, name=neuron.name)
    for name, (_, what, span) in scope.names.items():
        if name not in scope.used:
            raise _error("E117", _leading_name_span(span, name), name=name, what=what)


def _check_intermediate(scope: _Scope, stmt: s.Assign) -> None:
    """`z = expr` before the output: a name for expr, of expr's kind, usable after it."""
    span = _leading_name_span(stmt.span, stmt.target)
    kind = scope.kind(stmt.expr)
    scope.declare(stmt.target, span, kind, "an intermediate")


def _leading_name_span(span: Span | None, name: str) -> Span | None:
    """The span of the name a node starts with (an assignment's target, a call's function)."""
    return span and Span(span.file, span.line, span.col, span.line, span.col + len(name))


def _is_order(value: float) -> bool:
    value = float(value)
    return math.isfinite(value) and value.is_integer() and 1 <= value <= s.MAX_ORDER


@dataclass
class _Scope(Visitor):
    """What one neuron's expression has used so far: its weights, cp terms and the bias."""

    has_rank: bool
    weights: dict[str, Span | None] = field(default_factory=dict)
    cp_terms: set[tuple[s.Expr, float]] = field(default_factory=set)
    bias: bool = False
    #: Per-unit scalars and intermediates: name -> (kind, what it is, where it was declared).
    names: dict[str, tuple[str, str, Span | None]] = field(default_factory=dict)
    used: set[str] = field(default_factory=set)

    def declare(self, name: str, span: Span | None, kind: str, what: str) -> None:
        """A per-unit scalar or an intermediate named `name`; E116 when the name is taken."""
        taken = None
        if name == "y":
            taken = "the neuron's output"
        elif name in (s.INPUT_NAME, *s.BIAS_NAMES):
            taken = "the input" if name == s.INPUT_NAME else "the bias"
        elif name in FUNCTIONS or name == s.CP_NAME:
            taken = "a function"
        elif name in self.names:
            taken = f"{self.names[name][1]} (line {_line(self.names[name][2])})"
        elif name in self.weights:
            taken = f"a weight (line {_line(self.weights[name])})"
        if taken is not None:
            hint = f"give {what} its own name, e.g. '{name}_1'"
            raise _error("E116", span, name=name, what=taken, hint=hint)
        if reason := why_not_allowed(name):
            raise _error("E116", span, name=name, what="taken by the generated code", hint=reason)
        self.names[name] = (kind, what, span)

    def kind(self, expr: s.Expr) -> str:
        """Check `expr` and return its kind: SCALAR, INPUT or UNIT."""
        return self.visit(expr)

    def _visit_Number(self, expr: s.Number) -> str:
        if not math.isfinite(expr.value) or abs(expr.value) > s.MAX_NUMBER:
            raise _error("E134", expr.span)
        return SCALAR

    def _visit_Name(self, expr: s.Name) -> str:
        name = expr.name
        if name == s.INPUT_NAME:
            return INPUT
        if name in s.BIAS_NAMES:
            if self.bias:
                raise _error("E121", expr.span)
            self.bias = True
            return UNIT
        if name in self.names:
            self.used.add(name)
            return self.names[name][0]
        hint = did_you_mean(name, (s.INPUT_NAME, *s.BIAS_NAMES, *self.names))
        if name in FUNCTIONS:
            hint = f"'{name}' is a function: call it, e.g. {name}(x)"
        elif name in self.weights:
            hint = f"'{name}' is a weight; a weight appears once: <{name}, x>, quad(x, {name})"
        raise _error("E120", expr.span, hint, name=name)

    def _visit_Inner(self, expr: s.Inner) -> str:
        weight = expr.weight
        if weight in (s.INPUT_NAME, *s.BIAS_NAMES):
            raise _error("E124", expr.span, name=weight)
        if reason := why_not_allowed(weight):
            raise _error("E124", expr.span, reason, name=weight)
        if weight in self.weights:
            raise _error("E125", expr.span, name=weight, line=_line(self.weights[weight]))
        if weight in self.names:
            kind, what, span = self.names[weight]
            hint = f"'{weight}' is {what} (line {_line(span)}); name the weight otherwise"
            raise _error("E124", expr.span, hint, name=weight)
        self.weights[weight] = expr.span
        arg_kind = self.kind(expr.arg)
        form = None if expr.form == s.INNER else f"the first argument of {expr.form}(e, {weight})"
        if arg_kind == UNIT:
            hint = form and f"{form} is a function of x alone, e.g. {expr.form}(x, {weight})"
            raise _error("E122", expr.arg.span, hint)
        if arg_kind == SCALAR:
            hint = form and f"{form} must contain x, e.g. {expr.form}(x, {weight})"
            raise _error("E123", expr.arg.span, hint, arg=unparse_expr(expr.arg), name=weight)
        return UNIT

    def _visit_Call(self, expr: s.Call) -> str:
        if expr.func == s.CP_NAME:
            return self.cp(expr)
        if expr.func in s.FORMS:  # the parser made `quad(e, W)` with a name second an Inner
            what = "in x in matrix" if expr.func == s.QUAD_NAME else "centre of width in"
            got = ", ".join(unparse_expr(a) for a in expr.args) or "nothing"
            raise _error("E118", expr.span, name=expr.func, got=f"({got})", what=what)
        if expr.func not in s.ELEMENTWISE:
            hint = did_you_mean(expr.func, FUNCTIONS)
            raise _error("E129", _leading_name_span(expr.span, expr.func), hint, name=expr.func)
        if len(expr.args) != 1:
            raise _error("E130", expr.span, name=expr.func, count=len(expr.args))
        return self.kind(expr.args[0])

    def cp(self, expr: s.Call) -> str:
        if len(expr.args) != 2:
            raise _error("E126", expr.span, count=len(expr.args))
        arg, order = expr.args
        if self.kind(arg) != INPUT:
            raise _error("E135", arg.span)
        if not (isinstance(order, s.Number) and _is_order(order.value)):
            raise _error("E127", order.span, value=unparse_expr(order))
        key = (arg, order.value)
        if key in self.cp_terms:
            raise _error("E128", expr.span, arg=unparse_expr(arg), order=int(order.value))
        self.cp_terms.add(key)
        if not self.has_rank:
            raise _error("E115", expr.span)
        return UNIT

    def _visit_BinOp(self, expr: s.BinOp) -> str:
        left, right = self.kind(expr.left), self.kind(expr.right)
        if SCALAR in (left, right) or left == right:
            return right if left == SCALAR else left
        loose = expr.left if left == INPUT else expr.right  # input-wide next to unit-wide
        raise _error("E131", loose.span, arg=unparse_expr(loose))

    def _visit_Neg(self, expr: s.Neg) -> str:
        return self.kind(expr.operand)

    def _visit_Pow(self, expr: s.Pow) -> str:
        kind = self.kind(expr.base)
        if not _is_order(expr.exponent):
            raise _error("E132", expr.span, value=format_number(expr.exponent))
        return kind


# --- networks ------------------------------------------------------------------------------


@dataclass
class _Layers(Visitor):
    """A network's statements seen so far, checked one at a time in source order."""

    network: s.Network
    spec: s.Spec
    last_width: int | None = None
    seen_task: bool = False

    def _visit_Input(self, stmt: s.Input) -> None:
        if stmt is not self.network.body[0]:
            raise _error("E141", stmt.span)
        _in_range("E142", stmt.width, s.MAX_WIDTH, stmt.span, what="input width",
                  why="the input width is the number of input features")  # fmt: skip

    def _visit_ImageInput(self, stmt: s.ImageInput) -> None:
        if stmt is not self.network.body[0]:
            raise _error("E141", stmt.span)
        why = "'input C x H x W' gives the channels, rows and columns of an image"
        sizes = {"image channels": stmt.channels, "image height": stmt.height,
                 "image width": stmt.width}  # fmt: skip
        for what, value in sizes.items():
            _in_range("E142", value, s.MAX_SIDE, stmt.span, what=what, why=why)

    def _image_layer(self, stmt: s.ImageStmt) -> None:
        self.last_width = None  # the shapes are checked once the whole network is seen

    _visit_Conv = _visit_Pool = _visit_GlobalPool = _visit_Flatten = _visit_Block = _image_layer

    def _visit_Dense(self, stmt: s.Dense) -> None:
        _in_range("E142", stmt.width, s.MAX_WIDTH, stmt.span, what="layer width",
                  why="the width is the number of units in the layer")  # fmt: skip
        neurons, name = self.spec.neurons, stmt.neuron
        if name is not None and name not in neurons:
            # With one name, `dense 8 rleu` may be a misspelt activation as well.
            maybe = [*neurons, *([] if stmt.activation else s.ACTIVATIONS)]
            hint = did_you_mean(name, maybe)
            if name in self.spec.networks:
                hint = f"'{name}' is a network; a layer is made of neurons"
            elif not neurons:
                hint = hint or "this spec declares no neuron: 'neuron NAME { y = ... }'"
            what = "neuron" if stmt.activation else "neuron or activation"
            raise _error("E144", stmt.span, hint, what=what, name=name, names=", ".join(neurons))
        if stmt.activation is not None and stmt.activation not in s.ACTIVATIONS:
            hint = did_you_mean(stmt.activation, s.ACTIVATIONS)
            raise _error("E145", stmt.span, hint, name=stmt.activation)
        self.last_width = stmt.width

    def _visit_Task(self, stmt: s.Task) -> None:
        if self.seen_task:
            raise _error("E146", stmt.span)
        self.seen_task = True
        if stmt.kind not in s.TASKS:
            raise _error("E148", stmt.span, did_you_mean(stmt.kind, s.TASKS), name=stmt.kind)
        if stmt.kind == "regression":
            if stmt.classes is not None:
                raise _error("E151", stmt.span)
            return
        width = self.last_width
        if stmt.classes is not None:
            _in_range("E149", stmt.classes, s.MAX_CLASSES, stmt.span)
        if width is not None and width < 2:
            raise _error("E149", stmt.span, high=s.MAX_CLASSES, value=width)
        if width is not None and stmt.classes not in (None, width):
            raise _error("E150", stmt.span, value=stmt.classes, width=width)


def _check_network(network: s.Network, spec: s.Spec) -> None:
    body = network.body
    if not body or not isinstance(body[0], s.Input | s.ImageInput):
        raise _error("E140", body[0].span if body else network.name_span)
    layers = _Layers(network, spec)
    for stmt in body:
        if layers.seen_task and not isinstance(stmt, s.Task):
            raise _error("E147", stmt.span)
        if isinstance(stmt, s.Task):
            _check_shapes(network, spec)
        layers.visit(stmt)
    if not layers.seen_task:
        _check_shapes(network, spec)
    if not any(isinstance(stage, s.Dense) for stage in network.stages):
        raise _error("E143", network.name_span, name=network.name)


def _check_shapes(network: s.Network, spec: s.Spec) -> None:
    """Every layer's shape (lang.layers); the last must be features."""
    found = shapes(network, spec)
    if found and len(found[-1]) == 3:
        raise _error("E191", network.name_span, name=network.name, shape=show(found[-1]))
