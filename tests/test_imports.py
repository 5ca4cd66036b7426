"""DESIGN §2: data flows one way, and the compiler path never loads torch or onnxruntime.

The rules are read from each module's syntax tree (nothing is imported), so a violation is reported
with its file and line even when the module would fail to import.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "nscompile"

# The stages in pipeline order; a stage may import only the stages before it. `check*` is one stage.
STAGES = (
    "errors",
    "syntax",
    "naming",
    "resources",
    "files",
    "parser",
    "unparse",
    "structure",
    "check*",
    "ops",
    "fold",
    "ir",
    "lower",
    "optimize",
    "interpret",
    "emit_torch",
    "emit_onnx",
    "pipeline",
    "synthetic",
    "data",
    "search",
    "train",
    "weights",
    "runtime",
    "progress",
    "plots",
    "estimators",
    "benchkit",
    "bench",
    "cli_data",
    "cli_train",
    "cli_bench",
    "cli",
    "__main__",
)
# Parse to ONNX proto: these must stay fast to import and free of heavy runtimes.
COMPILER_PATH = {
    "__init__",
    "errors",
    "syntax",
    "naming",
    "resources",
    "parser",
    "unparse",
    "check*",
    "ops",
    "fold",
    "ir",
    "lower",
    "optimize",
    "interpret",
    "emit_torch",
    "emit_onnx",
    "pipeline",
    "files",
    "structure",
}
HEAVY = {"torch", "onnxruntime"}
BACK_HALF = {"lower", "optimize", "emit_torch", "emit_onnx"}


@dataclass(frozen=True)
class Import:
    """One import statement's target, seen from the module that contains it."""

    module: str  # dotted name, e.g. "torch.nn" or "nscompile.ir"
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: imports {self.module}"


def stage_of(dotted: str) -> str:
    """`nscompile.check_network.x` -> `check*`; `nscompile.search.gates` -> `search`."""
    parts = dotted.split(".")
    if parts == ["nscompile"]:
        return "__init__"
    top = parts[1]
    return "check*" if top.startswith("check") else top


