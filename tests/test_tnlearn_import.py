"""tnlearn's legacy formula strings (`0.5@x**2 + 1.2@sin(x) + x`) imported as neurons.

tnlearn's own layers (`CustomNeuronLayer`, `TNLinear`) keep the basis function after each `@`,
drop the coefficient, the sign and constant terms, give each basis function its own learnable
weight matrix and add one bias (nscompile/lang/tnlearn_formula.py cites the source). The
meaning test below writes that layer once more in NumPy, from that rule, with weights mapped
explicitly, and compares it with the compiled layer.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from helpers import compile_and_import, relative_error

from nscompile.cli.main import main
from nscompile.compiler.pipeline import front_end
from nscompile.errors import SpecError
from nscompile.lang.syntax import Spec
from nscompile.lang.tnlearn_formula import neuron_from_tnlearn
from nscompile.lang.unparse import unparse


def _y(formula: str) -> str:
    text = unparse(Spec((neuron_from_tnlearn(formula, check=front_end),)))
    (line,) = [line.strip() for line in text.splitlines() if line.strip().startswith("y =")]
    return line


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        ("0.5@x**2 + 1.2@sin(x) + x", "y = <w1, x**2> + <w2, sin(x)> + <w3, x> + b"),
        # tnlearn's own examples and benchmarks (examples/, benchmark/, tests/)
        ("6@x**2 + 2@x - 3", "y = <w1, x**2> + <w2, x> + b"),
        ("-0.02@x**3 - 0.01@x**2", "y = <w1, x**3> + <w2, x**2> + b"),
        (
            "0.05@x**4 + 0.1@x**3 + 0.02@x**2 - 0.07@x + 0.5",
            "y = <w1, x**4> + <w2, x**3> + <w3, x**2> + <w4, x> + b",
        ),
        ("x + 0.5@x**2", "y = <w1, x> + <w2, x**2> + b"),
        # the docstring of CustomNeuronLayer._extract_var_exprs
        ("2@x**3 + 3@torch.sin(x) + x", "y = <w1, x**3> + <w2, sin(x)> + <w3, x> + b"),
        # RLRegressor._build_expr: intercept first, composite bases in parentheses
        (
            "0.5 + 1.2@(torch.sin(x)) - 0.3@(torch.log(torch.abs(x) + 1e-8))",
            "y = <w1, sin(x)> + <w2, log(abs(x) + 1e-08)> + b",
        ),
        # PolyRegressor: '+ 0.1234 @ x**1 - 0.5000 @ x**2'
        ("+ 0.1234 @ x**1 - 0.5000 @ x**2", "y = <w1, x> + <w2, x**2> + b"),
        ("1e-3@x + 2.5E+1@np.tanh(x)", "y = <w1, x> + <w2, tanh(x)> + b"),
        (
            "0.1@sqrt(x) + F.softplus(x) - 2@math.tan(x)",
            "y = <w1, sqrt(x)> + <w2, softplus(x)> + <w3, tan(x)> + b",
        ),
        ("x**2/2 + 3@x*sin(x)", "y = <w1, x**2 * 0.5> + <w2, x * sin(x)> + b"),
        ("-x - sin(x)", "y = <w1, x> + <w2, sin(x)> + b"),  # signs go with the coefficients
    ],
)
def test_formulas_import_with_tnlearns_meaning(formula: str, expected: str) -> None:
    assert _y(formula) == expected


def _tnlearn_layer(x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """CustomNeuronLayer.forward for '0.5@x**2 + 1.2@torch.sin(x) + x - 3', from its rule:
    basis functions [x**2, sin(x), x], one weight each (weights[0..2]), one bias."""
    bases = [x**2, np.sin(x), x]
    weights = [state["w1"], state["w2"], state["w3"]]  # the mapping: weights[k] -> w{k+1}
    return sum(b @ w.T for b, w in zip(bases, weights, strict=True)) + state["bias"]


def test_the_imported_layer_computes_tnlearns_layer() -> None:
    neuron = neuron_from_tnlearn("0.5@x**2 + 1.2@torch.sin(x) + x - 3", check=front_end)
    text = unparse(Spec((neuron,)))
    compiled, module = compile_and_import(text)
    layer = module.TnLayer(5, 4).double()
    rng = np.random.default_rng(0)
    state = {k: rng.standard_normal(tuple(v.shape)) for k, v in layer.state_dict().items()}
    layer.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = rng.standard_normal((8, 5))
    with torch.no_grad():
        actual = layer(torch.from_numpy(x)).numpy()
    assert relative_error(actual, _tnlearn_layer(x, state)) < 1e-12


@pytest.mark.parametrize(
    ("formula", "code", "where", "hint"),
    [
        ("0.5@x**2 + 1.2@sinx(x)", "E511", (1, 16, 20), "did you mean 'sin'?"),
        ("0.5@x**2 + 1.2@foo(x)", "E511", (1, 16, 19), "functions are abs"),
        ("0.5@y", "E511", (1, 5, 6), "the input is x"),
        ("0.5@x**2 $ x", "E510", (1, 10, 11), "terms like 0.5@x**2"),
        ("'0.5@x**2 + x'", "E510", (1, 1, 2), "without quotes"),
        ("0.5@x**2 +\u2028x", "E510", (1, 11, 12), "terms like 0.5@x**2"),
        ("0.5@x**2 +", "E510", (1, 11, 12), "terms like 0.5@x**2"),
        ("0.5@(x**2", "E510", (1, 10, 11), "terms like 0.5@x**2"),
        ("0.5@x x", "E510", (1, 7, 8), "terms like 0.5@x**2"),
        ("a@x**2", "E512", (1, 1, 2), "COEFFICIENT@BASIS"),
        ("x@0.5", "E512", (1, 1, 2), "COEFFICIENT@BASIS"),
        ("0.5@x@sin(x)", "E515", (1, 6, 7), "write products with *"),
        ("0.5@x**0.5", "E513", (1, 8, 11), "sqrt(x)"),
        ("0.5@x**12", "E513", (1, 8, 10), "x**2 ... x**9"),
        ("0.5@x**-1", "E510", (1, 8, 9), "terms like"),
        ("1/x", "E516", (1, 2, 3), "divide by a constant"),
        ("x/0", "E516", (1, 2, 3), "divide by a constant"),
        ("0.5@3", "E514", (1, 5, 6), "a function of x"),
        ("1 + 2", "E514", (1, 1, 2), "keeps the terms that contain x"),
        ("", "E514", (1, 1, 2), "keeps the terms that contain x"),
        ("x +\n 2@(x - x)", "E136", (2, 4, 11), "must vary with x"),
        ("2@x * exp(exp(9))", "E139", (1, 3, 18), "float32"),
        ("2@log(x, 10)", "E511", (1, 8, 9), "write log(x)"),
        ("2@" + "(" * 5000 + "x" + ")" * 5000, "E517", (1, 33, 34), "parentheses"),
        ("2@" + "-" * 5000 + "x", "E517", (1, 33, 34), "signs"),
        ("2@" + "sin(" * 40 + "x" + ")" * 40, "E517", (1, 123, 126), "parentheses"),
    ],
)
def test_bad_formulas_are_spec_errors_at_their_place(
    formula: str, code: str, where: tuple[int, int, int], hint: str
) -> None:
    with pytest.raises(SpecError) as caught:
        neuron_from_tnlearn(formula, "f.txt", check=front_end)
    error = caught.value
    assert error.code == code, error.render(formula)
    assert error.span is not None and error.span.file == "f.txt"
    assert (error.span.line, error.span.col, error.span.end_col) == where, error.render(formula)
    assert hint in (error.hint or ""), error.render(formula)


def test_nesting_up_to_the_bound_imports() -> None:
    assert _y("2@" + "(" * 30 + "x" + ")" * 30) == "y = <w1, x> + b"
    assert _y("2@" + "sin(" * 30 + "x" + ")" * 30).startswith("y = <w1, sin(sin(")


def test_the_command_line_imports_a_formula(tmp_path, capsys) -> None:
    formula = tmp_path / "neuron.txt"
    formula.write_text("0.5@x**2 + 1.2@sin(x) + x\n")
    spec = tmp_path / "spec.ns"
    args = ["import-structure", "--tnlearn", str(formula), "-o", str(spec), "--input", "3"]
    assert main(args) == 0
    text = spec.read_text()
    assert "# Imported from the tnlearn formula neuron.txt: 0.5@x**2 + 1.2@sin(x) + x" in text
    assert "neuron tn {" in text and "dense 64 tn relu" in text
    assert "y = <w1, x**2> + <w2, sin(x)> + <w3, x> + b" in text
    assert main([str(spec), "-o", str(tmp_path / "m.py")]) == 0
    capsys.readouterr()


def test_the_command_line_shows_a_bad_formula_with_a_caret(tmp_path, capsys) -> None:
    formula = tmp_path / "bad.txt"
    formula.write_text("0.5@x**2 + 1.2@sinn(x)\n")
    assert main(["import-structure", "--tnlearn", str(formula)]) == 1
    err = capsys.readouterr().err
    assert "bad.txt:1:16: error[E511]: unknown function 'sinn'" in err
    assert "1 | 0.5@x**2 + 1.2@sinn(x)" in err and "^^^^" in err
    assert "did you mean 'sin'?" in err and "Traceback" not in err


def test_a_formula_passed_as_json_gets_a_hint(tmp_path, capsys) -> None:
    formula = tmp_path / "neuron.txt"
    formula.write_text("0.5@x**2 + x\n")
    assert main(["import-structure", str(formula)]) == 1
    err = capsys.readouterr().err
    assert "error[E503]" in err and "pass --tnlearn" in err
