"""The layers and their one-way imports (nscompile/*/__init__.py), and what each command loads.

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

# The layers in order (nscompile/*/__init__.py say what each is for): a module imports only its own
# layer and the layers before it; `base` is the package's top-level modules. Nothing imports `cli`
# but `__main__`.
LAYERS = ("base", "lang", "compiler", "learn", "bench", "cli")
# The third-party libraries a layer may import (the standard library is always allowed; every
# later layer may use anything).
LIBRARIES = {
    "base": set(),
    "lang": {"lark"},
    "compiler": {"lark", "sympy", "numpy", "jinja2", "onnx"},
}
HEAVY = {"torch", "onnxruntime"}
# What `nscompile check` and `fmt` need is the parser and the checker; these load in the functions
# that use them (the back half: lower, the passes, the backends), each costing 0.1-1 s of start-up.
BACK_END_LIBRARIES = {"sympy", "numpy", "jinja2", "onnx"}
BACK_HALF = {
    "nscompile.compiler.lower",
    "nscompile.compiler.passes",
    "nscompile.compiler.emit_torch",
    "nscompile.compiler.emit_onnx",
}
# One owner each: only these modules may import these libraries or call these functions.
OWNERS = {
    "lark": {"nscompile.lang.parser"},
    "argparse": {f"nscompile.cli.{name}" for name in ("main", "data", "train", "bench")},
}
# The one module that turns generated source into a Python module.
LOADER = "nscompile.learn.loader"


@dataclass(frozen=True)
class Import:
    """One import statement's target, seen from the module that contains it."""

    module: str  # dotted name, e.g. "torch.nn" or "nscompile.compiler.ir"
    path: Path
    line: int

    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}: imports {self.module}"


def layer_of(dotted: str) -> str:
    """`nscompile.lang.check` -> `lang`; `nscompile.errors` and `nscompile` -> `base`."""
    parts = dotted.split(".")
    if len(parts) > 1 and parts[1] in LAYERS:
        return parts[1]
    return "cli" if parts[-1] == "__main__" else "base"


def module_name(path: Path) -> str:
    """nscompile/learn/search/__init__.py -> nscompile.learn.search."""
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
    assert {"nscompile.errors", "nscompile.lang.syntax", "nscompile.compiler.pipeline"} <= set(
        MODULES
    )


def _third_party(imp: Import) -> str | None:
    top = imp.module.split(".")[0]
    return None if top == "nscompile" or top in sys.stdlib_module_names else top


@pytest.mark.parametrize("name", sorted(MODULES))
def test_layers_import_only_themselves_and_the_layers_before(name: str) -> None:
    layer = layer_of(name)
    rank = LAYERS.index(layer)
    bad = [
        f"{i.where()} (layer {layer_of(i.module)} is not before {layer})"
        for i in internal(MODULES[name])
        if LAYERS.index(layer_of(i.module)) > rank
        or (layer_of(i.module) == "cli" and name != "nscompile.__main__" and layer != "cli")
    ]
    allowed = LIBRARIES.get(layer)
    if allowed is not None:
        bad += [
            f"{i.where()} (layer {layer} may use only {sorted(allowed) or 'the standard library'})"
            for i in MODULES[name]
            if (lib := _third_party(i)) and lib not in allowed
        ]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_one_owner_per_library(library: str) -> None:
    bad = [
        i.where()
        for name, imports in MODULES.items()
        if name not in OWNERS[library]
        for i in imports
        if i.module.split(".")[0] == library
    ]
    assert not bad, f"only {sorted(OWNERS[library])} may import {library}:\n" + "\n".join(bad)


def test_the_backends_never_import_each_other() -> None:
    pairs = {
        "nscompile.compiler.emit_torch": "nscompile.compiler.emit_onnx",
        "nscompile.compiler.emit_onnx": "nscompile.compiler.emit_torch",
    }
    bad = [
        i.where()
        for name, other in pairs.items()
        for i in internal(MODULES[name])
        if i.module == other
    ]
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    # Within a layer the modules still form a one-way flow: a cycle means two modules share a job.
    graph = {
        name: {i.module for i in internal(imports)} & set(MODULES)
        for name, imports in MODULES.items()
    }
    done: set[str] = set()

    def visit(node: str, path: list[str]) -> None:
        if node in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(node) :], node]))
        if node in done:
            return
        for target in sorted(graph[node]):
            if target != node and not node.startswith(target + "."):
                visit(target, [*path, node])
        done.add(node)

    for name in sorted(graph):
        visit(name, [])


