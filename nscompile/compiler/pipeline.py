"""The one place that knows the stage order: source -> AST -> IR -> optimised IR -> code.

The IR is checked (`verify()`) after lowering and after every pass when `verify=True` is given
or the environment variable `NSCOMPILE_VERIFY` is set to anything but `0` (the tests set it):
a pass that breaks the IR is then an internal error that names the pass.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nscompile.errors import InputError, Span, SpecError, did_you_mean
from nscompile.lang import syntax
from nscompile.lang.check import check
from nscompile.lang.fold_gate import needs_fold
from nscompile.lang.parser import parse
from nscompile.lang.source import read_source

# The back half (SymPy, jinja2, onnx) loads in the functions that need it: `nscompile check` and
# `fmt` use only the front end, and ONNX's import alone takes longer than a whole check.
if TYPE_CHECKING:
    import numpy as np
    import onnx

    from nscompile.compiler.ir import NetworkIR, ProgramIR

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

#: Largest network compiled without `max_param_bytes`: 2 GiB of float32 parameters. Widths are
#: bounded one by one (`syntax.MAX_WIDTH`); their products are bounded here, before anything
#: allocates them (the ONNX initializers, the module a user builds).
MAX_PARAM_BYTES = 2 * 1024**3
FLOAT32_BYTES = 4
#: An ONNX file is one protobuf message, and protobuf refuses messages from 2 GiB on; the margin
#: holds the graph itself.
MAX_ONNX_PARAM_BYTES = 2 * 1024**3 - 16 * 1024**2
#: The debug flag: verify the IR between passes (a bit slower; off by default).
VERIFY_ENV = "NSCOMPILE_VERIFY"
#: The stage name of the unoptimised IR, beside the pass names (`nscompile ir --after lower`).
LOWERED = "lower"


@dataclass(frozen=True)
class Compiled:
    """Every stage's result for one spec."""

    source: str
    spec: syntax.Spec
    lowered: ProgramIR
    optimized: ProgramIR
    file: str = "<string>"


def source_name(path: str) -> str:
    """The spec's file name as it appears in generated headers: no directories, no odd bytes."""
    return _UNSAFE.sub("_", Path(path).name) or "spec"


def front_end(text: str, file: str = "<string>") -> syntax.Spec:
    """Source text -> checked and folded AST; raises SpecError."""
    spec = check(parse(text, file), file)
    if not needs_fold(spec):  # nothing can fold: no SymPy import for `nscompile check`
        return spec
    from nscompile.compiler.fold import fold

    return fold(spec)


def compile_text(
    text: str,
    file: str = "<string>",
    max_param_bytes: int | None = None,
    verify: bool | None = None,
) -> Compiled:
    """Source text -> all stages; raises SpecError for any problem with the spec.

    A network whose float32 parameters would take more than `max_param_bytes` (default
    `MAX_PARAM_BYTES`) is an error. `verify` checks the IR between passes (default: the
    `NSCOMPILE_VERIFY` environment variable).
    """
    from nscompile.compiler.lower import lower_program
    from nscompile.compiler.passes import optimize, verify_after

    verify = _verify_requested(verify)
    spec = front_end(text, file)
    lowered = lower_program(spec, source_name(file), text)
    if verify:
        verify_after("lowering", lowered)
    _check_sizes(spec, lowered, MAX_PARAM_BYTES if max_param_bytes is None else max_param_bytes)
    return Compiled(text, spec, lowered, optimize(lowered, verify=verify), file)


def _verify_requested(verify: bool | None) -> bool:
    if verify is not None:
        return verify
    return os.environ.get(VERIFY_ENV, "") not in ("", "0")


def stage_names() -> tuple[str, ...]:
    """`lower` (the unoptimised IR), then the passes' names in the order they run."""
    from nscompile.compiler.passes import PASS_NAMES

    return (LOWERED, *PASS_NAMES)


def check_stage(name: str) -> None:
    """Raise InputError, with a did-you-mean hint and the valid names, unless `name` is a stage."""
    names = stage_names()
    if name not in names:
        close = did_you_mean(name, names)
        known = f"known: {', '.join(names)}"
        raise InputError(f"unknown pass '{name}'", hint=f"{close} {known}" if close else known)


