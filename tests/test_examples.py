"""Every example runs: each `examples/*.py` script and each `examples/*.ns` spec.

Scripts run as fresh processes from outside the checkout, with `--quick` when they accept it. A
script that needs a GPU says so with a module-level `NEEDS_GPU = True`; a CPU-only machine skips it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py")) + sorted(EXAMPLES.glob("paper/*.py"))
SPECS = sorted(EXAMPLES.glob("*.ns"))
NEEDS_GPU = re.compile(r"^NEEDS_GPU\s*=\s*True\b", re.MULTILINE)


def checkout_env() -> dict[str, str]:
    """The environment with the checkout first on the path, so the code under test is what runs."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def test_there_are_examples() -> None:
    assert SCRIPTS and SPECS


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_script_runs(script: Path, tmp_path: Path) -> None:
    source = script.read_text(encoding="utf-8")
    if NEEDS_GPU.search(source):
        torch = pytest.importorskip("torch")
        if not torch.cuda.is_available():
            pytest.skip(f"{script.name} needs a GPU")
    command = [sys.executable, str(script)] + (["--quick"] if "--quick" in source else [])
    result = subprocess.run(
        command, cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, (
        f"{' '.join(command)} exited {result.returncode}\n"
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    )


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_example_spec_compiles_with_the_cli(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.py"
    command = [sys.executable, "-m", "nscompile", str(spec), "-o", str(out)]
    result = subprocess.run(
        command, cwd=tmp_path, env=checkout_env(), capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stderr}"
    assert list(tmp_path.iterdir()) == [out], "the CLI left files besides its output"
    compile(out.read_text(encoding="utf-8"), str(out), "exec")  # valid Python