def module_name(path: Path) -> str:
    """nscompile/search/__init__.py -> nscompile.search; nscompile/ir.py -> nscompile.ir."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_submodule(package: str, name: str) -> bool:
    """Whether `from package import name` names a module or package rather than an attribute."""
    folder = ROOT.joinpath(*package.split("."))
    return (folder / f"{name}.py").is_file() or (folder / name / "__init__.py").is_file()


def imports_of(path: Path) -> list[Import]:
    """Every import anywhere in the file (function bodies included), relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[Import] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(alias.name, path, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                if base.split(".")[0] == "nscompile" and _is_submodule(base, alias.name):
                    found.append(Import(f"{base}.{alias.name}", path, node.lineno))
                else:
                    found.append(Import(base, path, node.lineno))
    return found


def all_modules() -> dict[str, list[Import]]:
    return {
        module_name(p): imports_of(p)
        for p in sorted(PACKAGE.rglob("*.py"))
        if "_data" not in p.relative_to(PACKAGE).parts
    }


MODULES = all_modules()


def internal(imports: list[Import]) -> list[Import]:
    return [i for i in imports if i.module.split(".")[0] == "nscompile"]


def test_the_package_is_found() -> None:
    assert {"nscompile.errors", "nscompile.syntax", "nscompile.pipeline"} <= set(MODULES)


@pytest.mark.parametrize("name", sorted(n for n in MODULES if stage_of(n) in COMPILER_PATH))
def test_compiler_path_imports_no_heavy_runtime(name: str) -> None:
    bad = [i.where() for i in MODULES[name] if i.module.split(".")[0] in HEAVY]
    assert not bad, "the compiler path must not import torch or onnxruntime:\n" + "\n".join(bad)


def test_only_the_parser_imports_lark() -> None:
    bad = [
        i.where()
        for name, imports in MODULES.items()
        if name != "nscompile.parser"
        for i in imports
        if i.module.split(".")[0] == "lark"
    ]
    assert not bad, "only nscompile/parser.py may import lark:\n" + "\n".join(bad)


def test_the_emitters_never_import_each_other() -> None:
    pairs = {"emit_torch": "emit_onnx", "emit_onnx": "emit_torch"}
    bad = [
        i.where()
        for name, imports in MODULES.items()
        if stage_of(name) in pairs
        for i in internal(imports)
        if stage_of(i.module) == pairs[stage_of(name)]
    ]
    assert not bad, "\n".join(bad)


def test_the_package_init_imports_no_stage() -> None:
    # Importing any stage runs nscompile/__init__.py first; a stage import there would load it all.
    bad = [i.where() for i in internal(MODULES.get("nscompile", [])) if i.module != "nscompile"]
    assert not bad, "nscompile/__init__.py must stay free of stage imports:\n" + "\n".join(bad)


def _allowed(importer: str, target: str) -> bool:
    """Whether stage `importer` may import stage `target` under DESIGN §2's one-way flow."""
    if target == "__init__":
        return True
    rank = {stage: n for n, stage in enumerate(STAGES)}
    if importer in rank:
        if importer == target:  # within one stage: check* helpers, a stage's own subpackage
            return True
        return target in rank and rank[target] < rank[importer]
    # Outside the list (runtime/, train/, search/, ...): anything before the command line.
    return target not in {"cli", "__main__"}


@pytest.mark.parametrize("name", sorted(MODULES))
def test_stages_import_only_earlier_stages(name: str) -> None:
    importer = stage_of(name)
    bad = [
        f"{i.where()} (stage {stage_of(i.module)} is not before {importer})"
        for i in internal(MODULES[name])
        if not _allowed(importer, stage_of(i.module))
    ]
    assert not bad, "\n".join(bad)


def _reachable(start: str) -> dict[str, Import]:
    """Every nscompile module loaded by importing `start`, with the import that first reached it."""
    known = set(MODULES)
    seen: dict[str, Import] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for imp in internal(MODULES.get(current, [])):
            # `import nscompile.a.b` loads nscompile.a as well.
            parts = imp.module.split(".")
            for n in range(1, len(parts) + 1):
                target = ".".join(parts[:n])
                if target in known and target not in seen and target != start:
                    seen[target] = imp
                    todo.append(target)
    return seen


@pytest.mark.parametrize("name", sorted(n for n in MODULES if stage_of(n) == "search"))
def test_search_never_loads_the_back_half(name: str) -> None:
    # The search writes ASTs; it may use the front end but never lowering, passes or emitters,
    # not even through another module (pipeline imports them all).
    bad = [
        f"{target} (via {imp.where()})"
        for target, imp in sorted(_reachable(name).items())
        if stage_of(target) in BACK_HALF
    ]
    assert not bad, f"{name} loads the back half of the compiler:\n" + "\n".join(bad)


def _modules_after(code: str) -> set[str]:
    """Run `code` in a fresh interpreter from the checkout; return the names in sys.modules."""
    probe = textwrap.dedent(code) + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr
    return set(result.stdout.split())


def test_importing_the_pipeline_loads_no_heavy_runtime() -> None:
    loaded = _modules_after("import nscompile.pipeline")
    assert "nscompile.pipeline" in loaded
    assert not loaded & HEAVY, f"importing nscompile.pipeline loaded {sorted(loaded & HEAVY)}"


def test_compiling_to_torch_source_loads_no_heavy_runtime() -> None:
    # Catches lazy imports inside functions that a plain import would not run.
    loaded = _modules_after(
        """
        from nscompile.pipeline import compile_text, to_torch
        spec = '''
        neuron td {
            rank 4
            y = <w1, x> + <w2, x**2> + cp(x, 2) + b
        }
        network net {
            input 8
            dense 8 td relu
            dense 1
            task regression
        }
        '''
        assert "class TdLayer" in to_torch(compile_text(spec, "td.ns"))
        """
    )
    assert not loaded & HEAVY, f"compiling a spec loaded {sorted(loaded & HEAVY)}"