def ir_after(compiled: Compiled, stage: str, verify: bool | None = None) -> ProgramIR:
    """The IR after the pass called `stage` (`lower`: before any); InputError for other names."""
    from nscompile.compiler.passes import optimize, passes_through

    check_stage(stage)
    if stage == LOWERED:
        return compiled.lowered
    return optimize(compiled.lowered, passes_through(stage), _verify_requested(verify))


def _check_sizes(spec: syntax.Spec, program: ProgramIR, max_param_bytes: int) -> None:
    for network in program.networks:
        count = program.parameter_count(network)
        if count * FLOAT32_BYTES > max_param_bytes:
            raise SpecError(
                "E160",
                f"network '{network.name}' has {count:,} parameters "
                f"({_gib(count * FLOAT32_BYTES)} of float32), above the limit of "
                f"{_gib(max_param_bytes)}",
                spec.networks[network.name].name_span,
                hint="narrow its layers, or raise the limit with --max-param-bytes",
            )


def check_onnx_size(compiled: Compiled, network: NetworkIR) -> None:
    """Raise E162 when `network`'s weights cannot fit in one ONNX file; call before allocating."""
    count = compiled.optimized.parameter_count(network)
    if count * FLOAT32_BYTES > MAX_ONNX_PARAM_BYTES:
        raise SpecError(
            "E162",
            f"network '{network.name}' has {count:,} parameters "
            f"({_gib(count * FLOAT32_BYTES)} of float32): too many for one ONNX file",
            compiled.spec.networks[network.name].name_span,
            hint=f"an ONNX file holds less than 2 GiB; narrow its layers "
            f"(at most {MAX_ONNX_PARAM_BYTES // FLOAT32_BYTES:,} parameters)",
        )


def _gib(size: int) -> str:
    return f"{size / 1024**3:.3g} GiB"


def compile_file(path: str) -> Compiled:
    """A spec file -> all stages; raises SpecError for unreadable files too."""
    return compile_text(read_source(path), path)


def to_torch(compiled: Compiled) -> str:
    """The generated PyTorch module's source."""
    from nscompile.compiler.emit_torch import emit_torch

    return emit_torch(compiled.optimized)


def to_torch_unfused(compiled: Compiled) -> str:
    """The same module written the obvious way: no fusion, no CSE, sums added term by term.

    Every projection is its own matrix product and every product is taken term by term; the
    parameters (names, shapes, initialisation) are the optimised module's, so state dicts move
    between the two. `nscompile bench` measures the generated module against it.
    """
    from nscompile.compiler.emit_torch import emit_torch

    return emit_torch(ir_after(compiled, "canonicalise"), accumulate=False)


def select_network(compiled: Compiled, name: str | None) -> NetworkIR:
    """The network called `name`, or the only one; InputError when that is ambiguous."""
    networks = {n.name: n for n in compiled.optimized.networks}
    if name is None:
        if len(networks) == 1:
            return next(iter(networks.values()))
        if not networks:
            raise SpecError(
                "E161",
                "the spec declares no network",
                _end_of(compiled.source, compiled.file),
                hint="ONNX holds a network: add one, e.g. "
                "'network net { input 4  dense 1 NEURON  task regression }'",
            )
        raise InputError(
            f"the spec declares {len(networks)} networks",
            hint=f"choose one with --network: {sorted(networks)}",
        )
    if name not in networks:
        raise InputError(f"the spec has no network '{name}'", hint=f"networks: {sorted(networks)}")
    return networks[name]


def _end_of(source: str, file: str) -> Span:
    """Just past the last character of `source`: where a missing declaration would go."""
    lines = source.rstrip().splitlines() or [""]
    return Span.point(file, len(lines), len(lines[-1]) + 1)


def to_onnx(
    compiled: Compiled, network: NetworkIR, weights: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """The ONNX model of `network`, with `weights` (a state dict as arrays) as initializers."""
    from nscompile.compiler.emit_onnx import emit_onnx

    return emit_onnx(compiled.optimized, network, weights)
