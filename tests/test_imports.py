"""DESIGN §2: data flows one way, and the compiler path never loads torch or onnxruntime.

`nscompile check` and `fmt` load only the front end (no SymPy, NumPy, jinja2 or onnx), and
`--onnx` with .safetensors weights loads no torch: start-up time is most of a short command.

The static rules are read from each module's syntax tree (nothing is imported), so a violation is
reported with its file and line even when the module would fail to import; the last tests run code
in a fresh interpreter, where imports inside functions show too.
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
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
    "fold_gate",
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
    "preprocess",
    "deploy_onnx",
    "search",
    "train",
    "weights",
    "runtime",
    "deploy",
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
    "fold_gate",
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
# What `nscompile check` and `fmt` need is the parser and the checker; these load in the functions
# that use them (the back half: lower, optimize, the emitters), each costing 0.1-1 s of start-up.
BACK_END_LIBRARIES = {"sympy", "numpy", "jinja2", "onnx"}
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


def _module_level(tree: ast.AST) -> list[ast.AST]:
    """The nodes that run when the module is imported: not function bodies, not TYPE_CHECKING."""
    found: list[ast.AST] = []
    todo = [tree]
    while todo:
        node = todo.pop()
        found.append(node)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            continue
        if isinstance(node, ast.If) and ast.unparse(node.test).endswith("TYPE_CHECKING"):
            todo.extend(node.orelse)
        else:
            todo.extend(ast.iter_child_nodes(node))
    return found


def imports_of(path: Path, module_level: bool = False) -> list[Import]:
    """Every import in the file, relative ones resolved: anywhere (function bodies included),
    or with `module_level` only those that run on import."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found: list[Import] = []
    for node in _module_level(tree) if module_level else ast.walk(tree):
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


def all_modules(module_level: bool = False) -> dict[str, list[Import]]:
    return {
        module_name(p): imports_of(p, module_level)
        for p in sorted(PACKAGE.rglob("*.py"))
        if "_data" not in p.relative_to(PACKAGE).parts
    }


MODULES = all_modules()
ON_IMPORT = all_modules(module_level=True)


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


def _reachable(start: str, modules: dict[str, list[Import]] = MODULES) -> dict[str, Import]:
    """Every nscompile module loaded by importing `start`, with the import that first reached it."""
    known = set(modules)
    seen: dict[str, Import] = {}
    todo = [start]
    while todo:
        current = todo.pop()
        for imp in internal(modules.get(current, [])):
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


def test_importing_the_command_line_loads_only_the_front_end() -> None:
    # Every command pays for what `nscompile.cli` imports on import; the back half and its
    # libraries load inside the functions that need them.
    loaded = ["nscompile.cli", *_reachable("nscompile.cli", ON_IMPORT)]
    bad = {
        i.where()
        for name in loaded
        for i in ON_IMPORT.get(name, [])
        if i.module.split(".")[0] in BACK_END_LIBRARIES | HEAVY
        or (i.module.startswith("nscompile.") and stage_of(i.module) in BACK_HALF)
    }
    assert not bad, "importing nscompile.cli loads the back half:\n" + "\n".join(sorted(bad))


TD = str(ROOT / "examples" / "td.ns")
NOT_IN_THE_FRONT_END = BACK_END_LIBRARIES | HEAVY


@pytest.fixture(scope="module")
def td_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights for examples/td.ns as .safetensors, written without torch."""
    from safetensors_file import write_safetensors

    from nscompile.emit_onnx import expected_shapes
    from nscompile.pipeline import compile_file, select_network

    compiled = compile_file(TD)
    shapes = expected_shapes(compiled.optimized, select_network(compiled, None))
    arrays = {key: np.ones(shape, np.float32) for key, shape in shapes.items()}
    return write_safetensors(tmp_path_factory.mktemp("weights") / "w.safetensors", arrays)


@pytest.mark.parametrize(
    ("argv", "forbidden"),
    [
        (["check", TD], NOT_IN_THE_FRONT_END),
        (["fmt", TD], NOT_IN_THE_FRONT_END),
        (["ir", TD], HEAVY | {"onnx"}),
        ([TD, "-o", "{tmp}/model.py"], HEAVY | {"onnx"}),
        ([TD, "--onnx", "{tmp}/m.onnx", "--weights", "{weights}"], HEAVY),
    ],
    ids=["check", "fmt", "ir", "to-torch", "to-onnx-safetensors"],
)
def test_commands_load_only_what_they_use(
    argv: list[str], forbidden: set[str], tmp_path: Path, td_safetensors: Path
) -> None:
    """Lazy imports inside functions are only seen by running the command: run it, then look."""
    args = [a.format(tmp=tmp_path, weights=td_safetensors) for a in argv]
    loaded = _modules_after(
        f"""
        import contextlib, io
        from nscompile.cli import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main({args!r}) == 0
        """
    )
    assert "nscompile.cli" in loaded
    heavy = sorted({m.split(".")[0] for m in loaded} & forbidden)
    assert not heavy, f"nscompile {' '.join(args)} loaded {heavy}"
