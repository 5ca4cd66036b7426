"""The checker: every rule, its code, its span and its hint."""

from __future__ import annotations

import pytest

from nscompile.errors import SpecError
from nscompile.lang.check import check
from nscompile.lang.check_errors import ERRORS
from nscompile.lang.parser import parse
from nscompile.lang.syntax import Assign, Call, Name, Neuron, Number, Rank, Spec

VALID = [
    "neuron td { rank 8 y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b }",
    "neuron q { y = <wr, x> * <wg, x> + <wb, x**2> + b }",
    "neuron t { y = <w1, x**2> + <w2, x>*<w3, x> + <w4, sin(x)> }",
    "neuron s { y = 0.5 * tanh(<w, 2 * x - x**3>) - -bias + 3 }",
    "neuron c { rank 2 y = cp(sin(x), 1) + cp(x**2, 2) + cp(x, 2) + <w, x>**2 }",
    "neuron l { y = <w, x> }\n"
    "network a { input 3 dense 4 l relu dense 4 tanh dense 2 task classification 2 }\n"
    "network r { input 1 dense 1 l }",
    "network early { input 1 dense 3 later task classification }\nneuron later { y = <w, x> }",
]


@pytest.mark.parametrize("text", VALID)
def test_valid_specs_pass_unchanged(text):
    spec = parse(text)
    assert check(spec) is spec


def error_of(text: str) -> SpecError:
    with pytest.raises(SpecError) as info:
        check(parse(text, "f.ns"), "f.ns")
    return info.value


N = "neuron n {{ {} }}"  # a neuron around a body
Y = "neuron n {{ rank 4 y = {} }}"  # a neuron around an expression (cp allowed)
NET = "neuron td {{ y = <w, x> }}\nnetwork net {{ {} }}"  # a network; its body is on line 2
# A network of images; its body is on line 2.
IMG = "neuron td {{ rank 2 y = <w, x> + cp(x, 2) + b }}\nnetwork net {{ input 1 x 8 x 8 {} }}"

