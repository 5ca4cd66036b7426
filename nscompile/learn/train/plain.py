"""The baselines of an image network: the same network with plain layers, and one of about its
parameter count.

`plain` is the spec's network with every neuron taken out (a conv layer becomes `nn.Conv2d`,
both convs of a block plain convs, a dense neuron layer `nn.Linear`; a per-term BatchNorm,
`bn=terms`, becomes the plain conv's one BatchNorm): it differs from the
network it is compared with in its neurons only. `plain-params` scales that network's widths
(every conv, block and hidden dense layer; not the head) by one factor so that it has about as
many parameters as the task-driven one. Both are written as specs and compiled like any
other, so their modules are generated code too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from torch import nn

from nscompile.compiler.pipeline import compile_text, to_torch
from nscompile.lang import syntax as s
from nscompile.lang.unparse import unparse
from nscompile.learn.loader import load_source


def plain_spec(spec: s.Spec, network: str, scale: float = 1.0) -> s.Spec:
    """The spec holding only `network`, with its neurons taken out and its widths scaled."""
    net = spec.networks[network]
    neurons = set(spec.neurons)
    last = max(i for i, stmt in enumerate(net.body) if isinstance(stmt, s.Dense))

    def width(value: int) -> int:
        return max(1, round(value * scale))

    body: list[s.NetworkStmt] = []
    for index, stmt in enumerate(net.body):
        if isinstance(stmt, s.Conv | s.Block):
            options = tuple(
                _plain_bn(o, isinstance(stmt, s.Block))
                for o in stmt.options
                if not _is_neuron(o, neurons)
            )
            options = tuple(o for o in options if o is not None)
            stmt = dataclasses.replace(stmt, width=width(stmt.width), options=options)
        elif isinstance(stmt, s.Dense):
            scaled = stmt.width if index == last else width(stmt.width)
            stmt = dataclasses.replace(stmt, width=scaled, neuron=None)
        body.append(stmt)
    return s.Spec((dataclasses.replace(net, body=tuple(body)),))


def _plain_bn(option: s.Option, block: bool) -> s.Option | None:
    """`bn=terms` of a conv without its neuron is its one BatchNorm (`bn`); a block's plain
    convs have theirs anyway, so there it goes."""
    if option.key != s.BN_WORD or option.value is None:
        return option
    return None if block else dataclasses.replace(option, value=None)


def _is_neuron(option: s.Option, neurons: set[str]) -> bool:
    """A neuron word (`td`), or a block's `first=`/`second=` choice (plain is the default)."""
    return (option.value is None and option.key in neurons) or option.key in ("first", "second")


def plain_baseline(
    spec: s.Spec, network: str, target: int | None
) -> tuple[Callable[[], nn.Module], list[int]]:
    """A factory of the plain network (`target` None) or of the one with about `target`
    parameters, and its layer widths."""
    scale = 1.0 if target is None else _matched_scale(spec, network, target)
    plain = plain_spec(spec, network, scale)
    text = unparse(plain)
    module = load_source(to_torch(compile_text(text, "plain.ns")))
    widths = [stmt.width for stmt in plain.networks[network].stages if hasattr(stmt, "width")]
    return (lambda: module.build(network)), widths[:-1]


def _parameters(spec: s.Spec, network: str, scale: float) -> int:
    compiled = compile_text(unparse(plain_spec(spec, network, scale)), "plain.ns")
    return compiled.optimized.parameter_count(compiled.optimized.networks[0])


def _matched_scale(spec: s.Spec, network: str, target: int) -> float:
    """The width factor whose plain network is closest to `target` parameters (bisection on
    the logarithm; the count only grows with the factor)."""
    low, high = 1 / 64, 64.0
    for _ in range(30):
        mid = (low * high) ** 0.5
        if _parameters(spec, network, mid) < target:
            low = mid
        else:
            high = mid
    return min((low, high), key=lambda k: abs(_parameters(spec, network, k) - target))
