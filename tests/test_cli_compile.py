"""Compiling from the command line when things go wrong: one error, exit 1, no file behind.

The specs are the fuzzing campaign's findings (tests/fuzz.py): values that SymPy folds away
or past float32, a neuron without input, networks too large to allocate, specs without the
network --onnx asks for, and the last line of defence for nscompile's own bugs.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from nscompile.cli import main as cli
from nscompile.compiler.fold import ERRORS
from nscompile.errors import InternalError

NETWORK = "network n {{ input 3  dense 4 q  dense 1  task regression }}"
FOUND = [
    # the neuron's `y`, the code both `nscompile check` and compilation report, its span's text
    ("0 * <w, x>", "E137", "0 * <w, x>"),
    ("<w, x> * 1e-400", "E137", "<w, x> * 1e-400"),
    ("<w, (x - x)**2>", "E136", "(x - x)**2"),
    ("exp(1000) - exp(1000) + <w, x>", "E139", "exp(1000)"),
    ("<w, cos(0*x)>", "E136", "cos(0*x)"),
    ("<w, 0*x + 1>", "E136", "0*x + 1"),
    ("<w, 0*x>", "E136", "0*x"),
    ("exp(710) * <w, x>", "E139", "exp(710)"),
    ("(1e20 * 1e20) * <w, x>", "E139", "1e20 * 1e20"),
    ("(1e200 * 1e200) * <w, x>", "E134", "1e200"),
    ("<w, 1e308 * 1e308 * x>", "E134", "1e308"),
    ("(99999999999**9)**9 * <w, x>", "E139", "99999999999**9"),
    ("1e30 * <w, x> * 1e30", "E139", "1e30 * <w, x> * 1e30"),
    ("<w, x> + 0 * b", "E137", "0 * b"),
    ("b", "E138", "b"),
    ("<w, (((((x**9)**9)**9)**9)**9)**9>", "E170", "((x**9)**9)**9"),
]


def test_every_folding_code_is_found_here() -> None:
    assert set(ERRORS) <= {code for _, code, _ in FOUND}


def _spec(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "spec.ns"
    path.write_text(text + "\n")
    return path


def _outputs(tmp_path: Path) -> list[str]:
    return ["-o", str(tmp_path / "m.py"), "--onnx", str(tmp_path / "m.onnx")]


def _reported(stderr: str) -> tuple[str, str]:
    """The code and the text under the caret of a rendered SpecError."""
    code = re.search(r"error\[(E\d+)\]", stderr)
    lines = stderr.splitlines()
    caret = next(i for i, line in enumerate(lines) if set(line.split("|")[-1].strip()) == {"^"})
    text, marks = lines[caret - 1].split("| ", 1)[1], lines[caret].split("| ", 1)[1]
    start = marks.index("^")
    return (code.group(1) if code else "", text[start : start + marks.count("^")])


@pytest.mark.parametrize(("y", "code", "covered"), FOUND, ids=[f[0] for f in FOUND])
def test_check_and_compile_report_the_same_error(tmp_path, capsys, y, code, covered) -> None:
    spec = _spec(tmp_path, f"neuron q {{ y = {y} }}  " + NETWORK.format())
    assert cli.main(["check", str(spec)]) == 1
    checked = capsys.readouterr().err
    assert cli.main([str(spec), *_outputs(tmp_path)]) == 1
    compiled = capsys.readouterr().err
    assert checked == compiled
    assert _reported(compiled) == (code, covered), compiled
    assert "Traceback" not in compiled and "spec.ns:1:" in compiled
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ns"]


def test_a_failing_onnx_step_writes_no_module_either(tmp_path, capsys) -> None:
    spec = _spec(tmp_path, "neuron q { y = <w, x> }\n# no network here")
    assert cli.main([str(spec), *_outputs(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "spec.ns:2:18: error[E161]: the spec declares no network" in err
    assert "network net { input 4" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ns"]


def test_the_module_alone_needs_no_network(tmp_path) -> None:
    spec = _spec(tmp_path, "neuron q { y = <w, x> }")
    assert cli.main([str(spec), "-o", str(tmp_path / "m.py")]) == 0
    assert (tmp_path / "m.py").is_file()


def test_networks_too_large_to_allocate_are_refused(tmp_path, capsys) -> None:
    spec = _spec(tmp_path, "network big { input 1000000  dense 1000000  dense 1 }")
    assert cli.main([str(spec), *_outputs(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "spec.ns:1:9: error[E160]: network 'big' has 1,000,002,000,001 parameters" in err
    assert "above the limit of 2 GiB" in err and "--max-param-bytes" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ns"]


def test_the_limit_counts_every_parameter_and_can_be_raised(tmp_path, capsys) -> None:
    # 2 x (1000 x 1000) weights, cp: 2 factors of 1000 x 8 and 8 x 1000, bias 1000; then 1001.
    spec = _spec(
        tmp_path,
        "neuron q { rank 8 y = <w1, x> * <w2, x> + cp(x, 2) + b }\n"
        "network n { input 1000  dense 1000 q  dense 1 }",
    )
    count = 2 * 1000 * 1000 + 2 * 1000 * 8 + 8 * 1000 + 1000 + 1001
    limit = ["--max-param-bytes", str(4 * count - 1)]
    assert cli.main([str(spec), "-o", str(tmp_path / "m.py"), *limit]) == 1
    assert f"has {count:,} parameters" in capsys.readouterr().err
    limit = ["--max-param-bytes", str(4 * count)]
    assert cli.main([str(spec), "-o", str(tmp_path / "m.py"), *limit]) == 0


def test_an_internal_error_exits_3_without_traceback(tmp_path, capsys, monkeypatch) -> None:
    def broken(compiled) -> str:  # noqa: ANN001
        raise InternalError("an invariant broke")

    monkeypatch.setattr(cli, "to_torch", broken)
    spec = _spec(tmp_path, "neuron q { y = <w, x> }")
    assert cli.main([str(spec), "-o", str(tmp_path / "m.py")]) == 3
    err = capsys.readouterr().err
    assert err == (
        "nscompile: internal error: an invariant broke (please report this with the spec)\n"
    )
    assert not (tmp_path / "m.py").exists()


def test_networks_too_large_for_one_onnx_file_are_refused(tmp_path, capsys) -> None:
    spec = _spec(tmp_path, "network big { input 30000  dense 30000  dense 1 }")
    assert cli.main([str(spec), *_outputs(tmp_path), "--max-param-bytes", str(8 * 1024**3)]) == 1
    err = capsys.readouterr().err
    assert "spec.ns:1:9: error[E162]: network 'big' has 900,060,001 parameters" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.ns"]


CONSTANT_PARTS = [
    # an input with a constant part: it lowers to a scalar, not to an unprintable ZeroMatrix
    "<w, 2 * x - cos(0*x)**3>",
    "<w, 2 * abs(x) - abs(x) - (x - x)**3>",
    "<w, x * cos(x - x)> + b",
    "0.5 * tanh(<w, 2 * x - cos(0*x)**3>) - -bias + 3",
]


@pytest.mark.parametrize("y", CONSTANT_PARTS)
def test_constant_parts_of_an_input_compile_and_match_the_ir(tmp_path, y) -> None:
    from helpers import compile_and_import, layer_parity

    compiled, module = compile_and_import(f"neuron q {{ y = {y} }}")
    assert layer_parity(module.QLayer, compiled.lowered.neurons[0], 4, 3, 5, seed=0) < 1e-5
