"""ONNX backend: an optimised ProgramIR and a state dict -> one ONNX graph per network.

Built node by node from the IR (not through `torch.onnx.export`): each IR node type has one
lowering below, sizes are concrete per layer, the batch dimension stays symbolic. Opset and IR
version are pinned: onnxruntime 1.2x-1.3x accept IR version 8 / opset 18 everywhere.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import onnx
import sympy as sp
from onnx import TensorProto, helper, numpy_helper
from sympy import HadamardPower, HadamardProduct, MatAdd, MatMul, OneMatrix, Transpose

from nscompile import __version__
from nscompile.compiler import ops
from nscompile.compiler.ir import (
    IN,
    OUT,
    Apply,
    ColumnSlice,
    HStack,
    NetworkIR,
    NeuronIR,
    ProgramIR,
    VStack,
    product_factors,
)
from nscompile.errors import InputError, InternalError

OPSET = 18
IR_VERSION = 8
INPUT_NAME = "input"
OUTPUT_NAME = "output"
BATCH_DIM = "batch"


def expected_shapes(program: ProgramIR, network: NetworkIR) -> dict[str, tuple[int, ...]]:
    """State-dict key -> tensor shape, for the generated module of `network`."""
    neurons = {n.name: n for n in program.neurons}
    shapes: dict[str, tuple[int, ...]] = {}
    for index, layer in enumerate(network.layers, start=1):
        if layer.neuron is None:
            shapes[f"layer{index}.weight"] = (layer.out_features, layer.in_features)
            shapes[f"layer{index}.bias"] = (layer.out_features,)
            continue
        dims = {IN: layer.in_features, OUT: layer.out_features}
        for param in neurons[layer.neuron].params:
            shape = tuple(int(sp.sympify(s).subs(dims)) for s in param.shape)
            shapes[f"layer{index}.{param.name}"] = shape
    return shapes


def check_weights(
    program: ProgramIR, network: NetworkIR, weights: Mapping[str, np.ndarray]
) -> None:
    """Raise InputError naming any missing, extra or wrongly shaped tensor."""
    expected = expected_shapes(program, network)
    missing = sorted(set(expected) - set(weights))
    extra = sorted(set(weights) - set(expected))
    if missing:
        raise InputError(
            f"the weights lack tensor '{missing[0]}' (shape {expected[missing[0]]})"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
            hint=f"save the state dict of build('{network.name}') from this spec",
        )
    if extra:
        raise InputError(
            f"the weights have tensor '{extra[0]}' that network '{network.name}' does not have",
            hint="were they trained with another spec?",
        )
    for key, shape in expected.items():
        actual = tuple(np.shape(weights[key]))
        if actual != shape:
            raise InputError(f"tensor '{key}' has shape {actual}; the spec needs {shape}")


def emit_onnx(
    program: ProgramIR, network: NetworkIR, weights: Mapping[str, np.ndarray]
) -> onnx.ModelProto:
    """Build, check and return the ONNX model of `network` with `weights` as initializers."""
    check_weights(program, network, weights)
    graph = GraphBuilder()
    for key in sorted(weights):
        graph.initializer(key, np.asarray(weights[key], dtype=np.float32))
    neurons = {n.name: n for n in program.neurons}
    h = INPUT_NAME
    for index, layer in enumerate(network.layers, start=1):
        prefix = f"layer{index}"
        if layer.neuron is None:
            h = graph.node("Gemm", [h, f"{prefix}.weight", f"{prefix}.bias"], transB=1)
        else:
            neuron = neurons[layer.neuron]
            dims = {IN: layer.in_features, OUT: layer.out_features}
            h = _NeuronLowering(graph, neuron, prefix, dims).run(h)
        h = _activation(graph, layer.activation, h)
    graph.node("Identity", [h], output=OUTPUT_NAME)
    model = graph.model(network, program)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


class GraphBuilder:
    """Collects nodes and initializers with deterministic names, all starting with `prefix`
    (`deploy_onnx` adds nodes around a network's graph under its own prefix)."""

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.constants: dict[tuple[str, bytes], str] = {}
        self.count = 0

    def fresh(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}{hint}_{self.count}"

    def initializer(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def constant(self, value: float | list[float] | np.ndarray, dtype: type = np.float32) -> str:
        array = np.asarray(value, dtype=dtype)
        key = (str(array.dtype), array.tobytes() + str(array.shape).encode())
        if key not in self.constants:
            name = f"{self.prefix}const_{len(self.constants)}"
            self.constants[key] = self.initializer(name, array)
        return self.constants[key]

    def node(
        self,
        op: str,
        inputs: list[str],
        output: str | None = None,
        domain: str | None = None,
        **attrs: object,
    ) -> str:
        out = output or self.fresh(op.lower())
        name = f"{self.prefix}n{len(self.nodes)}"
        self.nodes.append(helper.make_node(op, inputs, [out], name=name, domain=domain, **attrs))
        return out

    def model(self, network: NetworkIR, program: ProgramIR) -> onnx.ModelProto:
        width = network.layers[-1].out_features
        graph = helper.make_graph(
            self.nodes,
            network.name,
            [
                helper.make_tensor_value_info(
                    INPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, network.input_width]
                )
            ],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, [BATCH_DIM, width])],
            self.initializers,
        )
        model = helper.make_model(
            graph,
            opset_imports=[helper.make_opsetid("", OPSET)],
            ir_version=IR_VERSION,
            producer_name="nscompile",
            producer_version=__version__,
        )
        used = {layer.neuron for layer in network.layers}
        formulas = "; ".join(
            f"{n.name}: y = {n.formula}" for n in program.neurons if n.name in used
        )
        metadata = {
            "nscompile.version": __version__,
            "nscompile.spec": program.source_name,
            "nscompile.spec_sha256": program.source_sha256,
            "nscompile.network": network.name,
            "nscompile.summary": network.summary,
            "nscompile.formula": formulas,
            "nscompile.task": network.task,
        }
        helper.set_model_props(model, metadata)
        return model


