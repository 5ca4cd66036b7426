"""ONNX backend: an optimised ProgramIR and a state dict -> one ONNX graph per network.

Built node by node from the IR (not through `torch.onnx.export`): each IR node type has one
lowering below, sizes are concrete per layer, the batch dimension stays symbolic. Opset and IR
version are pinned: onnxruntime 1.2x-1.3x accept IR version 8 / opset 18 everywhere. An image
network's conv stages, pooling and residual blocks are lowered by `emit_onnx_conv`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import onnx
import sympy as sp
from onnx import TensorProto, helper, numpy_helper
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
)

from nscompile import __version__
from nscompile.compiler import emit_onnx_conv, ops
from nscompile.compiler.ir import (
    IN,
    OUT,
    Apply,
    BatchNorm,
    ColumnSlice,
    HStack,
    LayerIR,
    NetworkIR,
    NeuronIR,
    Patches,
    ProgramIR,
    QuadForm,
    SqDist,
    VStack,
    product_factors,
    stage_neurons,
)
from nscompile.errors import InputError, InternalError
from nscompile.lang.naming import layer_key
from nscompile.visitor import Visitor

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
        if isinstance(layer, LayerIR):
            shapes |= _dense_shapes(neurons, index, layer)
        else:
            shapes |= emit_onnx_conv.stage_shapes(program, index, layer)
    return shapes


def _dense_shapes(
    neurons: Mapping[str, NeuronIR], index: int, layer: LayerIR
) -> dict[str, tuple[int, ...]]:
    if layer.neuron is None:
        return {
            layer_key(index, "weight"): (layer.out_features, layer.in_features),
            layer_key(index, "bias"): (layer.out_features,),
        }
    dims = {IN: layer.in_features, OUT: layer.out_features}
    return {
        layer_key(index, param.name): tuple(int(sp.sympify(s).subs(dims)) for s in param.shape)
        for param in neurons[layer.neuron].params
    }


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
    """Build, check and return the ONNX model of `network` with `weights` as initializers.

    A network of feature rows has every weight as an initializer, under its state-dict key. A
    network of images (`emit_onnx_conv`: conv stages, pooling, residual blocks, BatchNorm
    folded into the conv weights where that is exact) has those its nodes read: its dense
    layers' tensors under their keys, and tensors computed from the conv stages' weights.
    """
    check_weights(program, network, weights)
    graph = GraphBuilder()
    image = network.image is not None
    if not image:
        for key in sorted(weights):
            graph.initializer(key, np.asarray(weights[key], dtype=np.float32))
    neurons = {n.name: n for n in program.neurons}
    h = INPUT_NAME
    for index, layer in enumerate(network.layers, start=1):
        if not isinstance(layer, LayerIR):
            h = emit_onnx_conv.lower_stage(graph, program, index, layer, weights, h)
            continue
        if image:
            for key in sorted(_dense_shapes(neurons, index, layer)):
                graph.initializer(key, np.asarray(weights[key], dtype=np.float32))
        if layer.neuron is None:
            weight, bias = layer_key(index, "weight"), layer_key(index, "bias")
            h = graph.node("Gemm", [h, weight, bias], transB=1)
        else:
            neuron = neurons[layer.neuron]
            dims = {IN: layer.in_features, OUT: layer.out_features}
            h = _NeuronLowering(graph, neuron, index, dims).run(h)
        h = ops.ACTIVATIONS[layer.activation].onnx(graph, h)
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
        shape = [BATCH_DIM, *(network.image or (network.input_width,))]
        graph = helper.make_graph(
            self.nodes,
            network.name,
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, shape)],
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
        used = {name for layer in network.layers for name in stage_neurons(layer)}
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


class _NeuronLowering(Visitor):
    """Lowers one neuron's IR into nodes, for one layer with concrete sizes."""

    def __init__(self, graph: GraphBuilder, neuron: NeuronIR, index: int, dims: dict) -> None:
        self.graph = graph
        self.neuron = neuron
        self.dims = dims
        # The parameters are the initializers the state dict names, as the torch module does.
        self.values: dict[sp.Basic, str] = {
            p.symbol: layer_key(index, p.name) for p in neuron.params
        }

    def run(self, h: str) -> str:
        self.values[self.neuron.input] = h
        for target, expr in self.neuron.assignments:
            self.values[target] = self.lower(expr)
        return self.lower(self.neuron.output)

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def lower(self, expr: sp.Basic) -> str:
        """IR expression -> the name of the value holding it: a symbol's, or a new node's."""
        if expr in self.values:
            return self.values[expr]
        return self.visit(expr)

    def chain(self, op: str, args: list[str]) -> str:
        result = args[0]
        for arg in args[1:]:
            result = self.graph.node(op, [result, arg])
        return result

    def _visit_MatMul(self, node: MatMul) -> str:
        coefficient, matrices = product_factors(node)
        scalar = float(coefficient)
        if all(isinstance(m, OneMatrix) for m in matrices):
            return self.graph.constant(scalar)
        result = self.chain("MatMul", [self.lower(m) for m in matrices])
        return (
            result if scalar == 1 else self.graph.node("Mul", [result, self.graph.constant(scalar)])
        )

    def _visit_HadamardPower(self, node: HadamardPower) -> str:
        base, k = self.lower(node.base), int(node.exp)
        if k == 2:
            return self.graph.node("Mul", [base, base])
        return self.graph.node("Pow", [base, self.graph.constant(float(k))])

    def _visit_Apply(self, node: Apply) -> str:
        return ops.ELEMENTWISE[node.name].onnx(self.graph, self.lower(node.arg))

    def _visit_ColumnSlice(self, node: ColumnSlice) -> str:
        mat, start, stop = node.args
        bounds = [self.graph.constant([self.size(b)], np.int64) for b in (start, stop)]
        return self.graph.node(
            "Slice", [self.lower(mat), *bounds, self.graph.constant([1], np.int64)]
        )

    def _visit_MatrixSymbol(self, node: MatrixSymbol) -> str:
        raise InternalError(f"{node} has no value")  # inputs and parameters are in `values`

    def _visit_Transpose(self, node: Transpose) -> str:
        return self.graph.node("Transpose", [self.lower(node.arg)], perm=[1, 0])

    def _visit_Patches(self, node: Patches) -> str:
        # Only a conv-mode neuron's IR has patches; `emit_onnx_conv._ConvLowering` lowers it.
        raise InternalError(f"{self.neuron.name}: {node} in a dense layer's IR")

    def _visit_QuadForm(self, node: QuadForm) -> str:
        """a W_o a^T per unit: one `Einsum` over the weight as the state dict holds it."""
        rows = self.lower(node.arg)
        inputs = [rows, self.lower(node.weight), rows]
        return self.graph.node("Einsum", inputs, equation="bi,oij,bj->bo")

    def _visit_SqDist(self, node: SqDist) -> str:
        """|a|^2 - 2 a C^T + |C|^2: one `Gemm` (|C|^2 its bias) and the rows' sums of squares."""
        rows, centres = self.lower(node.arg), self.lower(node.centre)
        axes = self.graph.constant([1], np.int64)
        norms = self.graph.node("ReduceSum", [self.graph.node("Mul", [centres, centres]), axes],
                                keepdims=0)  # fmt: skip
        cross = self.graph.node("Gemm", [rows, centres, norms], alpha=-2.0, transB=1)
        squares = self.graph.node("ReduceSum", [self.graph.node("Mul", [rows, rows]), axes],
                                  keepdims=1)  # fmt: skip
        return self.graph.node("Add", [cross, squares])

    def _visit_BatchNorm(self, node: BatchNorm) -> str:
        # Only a `bn=terms` conv layer's IR has them; `emit_onnx_conv` folds them.
        raise InternalError(f"{self.neuron.name}: {node} in a dense layer's IR")

    def _visit_MatAdd(self, node: MatAdd) -> str:
        return self.chain("Add", [self.lower(a) for a in node.args])

    def _visit_HadamardProduct(self, node: HadamardProduct) -> str:
        return self.chain("Mul", [self.lower(a) for a in node.args])

    def _visit_HStack(self, node: HStack) -> str:
        return self.graph.node("Concat", [self.lower(a) for a in node.args], axis=1)

    def _visit_VStack(self, node: VStack) -> str:
        return self.graph.node("Concat", [self.lower(a) for a in node.args], axis=0)

    def _visit_OneMatrix(self, node: OneMatrix) -> str:
        return self.graph.constant(1.0)  # a constant broadcast over the batch

    def _visit_Number(self, node: sp.Number) -> str:
        return self.graph.constant(float(node))
