"""Fused storage: parameters a neuron's forward only ever uses side by side, stored side by side.

Projection fusion and sum fusion leave concatenations of parameters in the IR (`HStack(cp2_u1,
cp2_u2, ...)`, `VStack(cp2_a, cp3_a)`, `HStack(wg.T, wr.T)`). Concatenating them on every call
is work that does not scale with the batch (a kernel forward, a split backward, per layer and
call), so the PyTorch backend stores each such group as one parameter in the concatenated layout
and exposes its members as views (`layer.cp2_u1` is a slice of `layer._fused0`); the state dict
keeps the members' own keys, so saved weights, the unfused compile and the ONNX backend see the
same tensors as before. This module decides the groups; `emit_torch` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp
from sympy import MatAdd, MatMul, MatrixSymbol, Transpose

from nscompile.compiler.ir import HStack, NeuronIR, Param, VStack, is_gemm, product_factors

#: Stored names start with `_`, which no spec identifier may: they cannot collide.
PREFIX = "_fused"


@dataclass(frozen=True)
class Member:
    """One parameter inside a fused group: rows or columns `start:stop` of the stored tensor."""

    param: Param
    transposed: bool  # the group holds `param.T`
    start: sp.Expr
    stop: sp.Expr


@dataclass(frozen=True)
class Group:
    """A stored parameter: the concatenation `node` (dim 1 for HStack, 0 for VStack)."""

    name: str
    node: HStack | VStack
    dim: int
    members: tuple[Member, ...]
    #: For the output sum's group: its GEMM terms `L @ R`, each with R's rows `(start, stop)`.
    terms: tuple[tuple[MatMul, sp.Expr, sp.Expr], ...] = ()

    @property
    def shape(self) -> tuple[sp.Expr, sp.Expr]:
        return self.node.shape


def fused_groups(neuron: NeuronIR) -> list[Group]:
    """The concatenations of whole parameters in `neuron`, each parameter in at most one group,
    in order of first appearance; a concatenation that shares a parameter with an earlier group
    stays a concatenation per call."""
    params = {p.symbol: p for p in neuron.params if len(p.shape) == 2}
    groups: list[Group] = []
    taken: set[str] = set()
    seen: set[sp.Basic] = set()
    output = output_group(neuron.output, params)
    if output is not None:
        groups.append(output)
        taken |= {m.param.name for m in output.members}
    for expr in [e for _, e in neuron.assignments] + [neuron.output]:
        for node in sp.preorder_traversal(expr):
            if not isinstance(node, HStack | VStack) or node in seen:
                continue
            seen.add(node)
            members = _members(node, params)
            if members is None or taken & {m.param.name for m in members}:
                continue
            taken |= {m.param.name for m in members}
            dim = 1 if isinstance(node, HStack) else 0
            groups.append(Group(f"{PREFIX}{len(groups)}", node, dim, members))
    return groups


def _members(node: HStack | VStack, params: dict[MatrixSymbol, Param]) -> tuple[Member, ...] | None:
    """The members of a concatenation of parameters (or their transposes); None otherwise."""
    dim = 1 if isinstance(node, HStack) else 0
    members, offset = [], sp.Integer(0)
    for arg in node.args:
        transposed = isinstance(arg, Transpose)
        symbol = arg.arg if transposed else arg
        if symbol not in params:
            return None
        size = arg.shape[dim]
        members.append(Member(params[symbol], transposed, offset, offset + size))
        offset = offset + size
    names = [m.param.name for m in members]
    return tuple(members) if len(set(names)) == len(names) else None


def output_terms(output: sp.Basic) -> list[MatMul]:
    """The terms of the output sum that are `L @ R` products (coefficient 1), in order."""
    if not isinstance(output, MatAdd):
        return []
    return [t for t in output.args if is_gemm(t) and product_factors(t)[0] == 1]


def output_group(output: sp.Basic, params: dict[MatrixSymbol, Param]) -> Group | None:
    """The right sides of the output sum's GEMM terms (`x W1.T + x**2 W2.T + P [A2; A3]`),
    stacked as one parameter `[W1.T; W2.T; A2; A3]`: one GEMM over `[x | x**2 | P]` then needs
    no concatenation of weights, and the term-by-term GEMMs read row slices of it. None when
    fewer than two terms qualify or a right side is not made of whole parameters."""
    terms = output_terms(output)
    if len(terms) < 2:
        return None
    pieces: list[sp.Basic] = []
    for term in terms:
        right = product_factors(term)[1][1]
        pieces += list(right.args) if isinstance(right, VStack) else [right]
    node = VStack(*pieces)
    members = _members(node, params)
    if members is None:
        return None
    rows, offset = [], sp.Integer(0)
    for term in terms:
        size = product_factors(term)[1][1].shape[0]
        rows.append((term, offset, offset + size))
        offset = offset + size
    return Group(f"{PREFIX}0", node, 0, members, tuple(rows))
