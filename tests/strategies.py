"""Hypothesis strategies for valid .ns ASTs: `exprs()`, `neurons()`, `specs()`.

Everything drawn passes `check`, and stays small enough to compile and run quickly: at most
about six terms, powers and cp orders up to 4, ranks up to 6, widths up to 8. Spans are None
(equality ignores them); comments are drawn too, so round trips cover them.

    from strategies import specs

    @given(specs())
    def test_something(spec): ...
"""

from __future__ import annotations

import dataclasses
import functools
import string

from hypothesis import strategies as st

from nscompile.lang import syntax as s

MAX_ORDER = 4
MAX_RANK = 6
MAX_WIDTH = 8
#: Functions safe to apply to anything drawn here (`exp` only ever sees x itself: no overflow).
BOUNDED = ("abs", "cos", "relu", "sigmoid", "sin", "tanh")
X = s.Name(s.INPUT_NAME)
PLACEHOLDER = "?"  # weight name before `_name_weights` numbers them

numbers = st.one_of(
    st.sampled_from([0.5, 2.0, 3.0, 0.25, 1.5, 1e-05, 10.0]),
    st.integers(1, 999).map(lambda n: n / 100),
)
orders = st.integers(1, MAX_ORDER).map(float)
comment_texts = st.text(string.ascii_letters + string.digits + " .,:;()'-_#=<>*+", max_size=24)
comments_ = st.builds(lambda t: ("#" + t).rstrip(), comment_texts)


@functools.cache  # build each strategy once: Hypothesis validates new ones
def comments() -> st.SearchStrategy[s.Comments]:
    """Usually none; otherwise up to two whole-line comments and maybe a trailing one."""
    some = st.builds(s.Comments, st.lists(comments_, max_size=2).map(tuple), st.none() | comments_)
    return st.one_of(st.just(s.NO_COMMENTS), st.just(s.NO_COMMENTS), some)


# --- expressions ---------------------------------------------------------------------------


@functools.cache
def input_exprs() -> st.SearchStrategy[s.Expr]:
    """Input-wide expressions: x, x**k, f(x), and one level of combinations of those."""
    base = st.one_of(
        st.just(X),
        st.builds(s.Pow, st.just(X), st.integers(2, MAX_ORDER).map(float)),
        st.builds(lambda f: s.Call(f, (X,)), st.sampled_from(s.ELEMENTWISE)),
    )
    return st.one_of(
        base,
        st.builds(lambda f, e: s.Call(f, (e,)), st.sampled_from(BOUNDED), base),
        st.builds(lambda c, e: s.BinOp("*", s.Number(c), e), numbers, base),
        st.builds(s.BinOp, st.sampled_from("+-*"), base, base),
        st.builds(s.Pow, st.sampled_from([s.Call("sin", (X,)), X]), orders),
        st.builds(s.Neg, base),
    )


@functools.cache
def unit_terms(with_cp: bool) -> st.SearchStrategy[s.Expr]:
    """One unit-wide term; weights are placeholders, named later by `_name_weights`."""
    inner = st.builds(lambda e: s.Inner(PLACEHOLDER, e), input_exprs())
    cp = st.builds(lambda e, k: s.Call(s.CP_NAME, (e, s.Number(k))), input_exprs(), orders)
    form = st.builds(
        lambda e, f: s.Inner(PLACEHOLDER, e, form=f), input_exprs(), st.sampled_from(s.FORMS)
    )
    terms = [
        inner,
        inner,
        form,
        st.builds(lambda a, b: s.BinOp("*", a, b), inner, inner),
        st.builds(lambda c, e: s.BinOp("*", s.Number(c), e), numbers, inner),
        st.builds(s.Neg, inner),
        st.builds(lambda f, e: s.Call(f, (e,)), st.sampled_from(BOUNDED), inner),
        st.builds(s.Pow, inner, orders),
    ]
    return st.one_of(*terms, *([cp, cp] if with_cp else []))


