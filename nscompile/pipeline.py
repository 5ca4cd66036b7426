"""The one place that knows the stage order: source -> AST -> IR -> optimised IR -> code."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nscompile import syntax
from nscompile.check import check
from nscompile.errors import InputError
from nscompile.parser import parse, read_source

# The back half (SymPy, jinja2, onnx) loads in the functions that need it: `nscompile check` and
# `fmt` use only the front end, and ONNX's import alone takes longer than a whole check.
if TYPE_CHECKING:
    import numpy as np
    import onnx

    from nscompile.ir import NetworkIR, ProgramIR

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


@dataclass(frozen=True)
class Compiled:
    """Every stage's result for one spec."""

    source: str
    spec: syntax.Spec
    lowered: ProgramIR
    optimized: ProgramIR


def source_name(path: str) -> str:
    """The spec's file name as it appears in generated headers: no directories, no odd bytes."""
    return _UNSAFE.sub("_", Path(path).name) or "spec"


def front_end(text: str, file: str = "<string>") -> syntax.Spec:
    """Source text -> checked AST; raises SpecError."""
    return check(parse(text, file), file)


def compile_text(text: str, file: str = "<string>") -> Compiled:
    """Source text -> all stages; raises SpecError for any problem with the spec."""
    from nscompile.lower import lower_program
    from nscompile.optimize import optimize

    spec = front_end(text, file)
    lowered = lower_program(spec, source_name(file), text)
    return Compiled(text, spec, lowered, optimize(lowered))


def compile_file(path: str) -> Compiled:
    """A spec file -> all stages; raises SpecError for unreadable files too."""
    return compile_text(read_source(path), path)


def to_torch(compiled: Compiled) -> str:
    """The generated PyTorch module's source."""
    from nscompile.emit_torch import emit_torch

    return emit_torch(compiled.optimized)


def to_torch_unfused(compiled: Compiled) -> str:
    """The same module written the obvious way: no fusion, no CSE, sums added term by term.

    Every projection is its own matrix product and every product is taken term by term; the
    parameters (names, shapes, initialisation) are the optimised module's, so state dicts move
    between the two. `nscompile bench` measures the generated module against it.
    """
    from nscompile.emit_torch import emit_torch
    from nscompile.optimize import canonicalise, inline, optimize

    return emit_torch(optimize(compiled.lowered, (inline, canonicalise)), accumulate=False)


def select_network(compiled: Compiled, name: str | None) -> NetworkIR:
    """The network called `name`, or the only one; InputError when that is ambiguous."""
    networks = {n.name: n for n in compiled.optimized.networks}
    if name is None:
        if len(networks) == 1:
            return next(iter(networks.values()))
        if not networks:
            raise InputError("the spec declares no network", hint="add a `network NAME { ... }`")
        raise InputError(
            f"the spec declares {len(networks)} networks",
            hint=f"choose one with --network: {sorted(networks)}",
        )
    if name not in networks:
        raise InputError(f"the spec has no network '{name}'", hint=f"networks: {sorted(networks)}")
    return networks[name]


def to_onnx(
    compiled: Compiled, network: NetworkIR, weights: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """The ONNX model of `network`, with `weights` (a state dict as arrays) as initializers."""
    from nscompile.emit_onnx import emit_onnx

    return emit_onnx(compiled.optimized, network, weights)
