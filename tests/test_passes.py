"""The named passes: one before/after case per pass, and verification between passes.

Each `tests/passes/NAME.txt` holds a spec, the IR that pass NAME receives (`# before: the IR after
STAGE`, the output of `nscompile ir SPEC --after STAGE`, normally the previous pass) and the IR it
returns (`# after: NAME`). Regenerate the IR texts with `pytest --update-golden` (the spec and
STAGE are kept) and review the diff: it shows what each pass does.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from sympy import MatrixSymbol

from nscompile.compiler import passes
from nscompile.compiler.ir import BATCH, IN, OUT
from nscompile.compiler.passes import PASS_NAMES, PASSES, optimize, remove_dead
from nscompile.compiler.pipeline import VERIFY_ENV, compile_text, ir_after
from nscompile.errors import InternalError

CASES = Path(__file__).resolve().parent / "passes"
FILES = sorted(CASES.glob("*.txt"))
CASE = re.compile(
    r"# spec\n(?P<spec>.*?)"
    r"# before: the IR after (?P<stage>\w+)\n(?P<before>.*?)"
    r"# after: (?P<name>\w+)\n(?P<after>.*)",
    re.S,
)
# No spec reaches this pass with work to do (the test below gives it some by hand): its case
# pins that it keeps the pipeline's IR as it is.
KEEPS_THE_PIPELINE_IR = {"remove_dead"}
QUADRATIC = "neuron n { y = <wr, x> * <wg, x> + b }"


def test_every_pass_has_one_case() -> None:
    assert [p.stem for p in FILES] == sorted(PASS_NAMES)


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_pass_case(path: Path, golden) -> None:
    case = CASE.fullmatch(path.read_text(encoding="utf-8"))
    assert case, f"{path.name}: expected '# spec', '# before: the IR after STAGE', '# after: NAME'"
    name, stage = case["name"], case["stage"]
    assert name == path.stem
    compiled = compile_text(case["spec"], path.name, verify=True)
    before = ir_after(compiled, stage, verify=True)
    after = optimize(before, ((name, dict(PASSES)[name]),), verify=True)
    text = (
        f"# spec\n{case['spec']}# before: the IR after {stage}\n{before.dump()}"
        f"# after: {name}\n{after.dump()}"
    )
    golden(path, text)
    changed = before.dump() != after.dump()
    assert changed != (name in KEEPS_THE_PIPELINE_IR), f"{path.name}: changed={changed}"


def test_passes_are_named_after_their_functions_with_before_after_docstrings() -> None:
    assert len(set(PASS_NAMES)) == len(PASS_NAMES)
    for name, run in PASSES:
        assert run.__name__ == name
        assert run.__doc__ and "->" in run.__doc__.splitlines()[0], name


def test_remove_dead_drops_unused_and_renaming_assignments() -> None:
    neuron = compile_text("neuron n { y = <w, x> + b }").lowered.neurons[0]
    weight = next(p.symbol for p in neuron.params if p.name == "w")
    renamed, unused = MatrixSymbol("_t0", IN, OUT), MatrixSymbol("_t1", BATCH, OUT)
    messy = dataclasses.replace(
        neuron,
        assignments=((renamed, weight.T), (unused, neuron.input * weight.T)),
        output=neuron.output.xreplace({weight.T: renamed}),
    )
    messy.verify()
    assert remove_dead(messy) == neuron


def _drop_assignments(ir):  # noqa: ANN001, ANN202
    """`_t0 = e; return f(_t0)` -> `return f(_t0)`: a broken pass."""
    return dataclasses.replace(ir, assignments=())


def test_a_pass_that_breaks_the_ir_is_reported_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(passes, "PASSES", (*PASSES, ("drop_assignments", _drop_assignments)))
    with pytest.raises(InternalError, match=r"pass 'drop_assignments' broke the IR: n: _t0 used"):
        compile_text(QUADRATIC, verify=True)
    monkeypatch.setenv(VERIFY_ENV, "1")
    with pytest.raises(InternalError, match="drop_assignments"):
        compile_text(QUADRATIC)
    monkeypatch.setenv(VERIFY_ENV, "0")
    compile_text(QUADRATIC)  # unverified: the broken IR goes through


@pytest.mark.parametrize("doc", ["README.md", "nscompile/compiler/__init__.py"])
def test_the_docs_list_the_passes_in_order(doc: str) -> None:
    text = (CASES.parent.parent / doc).read_text(encoding="utf-8")
    assert tuple(re.findall(r"^- `(\w+)`: ", text, re.M)) == PASS_NAMES
