"""Canonical text: layout, numbers, minimal parentheses, comments; parse(unparse(x)) == x."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nscompile.lang.parser import parse
from nscompile.lang.syntax import BinOp, Call, Inner, Name, Neg, Number, Pow
from nscompile.lang.unparse import format_number, unparse, unparse_expr

X, B = Name("x"), Name("b")

MESSY = """\
# Found by search (comment)
neuron td { rank 8
    y = <w1,x>+<w2 , x ** 2>+cp( x,2 )
      + cp(x, 3.0) + b }
neuron quadratic {                      # Fan et al.'s quadratic neuron
    y = ((<wr, x>) * <wg, x>) + (<wb, x**2> + b)
}
network phoneme_net { input 5
    dense 64 td relu  dense 32 td relu
    dense 2                             # plain linear head
    task classification 2
    # closing comment
}  # after the brace
# trailing
"""

CANONICAL = """\
# Found by search (comment)
neuron td {
    rank 8
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}

neuron quadratic {  # Fan et al.'s quadratic neuron
    y = <wr, x> * <wg, x> + (<wb, x**2> + b)
}

network phoneme_net {
    input 5
    dense 64 td relu
    dense 32 td relu
    dense 2  # plain linear head
    task classification 2
    # closing comment
    # after the brace
}

# trailing
"""


def test_canonical_layout():
    assert unparse(parse(MESSY)) == CANONICAL
    assert unparse(parse(CANONICAL)) == CANONICAL


def test_empty_spec():
    assert unparse(parse("")) == ""
    assert unparse(parse("# only\n\n")) == "# only\n"


@pytest.mark.parametrize(
    ("value", "text"),
    [(2.0, "2"), (0.5, "0.5"), (1e-05, "1e-05"), (100.0, "100"), (1e20, "1e+20"), (0.1, "0.1")],
)
def test_numbers(value, text):
    assert format_number(value) == text


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        (BinOp("+", BinOp("+", X, B), X), "x + b + x"),
        (BinOp("+", X, BinOp("+", B, X)), "x + (b + x)"),
        (BinOp("-", X, BinOp("-", B, X)), "x - (b - x)"),
        (BinOp("*", BinOp("+", X, B), X), "(x + b) * x"),
        (BinOp("+", BinOp("*", X, B), X), "x * b + x"),
        (BinOp("*", X, BinOp("*", B, X)), "x * (b * x)"),
        (Neg(Pow(X, 2)), "-x**2"),
        (Pow(Neg(X), 2), "(-x)**2"),
        (Pow(Pow(X, 2), 3), "(x**2)**3"),
        (Pow(X, -1), "x**-1"),
        (Pow(X, 2.5), "x**2.5"),
        (Neg(BinOp("*", X, B)), "-(x * b)"),
        (BinOp("*", Neg(X), B), "-x * b"),
        (BinOp("-", X, Neg(B)), "x - -b"),
        (Neg(Neg(X)), "--x"),
        (Inner("w", BinOp("+", X, Pow(X, 2))), "<w, x + x**2>"),
        (Call("cp", (X, Number(2.0))), "cp(x, 2)"),
        (Pow(Call("sin", (X,)), 2), "sin(x)**2"),
        (Pow(Number(2), 3), "2**3"),
    ],
)
def test_minimal_parentheses(expr, text):
    assert unparse_expr(expr) == text
    assert parse(f"neuron n {{ y = {text} }}").decls[0].assign.expr == expr


def test_fmt_never_drops_a_comment():
    source = parse(MESSY)
    text = unparse(source)
    comments = [line[line.index("#") :] for line in MESSY.splitlines() if "#" in line]
    for comment in comments:
        assert comment.rstrip() in text


# Any expression tree the parser can make (valid or not): parenthesisation must keep it.
leaves = st.one_of(
    st.sampled_from([X, B, Name("w")]),
    st.floats(0, 1e30, allow_nan=False).map(Number),
)


def _trees(children):
    return st.one_of(
        st.builds(BinOp, st.sampled_from("+-*"), children, children),
        st.builds(Neg, children),
        st.builds(Pow, children, st.floats(-20, 20, allow_nan=False)),
        st.builds(Inner, st.just("w"), children),
        st.builds(lambda f, args: Call(f, tuple(args)), st.sampled_from(["sin", "cp"]),
                  st.lists(children, max_size=3)),
    )  # fmt: skip


any_exprs = st.recursive(leaves, _trees, max_leaves=8)


@settings(max_examples=150, deadline=None)
@given(any_exprs)
def test_unparse_expr_round_trips_any_tree(expr):
    text = unparse_expr(expr)
    assert parse(f"neuron n {{ y = {text} }}").decls[0].assign.expr == expr
