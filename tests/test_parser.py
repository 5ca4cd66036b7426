"""The parser: AST shapes, precedence, spans, comment placement, syntax errors, reading files."""

from __future__ import annotations

import pytest

from nscompile.errors import Span, SpecError
from nscompile.lang.parser import parse
from nscompile.lang.source import read_source
from nscompile.lang.syntax import (
    Assign,
    BinOp,
    Call,
    Comments,
    Dense,
    Inner,
    Input,
    Name,
    Neg,
    Number,
    Pow,
    Rank,
    Task,
)

X = Name("x")

EXAMPLE = """\
# Found by search (comment)
neuron td {
    rank 8
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
neuron quadratic {                      # Fan et al.'s quadratic neuron
    y = <wr, x> * <wg, x> + <wb, x**2> + b
}
network phoneme_net {
    input 5
    dense 64 td relu
    dense 32 td relu
    dense 2                             # plain linear head
    task classification                 # optional class count: task classification 2
}
"""


def y_of(expr_text: str):
    """The parsed right-hand side of `y = expr_text`."""
    return parse(f"neuron n {{ y = {expr_text} }}").decls[0].body[0].expr


def add(a, b):
    return BinOp("+", a, b)


def test_example_spec():
    spec = parse(EXAMPLE)
    td, quadratic, net = spec.decls
    assert td.name == "td" and td.rank == 8
    assert td.assign.expr == add(
        add(
            add(add(Inner("w1", X), Inner("w2", Pow(X, 2))), Call("cp", (X, Number(2)))),
            Call("cp", (X, Number(3))),
        ),
        Name("b"),
    )
    assert quadratic.comments.trailing == "# Fan et al.'s quadratic neuron"
    assert net.body == (
        Input(5),
        Dense(64, "td", "relu"),
        Dense(32, "td", "relu"),
        Dense(2, comments=Comments(trailing="# plain linear head")),
        Task("classification", comments=Comments(trailing=net.body[4].comments.trailing)),
    )
    assert td.comments.leading == ("# Found by search (comment)",)


def test_tnlearn_notation_parses_verbatim():
    expr = y_of("<w1, x**2> + <w2, x>*<w3, x> + <w4, sin(x)>")
    product = BinOp("*", Inner("w2", X), Inner("w3", X))
    assert expr == add(add(Inner("w1", Pow(X, 2)), product), Inner("w4", Call("sin", (X,))))


@pytest.mark.parametrize(
    ("text", "tree"),
    [
        ("-x**2", Neg(Pow(X, 2))),
        ("x**-1", Pow(X, -1)),
        ("(-x)**2", Pow(Neg(X), 2)),
        ("(x**2)**3", Pow(Pow(X, 2), 3)),
        ("b - b - b", BinOp("-", BinOp("-", Name("b"), Name("b")), Name("b"))),
        ("b - (b - b)", BinOp("-", Name("b"), BinOp("-", Name("b"), Name("b")))),
        ("b + x * b", add(Name("b"), BinOp("*", X, Name("b")))),
        ("-b * x", BinOp("*", Neg(Name("b")), X)),
        ("--b", Neg(Neg(Name("b")))),
        ("2 * -x", BinOp("*", Number(2), Neg(X))),
        (
            "1e-3 + .5 + 2. + 1E+2",
            add(add(add(Number(0.001), Number(0.5)), Number(2)), Number(100)),
        ),
        ("f()", Call("f", ())),
        ("cp(x, 2, 3)", Call("cp", (X, Number(2), Number(3)))),
        ("<w, <v, x>>", Inner("w", Inner("v", X))),
    ],
)
def test_precedence_and_shapes(text, tree):
    assert y_of(text) == tree


def test_newlines_are_insignificant():
    spec = parse("neuron n {\n  rank\n 4 y\n =\n <w, x>\n + cp(x,\n 2)\n}")
    assert spec.decls[0].body == (
        Rank(4),
        Assign("y", add(Inner("w", X), Call("cp", (X, Number(2))))),
    )


def test_dense_with_one_name_is_activation_or_neuron():
    net = parse("network n { input 2 dense 3 relu dense 3 td dense 2 td tanh task regression }")
    assert net.decls[0].body[1:4] == (
        Dense(3, None, "relu"),
        Dense(3, "td"),
        Dense(2, "td", "tanh"),
    )
    assert parse("network n { input 1 dense 2 task classification 2 }").decls[0].task == Task(
        "classification", 2
    )


def test_keywords_are_names_where_a_name_is_expected():
    spec = parse("neuron rank { rank 2 y = <dense, x> }")
    assert spec.decls[0].name == "rank"
    assert spec.decls[0].assign.expr == Inner("dense", X)