CASES = [
    # code, source, the source text the error span covers, a fragment of message or hint
    ("E101", "neuron a { y = <w, x> }\nnetwork a { input 1 dense 1 }", "a", "line 1"),
    ("E102", "neuron __init__ { y = <w, x> }", "__init__", "reserved"),
    ("E102", "neuron class { y = <w, x> }", "class", "keyword"),
    ("E102", "neuron task { y = <w, x> }", "task", "keyword of the .ns"),
    ("E103", "neuron relu { y = <w, x> }", "relu", "activation"),
    ("E110", N.format("rank 2"), "n", "y = <w, x> + b"),
    ("E111", N.format("y = <w, x> y = b"), "y = b", "comes last"),
    ("E111", N.format("y = <w, x> z = b"), "z = b", "intermediates before it"),
    ("E112", N.format("z = b"), "z", "'z = ...'"),
    ("E116", N.format("scalar a, a y = <w, x> + a"), "a", "a per-unit scalar (line 1)"),
    ("E116", N.format("scalar b y = <w, x>"), "b", "the bias"),
    ("E116", N.format("z = <w, x> z = <v, x> y = z"), "z", "an intermediate"),
    ("E124", N.format("z = <w, x> y = <z, x> + z"), "<z, x>", "an intermediate"),
    ("E116", N.format("sin = <w, x> y = sin"), "sin", "a function"),
    ("E117", N.format("z = <w, x> y = <v, x>"), "z", "an intermediate 'z' is never used"),
    ("E117", N.format("scalar a y = <v, x>"), "a", "a per-unit scalar 'a' is never used"),
    ("E116", N.format("scalar y y = <w, x> + y"), "y", "the neuron's output"),
    ("E134", N.format("scalar a = 1e39 y = <w, x> * a"), "a = 1e39", "float32"),
    ("E113", N.format("rank 2 rank 3 y = b"), "rank 3", "one rank"),
    ("E114", N.format("rank 0 y = b"), "rank 0", "from 1 to 4096, got 0"),
    (
        "E114",
        N.format("rank 99999999999999999999 y = b"),
        "rank 99999999999999999999",
        "20-digit number",
    ),
    ("E115", N.format("y = <w, x> + cp(x, 2)"), "cp(x, 2)", "add 'rank 8'"),
    ("E120", Y.format("<w, x> + bb"), "bb", "did you mean 'b'?"),
    ("E120", Y.format("<w, x> + sin"), "sin", "sin(x)"),
    ("E120", Y.format("<w, x> + w"), "w", "<w, x>"),
    ("E121", Y.format("b + <w, x> + bias"), "bias", "one bias"),
    ("E122", Y.format("<w, sin(<v, x>)>"), "sin(<v, x>)", "<w1, x> * <w2, x>"),
    ("E123", Y.format("<w, 2>"), "2", "2 * <w, x>"),
    ("E124", Y.format("<x, x>"), "<x, x>", "e.g. <w1, x>"),
    ("E124", Y.format("<__import__, x>"), "<__import__, x>", "reserved"),
    ("E124", Y.format("<self, x>"), "<self, x>", "generated module"),
    ("E125", Y.format("<w, x> + <w, x**2>"), "<w, x**2>", "line 1"),
    ("E126", Y.format("cp(x)"), "cp(x)", "cp(x, k)"),
    ("E135", Y.format("cp(<w, x>, 2)"), "<w, x>", "cp(x**2, 2)"),
    ("E118", Y.format("quad(x)"), "quad(x)", "quad(x, W)"),
    ("E118", Y.format("sqdist(x, 2 * c)"), "sqdist(x, 2 * c)", "new weight"),
    ("E127", Y.format("cp(x, 0)"), "0", "got 0"),
    ("E127", Y.format("cp(x, 99)"), "99", "got 99"),
    ("E127", Y.format("cp(x, 2.5)"), "2.5", "got 2.5"),
    ("E127", Y.format("cp(x, b)"), "b", "got b"),
    ("E128", Y.format("cp(x, 2) + cp((x), 2)"), "cp((x), 2)", "raise the rank"),
    ("E129", Y.format("<w, sinn(x)>"), "sinn", "did you mean 'sin'?"),
    ("E129", Y.format("<w, foo(x)>"), "foo", "functions are abs"),
    ("E130", Y.format("<w, sin(x, x)>"), "sin(x, x)", "write sin(x)"),
    ("E131", Y.format("<w, x> + x**2"), "x**2", "<w, x**2>"),
    ("E131", Y.format("x * <w, x>"), "x", "inside an inner product"),
    ("E132", Y.format("<w, x**2.5>"), "x**2.5", "got 2.5"),
    ("E132", Y.format("<w, x**0>"), "x**0", "got 0"),
    ("E132", Y.format("<w, x**-1>"), "x**-1", "got -1"),
    ("E133", Y.format("x**2"), "x**2", "<w, x>"),
    ("E133", Y.format("3"), "3", "learnable"),
    ("E134", Y.format("<w, x> * 1e999"), "1e999", "float32"),
    ("E134", Y.format("<w, x> * -1e39"), "1e39", "3.403e+38"),
    ("E138", Y.format("b"), "b", "<w, x>"),
    ("E138", Y.format("2 * bias + 1"), "2 * bias + 1", "the bias alone"),
    ("E140", NET.format("dense 2"), "dense 2", "input D"),
    ("E140", "network net { }", "net", "input D"),
    ("E141", NET.format("input 1 input 2 dense 1"), "input 2", "one 'input'"),
    ("E142", NET.format("input 0 dense 1"), "input 0", "got 0"),
    ("E142", NET.format("input 1 dense 1000000000000"), "dense 1000000000000", "got 1000000000000"),
    ("E143", NET.format("input 1"), "net", "dense 1"),
    ("E144", NET.format("input 1 dense 2 tdd"), "dense 2 tdd", "did you mean 'td'?"),
    ("E144", NET.format("input 1 dense 2 nope relu"), "dense 2 nope relu", "declared neurons: td"),
    ("E144", "network net { input 1 dense 2 net }", "dense 2 net", "is a network"),
    ("E145", NET.format("input 1 dense 2 td rleu"), "dense 2 td rleu", "did you mean 'relu'?"),
    ("E144", NET.format("input 1 dense 2 rleu"), "dense 2 rleu", "did you mean 'relu'?"),
    (
        "E146",
        NET.format("input 1 dense 1 task regression task regression"),
        "task regression",
        "one task",
    ),
    ("E147", NET.format("input 1 dense 2 task regression dense 1"), "dense 1", "last statement"),
    (
        "E148",
        NET.format("input 1 dense 2 task clasification"),
        "task clasification",
        "'classification'",
    ),
    ("E149", NET.format("input 1 dense 1 task classification"), "task classification", "got 1"),
    (
        "E149",
        NET.format("input 1 dense 2 task classification 99999999999"),
        "task classification 99999999999",
        "got 99999",
    ),
    (
        "E150",
        NET.format("input 1 dense 2 task classification 3"),
        "task classification 3",
        "'dense 3'",
    ),
    (
        "E151",
        NET.format("input 1 dense 2 task regression 2"),
        "task regression 2",
        "'task regression'",
    ),
    ("E180", IMG.format("conv 4 kernle=3 flatten dense 1"), "kernle=3", "'kernel'"),
    ("E180", IMG.format("maxpool 2 td flatten dense 1"), "td", "stride, padding"),
    ("E181", IMG.format("conv 4 stride=1 stride=2 flatten dense 1"), "stride=2", "once"),
    ("E181", IMG.format("conv 4 bn bn flatten dense 1"), "bn", "once"),
    ("E182", IMG.format("conv 4 kernel=td flatten dense 1"), "kernel=td", "whole number"),
    ("E183", IMG.format("conv 4 td dense 1"), "dense 1", "flatten' before it (256 features)"),
    ("E184", NET.format("input 3 conv 4 dense 1"), "conv 4", "3 features"),
    ("E185", IMG.format("conv 4 stride=0 flatten dense 1"), "stride=0", "from 1 to 31, got 0"),
    ("E185", IMG.format("maxpool 99 flatten dense 1"), "maxpool 99", "got 99"),
    ("E186", IMG.format("avgpool 2 padding=2 flatten dense 1"), "padding=2", "half the kernel"),
    (
        "E187",
        IMG.format("conv 4 kernel=9 padding=0 flatten dense 1"),
        "conv 4 kernel=9 padding=0",
        "map 1 x 8 x 8 padded by 0 (8 x 8)",
    ),  # fmt: skip
    (
        "E187",
        IMG.format("conv 2 stride=2 maxpool 5 flatten dense 1"),
        "maxpool 5",
        "map 2 x 4 x 4",
    ),  # fmt: skip
    (
        "E187",
        IMG.format("maxpool 4 maxpool 4 maxpool 4 flatten dense 1"),
        "maxpool 4",
        "map 1 x 2 x 2",
    ),  # fmt: skip
    (
        "E188",
        IMG.format("block 4 shortcut=identity flatten dense 1"),
        "block 4 shortcut=identity",
        "input is 1 x 8 x 8, its output 4 x 8 x 8",
    ),  # fmt: skip
    ("E189", IMG.format("block 4 first=3 flatten dense 1"), "first=3", "a neuron or 'plain'"),
    ("E190", IMG.format("conv 4 relu tanh flatten dense 1"), "tanh", "already has 'relu'"),
    ("E191", IMG.format("conv 4 td").replace("\n", " "), "net", "ends with an image of 4 x 8 x 8"),
    ("E192", IMG.format("conv 4 td bn=term flatten dense 1"), "bn=term", "'terms'"),
    ("E193", IMG.format("conv 4 relu bn=terms flatten dense 1"), "bn=terms", "one term"),
    ("E193", IMG.format("block 4 bn=terms flatten dense 1"), "bn=terms", "both convs"),
    ("E181", IMG.format("conv 4 td bn bn=terms flatten dense 1"), "bn=terms", "once"),
    ("E144", IMG.format("conv 4 tdd flatten dense 1"), "tdd", "'td'"),
    ("E144", IMG.format("block 4 second=tdd flatten dense 1"), "second=tdd", "'td'"),
    ("E142", NET.format("input 0 x 8 x 8 flatten dense 1"), "input 0 x 8 x 8", "channels"),
    ("E141", IMG.format("input 1 x 2 x 2 flatten dense 1"), "input 1 x 2 x 2", "one 'input'"),
]