def _activation(graph: GraphBuilder, name: str, h: str) -> str:
    if name == "identity":
        return h
    if name == "silu":
        return graph.node("Mul", [h, graph.node("Sigmoid", [h])])
    if name == "gelu":  # exact gelu, as torch's default: x * (1 + erf(x / sqrt 2)) / 2
        scaled = graph.node("Mul", [h, graph.constant(1 / np.sqrt(2.0))])
        erf = graph.node("Add", [graph.node("Erf", [scaled]), graph.constant(1.0)])
        return graph.node("Mul", [graph.node("Mul", [h, erf]), graph.constant(0.5)])
    for op in ops.ACTIVATIONS[name].onnx:
        h = graph.node(op, [h])
    return h


class _NeuronLowering:
    """Lowers one neuron's IR into nodes, for one layer with concrete sizes."""

    def __init__(self, graph: GraphBuilder, neuron: NeuronIR, prefix: str, dims: dict) -> None:
        self.graph = graph
        self.neuron = neuron
        self.prefix = prefix
        self.dims = dims
        self.values: dict[sp.Basic, str] = {p.symbol: f"{prefix}.{p.name}" for p in neuron.params}

    def run(self, h: str) -> str:
        self.values[self.neuron.input] = h
        for target, expr in self.neuron.assignments:
            self.values[target] = self.lower(expr)
        return self.lower(self.neuron.output)

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def lower(self, expr: sp.Basic) -> str:
        if expr in self.values:
            return self.values[expr]
        handler = _LOWERINGS.get(type(expr))
        if handler is not None:
            return handler(self, expr)
        if isinstance(expr, sp.Expr) and expr.is_number:
            return self.graph.constant(float(expr))
        raise InternalError(f"no ONNX lowering for {type(expr).__name__}: {expr}")

    def chain(self, op: str, args: list[str]) -> str:
        result = args[0]
        for arg in args[1:]:
            result = self.graph.node(op, [result, arg])
        return result

    def matmul(self, node: MatMul) -> str:
        coefficient, matrices = product_factors(node)
        scalar = float(coefficient)
        if all(isinstance(m, OneMatrix) for m in matrices):
            return self.graph.constant(scalar)
        result = self.chain("MatMul", [self.lower(m) for m in matrices])
        return (
            result if scalar == 1 else self.graph.node("Mul", [result, self.graph.constant(scalar)])
        )

    def power(self, node: HadamardPower) -> str:
        base, k = self.lower(node.base), int(node.exp)
        if k == 2:
            return self.graph.node("Mul", [base, base])
        return self.graph.node("Pow", [base, self.graph.constant(float(k))])

    def apply(self, node: Apply) -> str:
        value = self.lower(node.arg)
        for op in ops.ELEMENTWISE[node.name].onnx:
            value = self.graph.node(op, [value])
        return value

    def column_slice(self, node: ColumnSlice) -> str:
        mat, start, stop = node.args
        bounds = [self.graph.constant([self.size(b)], np.int64) for b in (start, stop)]
        return self.graph.node(
            "Slice", [self.lower(mat), *bounds, self.graph.constant([1], np.int64)]
        )


_LOWERINGS: dict[type, Callable[[_NeuronLowering, sp.Basic], str]] = {
    Transpose: lambda lw, n: lw.graph.node("Transpose", [lw.lower(n.arg)], perm=[1, 0]),
    MatMul: _NeuronLowering.matmul,
    MatAdd: lambda lw, n: lw.chain("Add", [lw.lower(a) for a in n.args]),
    HadamardProduct: lambda lw, n: lw.chain("Mul", [lw.lower(a) for a in n.args]),
    HadamardPower: _NeuronLowering.power,
    Apply: _NeuronLowering.apply,
    HStack: lambda lw, n: lw.graph.node("Concat", [lw.lower(a) for a in n.args], axis=1),
    VStack: lambda lw, n: lw.graph.node("Concat", [lw.lower(a) for a in n.args], axis=0),
    ColumnSlice: _NeuronLowering.column_slice,
    OneMatrix: lambda lw, n: lw.graph.constant(1.0),  # a constant broadcast over the batch
}  # type: ignore[dict-item]