def test_the_package_init_imports_no_stage() -> None:
    # Importing any module runs nscompile/__init__.py first; an import there would load it all.
    bad = [i.where() for i in internal(MODULES.get("nscompile", [])) if i.module != "nscompile"]
    assert not bad, "nscompile/__init__.py must stay free of module imports:\n" + "\n".join(bad)


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


@pytest.mark.parametrize(
    "name", sorted(n for n in MODULES if n.startswith("nscompile.learn.search"))
)
def test_search_never_loads_the_back_half(name: str) -> None:
    # The search writes ASTs; it may use the front end but never lowering, passes or emitters,
    # not even through another module (pipeline imports them all).
    bad = [
        f"{target} (via {imp.where()})"
        for target, imp in sorted(_reachable(name).items())
        if target in BACK_HALF
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
    loaded = _modules_after("import nscompile.compiler.pipeline")
    assert "nscompile.compiler.pipeline" in loaded
    assert not loaded & HEAVY, (
        f"importing nscompile.compiler.pipeline loaded {sorted(loaded & HEAVY)}"
    )


def test_compiling_to_torch_source_loads_no_heavy_runtime() -> None:
    # Catches lazy imports inside functions that a plain import would not run.
    loaded = _modules_after(
        """
        from nscompile.compiler.pipeline import compile_text, to_torch
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
    # Every command pays for what `nscompile.cli.main` imports on import; the back half and its
    # libraries load inside the functions that need them.
    loaded = ["nscompile.cli.main", *_reachable("nscompile.cli.main", ON_IMPORT)]
    bad = {
        i.where()
        for name in loaded
        for i in ON_IMPORT.get(name, [])
        if i.module.split(".")[0] in BACK_END_LIBRARIES | HEAVY or i.module in BACK_HALF
    }
    assert not bad, "importing nscompile.cli.main loads the back half:\n" + "\n".join(sorted(bad))


TD = str(ROOT / "examples" / "td.ns")
NOT_IN_THE_FRONT_END = BACK_END_LIBRARIES | HEAVY


@pytest.fixture(scope="module")
def td_safetensors(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Weights for examples/td.ns as .safetensors, written without torch."""
    from safetensors_file import write_safetensors

    from nscompile.compiler.emit_onnx import expected_shapes
    from nscompile.compiler.pipeline import compile_file, select_network

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
        (["ir", TD, "--after", "fuse_sums"], HEAVY | {"onnx"}),
        ([TD, "-o", "{tmp}/model.py"], HEAVY | {"onnx"}),
        ([TD, "--onnx", "{tmp}/m.onnx", "--weights", "{weights}"], HEAVY),
    ],
    ids=["check", "fmt", "ir", "ir-after", "to-torch", "to-onnx-safetensors"],
)
def test_commands_load_only_what_they_use(
    argv: list[str], forbidden: set[str], tmp_path: Path, td_safetensors: Path
) -> None:
    """Lazy imports inside functions are only seen by running the command: run it, then look."""
    args = [a.format(tmp=tmp_path, weights=td_safetensors) for a in argv]
    loaded = _modules_after(
        f"""
        import contextlib, io
        from nscompile.cli.main import main
        with contextlib.redirect_stdout(io.StringIO()):
            assert main({args!r}) == 0
        """
    )
    assert "nscompile.cli.main" in loaded
    heavy = sorted({m.split(".")[0] for m in loaded} & forbidden)
    assert not heavy, f"nscompile {' '.join(args)} loaded {heavy}"


# What imports a file as a module; only LOADER may call these (strings too: a script that a test
# runs as a subprocess holds its code in a string).
IMPORT_CALLS = ("spec_from_file_location", "module_from_spec")


def _loader_calls(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            names = [node.attr]
        elif isinstance(node, ast.Name):
            names = [node.id]
        elif isinstance(node, ast.alias):
            names = [node.name.rpartition(".")[2]]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = [call for call in IMPORT_CALLS if call in node.value]
        else:
            names = []
        where = f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', '?')}"
        found += [f"{where}: {name}" for name in names if name in IMPORT_CALLS]
    return found


def test_only_the_loader_turns_source_into_modules() -> None:
    files = [
        *(p for p in sorted(PACKAGE.rglob("*.py")) if module_name(p) != LOADER),
        *sorted((ROOT / "examples").rglob("*.py")),
        *sorted((ROOT / "tests").glob("*.py")),
    ]
    assert LOADER in MODULES
    bad = [call for path in files if path != Path(__file__) for call in _loader_calls(path)]
    assert not bad, f"only {LOADER} may import generated source:\n" + "\n".join(bad)
