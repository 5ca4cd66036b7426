"""Every tree walker handles every node type it can meet (nscompile/visitor.py).

IR walkers: `ir.NODE_TYPES` is exactly the set of matrix node types that compiling the examples
and the fuzzing campaign's valid specs reaches (after lowering and after every pass), and every IR
walker has a handler for each. AST walkers: every expression dataclass of `syntax.Expr`, and
every statement for the statement walkers. A new node type fails here before any input finds it.
"""

from __future__ import annotations

import typing

import fuzz
import pytest
import sympy as sp

from nscompile.bench import tnlearn_notation
from nscompile.compiler import fold, ir, lower
from nscompile.compiler.conv_printer import ConvPrinter
from nscompile.compiler.emit_onnx import _NeuronLowering
from nscompile.compiler.emit_onnx_conv import _ConvLowering
from nscompile.compiler.flops import _Flops
from nscompile.compiler.interpret import _Evaluator
from nscompile.compiler.torch_printer import TorchPrinter
from nscompile.errors import InternalError, SpecError
from nscompile.lang import check, fold_gate, syntax, unparse
from nscompile.visitor import Visitor

IR_WALKERS = [TorchPrinter, ConvPrinter, _NeuronLowering, _ConvLowering, _Evaluator, _Flops]
EXPRESSIONS = typing.get_args(syntax.Expr)
STATEMENTS = typing.get_args(syntax.NeuronStmt) + typing.get_args(syntax.NetworkStmt)
# walker -> the expression types it must handle; `_InputSamples` evaluates input-wide
# expressions, where a learnable term `<w, e>` cannot occur (check rejects it: E122).
AST_WALKERS: dict[type[Visitor], tuple[type, ...]] = {
    unparse._Expressions: EXPRESSIONS,
    check._Scope: EXPRESSIONS,
    fold_gate._Degree: EXPRESSIONS,
    fold_gate._MentionsX: EXPRESSIONS,
    syntax._Children: EXPRESSIONS,
    fold._Folder: EXPRESSIONS,
    lower._Lowerer: EXPRESSIONS,
    lower._InputSamples: tuple(t for t in EXPRESSIONS if t is not syntax.Inner),
    unparse._Statements: STATEMENTS,
    check._Layers: typing.get_args(syntax.NetworkStmt),
    tnlearn_notation._Terms: EXPRESSIONS,
    tnlearn_notation._Argument: EXPRESSIONS,
}


@pytest.fixture(scope="module")
def reachable() -> set[type]:
    """The matrix node types in the IR after lowering and after every pass, for every valid
    fuzz seed (the examples among them)."""
    from nscompile.compiler.passes import PASSES
    from nscompile.compiler.pipeline import compile_text

    found: set[type] = set()
    for text in fuzz.seeds(generated=40)[0]:
        try:
            compiled = compile_text(text, "seed.ns")
        except SpecError:
            continue
        lowered = compiled.lowered
        for neuron in lowered.neurons + lowered.conv_neurons + lowered.term_bn_neurons:
            found |= _matrix_types(neuron)
            for _, run in PASSES:
                neuron = run(neuron)
                found |= _matrix_types(neuron)
    return found


def _matrix_types(neuron: ir.NeuronIR) -> set[type]:
    exprs = [e for _, e in neuron.assignments] + [neuron.output]
    return {
        type(n) for e in exprs for n in sp.preorder_traversal(e) if isinstance(n, sp.MatrixExpr)
    }


def test_the_ir_node_types_are_exactly_those_compilation_reaches(reachable: set[type]) -> None:
    declared = set(ir.NODE_TYPES)
    assert not reachable - declared, f"reachable but not in ir.NODE_TYPES: {reachable - declared}"
    assert not declared - reachable, f"in ir.NODE_TYPES but never reached: {declared - reachable}"


@pytest.mark.parametrize("walker", IR_WALKERS, ids=lambda w: w.__name__)
def test_every_ir_walker_handles_every_ir_node_type(walker: type[Visitor]) -> None:
    missing = [t.__name__ for t in ir.NODE_TYPES if not walker.handles(t)]
    assert not missing, f"{walker.__name__} has no handler for {missing}"


@pytest.mark.parametrize("walker", list(AST_WALKERS), ids=lambda w: w.__name__)
def test_every_ast_walker_handles_every_node_type(walker: type[Visitor]) -> None:
    missing = [t.__name__ for t in AST_WALKERS[walker] if not walker.handles(t)]
    assert not missing, f"{walker.__name__} has no handler for {missing}"


def test_every_visitor_is_listed() -> None:
    """A new walker of the AST or the IR joins the lists above."""

    def subclasses(cls: type) -> set[type]:
        return {c for s in cls.__subclasses__() for c in {s} | subclasses(s)}

    assert subclasses(Visitor) >= set(IR_WALKERS) | set(AST_WALKERS)
    unlisted = subclasses(Visitor) - set(IR_WALKERS) - set(AST_WALKERS)
    assert not {c for c in unlisted if c.__module__.startswith("nscompile")}, unlisted


class _Base:
    pass


class _Derived(_Base):
    pass


class _Other:
    pass


class _Walker(Visitor):
    def _visit__Base(self, node: _Base, suffix: str) -> str:
        return "base" + suffix


def test_dispatch_follows_the_mro_and_passes_extra_arguments() -> None:
    assert _Walker().visit(_Derived(), "!") == "base!"
    assert _Walker.handles(_Derived) and not _Walker.handles(_Other)


def test_an_unknown_node_names_its_class_and_the_visitor() -> None:
    with pytest.raises(InternalError, match=r"_Walker has no handler for _Other"):
        _Walker().visit(_Other(), "")