@pytest.mark.parametrize(("code", "text", "covered", "fragment"), CASES)
def test_each_rule(code, text, covered, fragment):
    err = error_of(text)
    span, shown = err.span, err.render(text)
    assert err.code == code, shown
    assert span.line == span.end_line == text.count("\n") + 1, shown  # the last line here
    assert text.splitlines()[-1][span.col - 1 : span.end_col - 1] == covered, shown
    assert fragment in f"{err.message} {err.hint}", shown


def test_every_code_is_tested_and_distinct():
    assert {code for code, *_ in CASES} | {"E100"} == set(ERRORS)


def test_empty_spec():
    err = error_of("# nothing here\n")
    assert (err.code, err.span.file, err.span.line, err.span.col) == ("E100", "f.ns", 1, 1)


def test_first_problem_in_source_order():
    err = error_of("neuron a { y = <w, x> + bb }\nneuron b { rank 0 y = <w, x> }")
    assert (err.code, err.span.line) == ("E120", 1)
    err = error_of("neuron a { rank 0 y = <w, x> + bb }")
    assert err.code == "E114"


def test_hand_built_asts_without_spans():
    x = Name("x")
    assert check(Spec((Neuron("n", (Rank(2), Assign("y", Call("cp", (x, Number(2)))))),)))
    with pytest.raises(SpecError) as info:
        check(Spec((Neuron("n", (Rank(2),)),)))
    assert info.value.code == "E110" and info.value.span is None
    assert info.value.render() == "error[E110]: neuron 'n' has no 'y = ...'\n = help: " + (
        "add its aggregation, e.g. 'y = <w, x> + b'"
    )