@st.composite
def exprs(draw, with_cp: bool = True) -> s.Expr:
    """A valid `y` expression: 1-4 terms, maybe a bias and a constant, in any tree shape."""
    terms: list[s.Expr] = []
    for term in draw(st.lists(unit_terms(with_cp), min_size=1, max_size=4)):
        if not (_is_cp(term) and term in terms):  # the same cp term twice is an error
            terms.append(term)
    if draw(st.booleans()):
        terms.insert(draw(st.integers(0, len(terms))), s.Name(draw(st.sampled_from(s.BIAS_NAMES))))
    if draw(st.integers(0, 3)) == 0:
        terms.append(s.Number(draw(numbers)))
    while len(terms) > 1:  # join neighbours at random: left- and right-nested sums alike
        i = draw(st.integers(0, len(terms) - 2))
        terms[i : i + 2] = [s.BinOp(draw(st.sampled_from("+-")), terms[i], terms[i + 1])]
    return _name_weights(terms[0], iter(range(1, 100)))


def _is_cp(expr: s.Expr) -> bool:
    return isinstance(expr, s.Call) and expr.func == s.CP_NAME


def _name_weights(expr: s.Expr, counter) -> s.Expr:
    """Give each placeholder weight a fresh name w1, w2, ... in source order."""
    changes: dict[str, object] = {}
    for f in dataclasses.fields(expr):
        value = getattr(expr, f.name)
        if isinstance(value, s.Expr):
            changes[f.name] = _name_weights(value, counter)
        elif isinstance(value, tuple):
            changes[f.name] = tuple(_name_weights(v, counter) for v in value)
    if isinstance(expr, s.Inner):
        changes["weight"] = f"w{next(counter)}"
    return dataclasses.replace(expr, **changes)  # type: ignore[arg-type]


# --- declarations --------------------------------------------------------------------------


@st.composite
def neurons(draw, name: str = "td") -> s.Neuron:
    """A valid neuron `name`, with a rank (and so maybe cp terms) half of the time."""
    rank = draw(st.none() | st.integers(1, MAX_RANK))
    assign = s.Assign("y", draw(exprs(with_cp=rank is not None)), draw(comments()))
    body: tuple[s.NeuronStmt, ...] = (assign,)
    if rank is not None:
        rank_stmt = s.Rank(rank, draw(comments()))
        body = (rank_stmt, assign) if draw(st.booleans()) else (assign, rank_stmt)
    closing = tuple(draw(st.lists(comments_, max_size=1)))
    return s.Neuron(name, body, draw(comments()), closing)


@st.composite
def networks(draw, neuron_names: list[str], name: str = "net") -> s.Network:
    """A valid network over `neuron_names` (plain linear layers when the list is empty)."""
    layers = []
    for _ in range(draw(st.integers(1, 3))):
        neuron = draw(st.none() | st.sampled_from(neuron_names)) if neuron_names else None
        activation = draw(st.none() | st.sampled_from(s.ACTIVATIONS))
        width = draw(st.integers(1, MAX_WIDTH))
        layers.append(s.Dense(width, neuron, activation, draw(comments())))
    body: list[s.NetworkStmt] = [s.Input(draw(st.integers(1, MAX_WIDTH)), draw(comments()))]
    body += layers
    kind = draw(st.sampled_from([None, "regression", "classification"]))
    if kind == "classification":
        last = layers[-1]
        if last.width < 2:
            body[-1] = last = dataclasses.replace(last, width=draw(st.integers(2, MAX_WIDTH)))
        classes = draw(st.sampled_from([None, last.width]))
        body.append(s.Task(kind, classes, draw(comments())))
    elif kind == "regression":
        body.append(s.Task(kind, None, draw(comments())))
    return s.Network(name, tuple(body), draw(comments()))


@st.composite
def specs(draw, min_networks: int = 0, max_networks: int = 2, max_neurons: int = 3) -> s.Spec:
    """A valid spec: 1..max_neurons neurons and some networks over them, in any order."""
    prefixes = st.sampled_from(["td", "quad", "poly", "neuron"])
    count = draw(st.integers(1, max_neurons))
    names = [f"{draw(prefixes)}{i}" for i in range(1, count + 1)]
    decls: list[s.Decl] = [draw(neurons(name)) for name in names]
    for i in range(draw(st.integers(min_networks, max_networks))):
        decls.append(draw(networks(names, f"net{i + 1}")))
    decls = draw(st.permutations(decls))
    trailing = tuple(draw(st.lists(comments_, max_size=2)))
    return s.Spec(tuple(decls), trailing)
