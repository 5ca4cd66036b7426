"""The one place that turns generated PyTorch source into a Python module.

    >>> import nscompile
    >>> td = nscompile.load("examples/td.ns")     # a path or spec text
    >>> model = td.build()                        # a fresh torch module: the spec's network
    >>> td.networks, td.module.TdLayer, td.source  # names, the generated namespace, its source

The source is always nscompile's own generated code, imported from a file like any module (never
`exec` of user text). `load_source` writes it to a temporary file that is removed once the module
is imported; `load_file` imports a generated file where it lies (a run's model.py). Modules get
unique names and are not added to `sys.modules`, so nothing is left behind and two specs never
clash. Loading is thread-safe, and `load_source` keeps the last few modules by their source's
hash: the estimators rebuild one module many times (fits, unpickling).

The generated module imports torch when it is loaded; this module imports nothing heavy.
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

# The compiler loads in `load` and `spec_source`: importing this module costs nothing, so a
# script that only imports a generated file (examples/bench_startup.py's torch process) stays a
# plain torch process.
if TYPE_CHECKING:
    from torch import nn

    from nscompile.compiler.pipeline import Compiled
    from nscompile.lang import syntax

_PREFIX = "nscompile_generated_"
_CACHE_SIZE = 64  # modules kept by load_source; each is a few classes
_names = itertools.count()
_lock = threading.Lock()
_cache: OrderedDict[str, ModuleType] = OrderedDict()


def _import(name: str, path: Path) -> ModuleType:
    """Import the file at `path` as a module called `name`, outside `sys.modules`."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _fresh_name() -> str:
    with _lock:
        return f"{_PREFIX}{next(_names)}"


def load_file(path: str | os.PathLike[str]) -> ModuleType:
    """A generated model.py -> a newly imported module (the file stays where it is).

    Raises OSError when the file cannot be read.
    """
    return _import(_fresh_name(), Path(path))


def load_source(source: str) -> ModuleType:
    """Generated PyTorch source -> its module; the same source gives the same module."""
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    with _lock:
        if digest in _cache:
            _cache.move_to_end(digest)
            return _cache[digest]
        name = f"{_PREFIX}{next(_names)}"
        with tempfile.TemporaryDirectory(prefix="nscompile-") as directory:
            path = Path(directory) / f"{name}.py"
            path.write_text(source, encoding="utf-8")
            module = _import(name, path)
        _cache[digest] = module
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
        return module


def spec_source(spec: str | os.PathLike[str] | syntax.Spec) -> tuple[str, str]:
    """A spec as a path, spec text or AST -> (spec text, file name for messages).

    A string holding a `{` is spec text (every declaration has one), any other string a path.
    Raises SpecError E003 for a path that cannot be read, ValueError for any other type.
    """
    from nscompile.lang import syntax
    from nscompile.lang.source import read_source
    from nscompile.lang.unparse import unparse

    if isinstance(spec, syntax.Spec):
        return unparse(spec), "<ast>"
    if isinstance(spec, os.PathLike):
        return read_source(os.fspath(spec)), os.fspath(spec)
    if isinstance(spec, str):
        if "{" in spec:
            return spec, "<string>"
        return read_source(spec), spec
    raise ValueError(
        f"spec must be a path, spec text or a nscompile.lang.syntax.Spec, got {type(spec).__name__}"
    )


@dataclass(frozen=True)
class LoadedSpec:
    """A compiled spec with its generated PyTorch module imported.

    Attributes:
        compiled: every compiler stage's result (`compiled.source` is the spec text).
        source: the generated PyTorch source (what `nscompile SPEC -o model.py` writes).
        module: the generated module's namespace: one class per neuron and network,
            `NETWORKS` and `build`.
    """

    compiled: Compiled
    source: str
    module: ModuleType

    @property
    def networks(self) -> tuple[str, ...]:
        """The spec's network names, in declaration order."""
        return tuple(self.module.NETWORKS)

    def build(self, network: str | None = None) -> nn.Module:
        """A freshly initialised torch module of `network` (default: the spec's only network).

        Initialised from torch's global random state, as the generated `build` is: call
        `torch.manual_seed` first for a reproducible model. Raises ValueError for an unknown
        name, or when the spec has several networks and none is named.
        """
        return self.module.build(network)


def load(spec: str | os.PathLike[str] | syntax.Spec) -> LoadedSpec:
    """Compile a spec (a path, spec text or AST) and import its generated PyTorch module.

    Raises SpecError for anything wrong with the spec (`error.render(text)` formats it).
    """
    from nscompile.compiler.pipeline import compile_text, to_torch

    text, file = spec_source(spec)
    compiled = compile_text(text, file)
    source = to_torch(compiled)
    return LoadedSpec(compiled, source, load_source(source))
