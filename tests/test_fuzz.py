"""A few hundred cases of the fuzzing campaign (tests/fuzz.py), the same ones on every run.

Each case compiles (its module runs on a random input; every tenth goes through the command
line to ONNX as well) or fails with a SpecError inside the source or an InputError, exit 1
and no file; nothing raises anything else and no generated name escapes the naming authority.
The large campaign is a command: `python tests/fuzz.py --cases 10000`.
"""

from __future__ import annotations

import collections
import warnings

import fuzz
import pytest

CASES = 300
EXPECTED = {"ok", "spec error", "input error"}


@pytest.fixture(scope="module")
def pools() -> tuple[list[str], list[str]]:
    return fuzz.seeds(generated=40)


@pytest.mark.parametrize("block", range(0, CASES, 50))
def test_fuzzed_specs_compile_or_fail_cleanly(pools, block: int) -> None:
    outcomes: collections.Counter[str] = collections.Counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # overflow in a generated module's values is no finding
        for case in range(block, block + 50):
            text = fuzz.case_text(0, case, pools)
            result = fuzz.run_case(text, onnx=case % 10 == 0)
            assert result.outcome in EXPECTED, f"case {case}:\n{text}\n{result.detail}"
            outcomes[result.outcome] += 1
    assert outcomes["spec error"] and outcomes["ok"], outcomes  # the generator reaches both


def test_the_injection_check_sees_a_foreign_name(pools) -> None:
    from nscompile.compiler.pipeline import compile_text, to_torch

    compiled = compile_text(pools[0][0], "fuzz.ns")
    source = to_torch(compiled)
    assert fuzz.injected_names(compiled, source) == set()
    assert fuzz.injected_names(compiled, source + "\n__import__('os').system\n") == {
        "__import__",
        "system",
    }


def test_specs_the_fold_gate_lets_through_fold_to_themselves(pools) -> None:
    """`fold_gate.needs_fold` keeps SymPy out of `check`; it may only skip specs that fold
    cleanly. Every checked fuzz case (and every example) the gate skips goes through `fold`."""
    from nscompile.compiler.fold import fold
    from nscompile.errors import SpecError
    from nscompile.lang.check import check
    from nscompile.lang.fold_gate import needs_fold
    from nscompile.lang.parser import parse

    skipped = 0
    texts = [fuzz.case_text(0, case, pools) for case in range(CASES)] + pools[0]
    for text in texts:
        try:
            spec = check(parse(text, "fuzz.ns"), "fuzz.ns")
        except SpecError:
            continue
        if not needs_fold(spec):
            skipped += 1
            assert fold(spec) == spec, text
    assert skipped > 10, skipped
    td = fuzz.ROOT / "examples" / "td.ns"
    assert not needs_fold(check(parse(td.read_text(), str(td)), str(td)))