def test_spans_are_one_based_and_end_exclusive():
    spec = parse("neuron n {\n    y = <w1, x**2> + sin(b)\n}\n", "f.ns")
    neuron = spec.decls[0]
    assert neuron.name_span == Span("f.ns", 1, 8, 1, 9)
    assert neuron.span == Span("f.ns", 1, 1, 3, 2)
    assign = neuron.body[0]
    assert assign.span == Span("f.ns", 2, 5, 2, 28)
    inner, call = assign.expr.left, assign.expr.right
    assert inner.span == Span("f.ns", 2, 9, 2, 19)
    assert inner.arg.span == Span("f.ns", 2, 14, 2, 18)
    assert inner.arg.base.span == Span("f.ns", 2, 14, 2, 15)
    assert call.span == Span("f.ns", 2, 22, 2, 28)
    assert call.args[0].span == Span("f.ns", 2, 26, 2, 27)


COMMENTED = """\
# top
neuron n {  # header
    rank 2  # after rank
    # before y
    y = <w, x>  # inside y
        + b   #  after y  \t
    # closing
}  # after brace
# before net

network net {
    input 1
    dense 1
}
# end 1
# end 2
"""


def test_comments_are_attached_to_their_nodes():
    spec = parse(COMMENTED)
    neuron, net = spec.decls
    assert neuron.comments == Comments(("# top",), "# header")
    assert neuron.body[0].comments == Comments((), "# after rank")
    # The comment inside the multi-line statement moves above it.
    assert neuron.body[1].comments == Comments(("# before y", "# inside y"), "#  after y")
    assert neuron.closing == ("# closing", "# after brace")
    assert net.comments == Comments(("# before net",))
    assert spec.trailing == ("# end 1", "# end 2")


def test_comment_only_and_empty_files_have_no_declarations():
    assert parse("").decls == ()
    assert parse("\n\n").decls == ()
    only = parse("# one\n\n  # two\n")
    assert only.decls == () and only.trailing == ("# one", "# two")


def test_one_line_declaration_keeps_its_comment():
    spec = parse("neuron n { y = <w, x> }  # c")
    assert spec.decls[0].closing == ("# c",)


def test_crlf_line_endings():
    spec = parse("neuron n {\r\n  y = <w, x>  # c\r\n}\r\n", "f.ns")
    assert spec.decls[0].body[0].comments.trailing == "# c"
    assert spec.decls[0].body[0].span.line == 2


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        parse(text, "f.ns")
    return info.value


def test_unexpected_token_is_readable():
    err = error_of("neuron n {\n    y = <w, x> + }\n")
    assert (err.code, err.message) == ("E001", "unexpected '}'")
    assert err.span == Span("f.ns", 2, 18, 2, 19)
    assert err.hint == "expected one of: '(', '-', '<', a name, a number"


def test_unexpected_character():
    err = error_of("neuron n { y = <w, x> $ }")
    assert (err.code, err.message, err.span.col) == ("E001", "unexpected character '$'", 23)
    assert err.hint == "'$' is not part of the .ns language"
    assert error_of('neuron n { y = "b" }').hint == "the .ns language has no strings"


def test_unexpected_end_of_file_points_after_the_last_token():
    err = error_of("neuron n {\n    y = <w, x>\n")
    assert err.code == "E002"
    assert (err.span.line, err.span.col) == (2, 15)
    assert "'}'" in err.hint


@pytest.mark.parametrize("count", ["8.5", "1e3", "0.0"])
def test_counts_are_whole_numbers(count):
    err = error_of(f"neuron n {{ rank {count} }}")
    assert err.code == "E004" and err.span.col == 17


def test_a_very_long_count_is_an_error_not_a_crash():
    assert error_of("network n { input " + "9" * 5000 + " }").code == "E004"
    assert parse("network n { input " + "9" * 3000 + " }").decls[0].input_width > 10**2999


def test_read_source(tmp_path):
    good = tmp_path / "good.ns"
    good.write_bytes("\ufeff# caf\u00e9\n".encode())
    assert read_source(str(good)) == "# caf\u00e9\n"


@pytest.mark.parametrize(
    ("content", "message", "where"),
    [
        (None, "no such file", None),
        ("dir", "is a directory", None),
        (b"neuron n {\n  \x00\x01\x02", "this is a binary file", (2, 3)),
        (b"# ok\n# caf\xe9\n", "the file is not valid UTF-8", (2, 6)),
    ],
)
def test_read_source_errors(tmp_path, content, message, where):
    path = tmp_path / "spec.ns"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        read_source(str(path))
    err = info.value
    assert err.code == "E003" and message in err.message and err.hint
    assert (err.span.line, err.span.col) == where if where else err.span is None


@pytest.mark.parametrize(
    "expr",
    ["(" * 3000 + "x" + ")" * 3000, "-" * 3000 + "b", "<w, x>" + " + b" * 3000, "sin(" * 500 + "x"
     + ")" * 500],
)  # fmt: skip
def test_deep_nesting_is_an_error_not_a_recursion_error(expr):
    err = error_of(f"neuron n {{ y = {expr} }}")
    assert err.code == "E005" and err.span.line == 1


def test_moderate_nesting_parses():
    spec = parse("neuron n { y = " + "(" * 45 + "<w, x>" + ")" * 45 + " + b" * 45 + " }")
    assert spec.decls[0].assign is not None
