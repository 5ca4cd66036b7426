"""The one place that knows the stage order: source -> AST -> IR -> optimised IR -> code."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from nscompile import syntax
from nscompile.check import check
from nscompile.emit_torch import emit_torch
from nscompile.ir import ProgramIR
from nscompile.lower import lower_program
from nscompile.optimize import optimize
from nscompile.parser import parse, read_source

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
    return check(parse(text, file))


def compile_text(text: str, file: str = "<string>") -> Compiled:
    """Source text -> all stages; raises SpecError for any problem with the spec."""
    spec = front_end(text, file)
    lowered = lower_program(spec, source_name(file), text)
    return Compiled(text, spec, lowered, optimize(lowered))


def compile_file(path: str) -> Compiled:
    """A spec file -> all stages; raises SpecError for unreadable files too."""
    return compile_text(read_source(path), path)


def to_torch(compiled: Compiled) -> str:
    """The generated PyTorch module's source."""
    return emit_torch(compiled.optimized)
