"""A network's ONNX graph + the run's `Preprocess` -> the model a run deploys.

The network's graph (`emit_onnx`) takes standardised inputs and answers in logits or
standardised units. The deployed graph wraps it:

    inputs   input        float32 [batch, numeric feature columns]    (absent when there are none)
             categories   string  [batch, text feature columns]       (absent when there are none)
    outputs  classification: label string [batch], probabilities float32 [batch, classes],
                             logits float32 [batch, classes]
             regression:     prediction float32 [batch, 1], in the target's own units

Text columns are one-hot encoded with `LabelEncoder` (ai.onnx.ml) and `Equal`; a category the
run did not see gets all-zero indicators (the documented fallback for direct onnxruntime
users; `nscompile run` and `eval` refuse such rows with an error instead). Then `(x - mean) /
std` in float32, the network, and the inverse for the output. The columns, categories,
statistics and classes are in the metadata (`nscompile.preprocess`, JSON).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
from onnx import TensorProto, helper

from nscompile.compiler.emit_onnx import INPUT_NAME, OUTPUT_NAME, GraphBuilder
from nscompile.learn.preprocess import Preprocess

ML_DOMAIN = "ai.onnx.ml"
ML_OPSET = 3  # LabelEncoder-2 (string <-> int64 keys) is in ai.onnx.ml 2 and later
TEXT_INPUT = "categories"
STANDARDISED = "standardised"
OUTPUTS = {"classification": ("label", "probabilities", "logits"), "regression": ("prediction",)}


def _encode(nodes: GraphBuilder, pre: Preprocess) -> str:
    """The encoded (one-hot expanded) feature matrix, columns in the encoding's order."""
    encoding = pre.encoding
    if not encoding.text:
        return INPUT_NAME
    numeric = {n: i for i, n in enumerate(encoding.numeric)}
    text = {n: i for i, n in enumerate(encoding.text)}
    pieces = []
    for name, categories in zip(encoding.columns, encoding.categories, strict=True):
        if categories is None:
            index = nodes.constant([numeric[name]], np.int64)
            pieces.append(nodes.node("Gather", [INPUT_NAME, index], axis=1))
            continue
        index = nodes.constant([text[name]], np.int64)
        cells = nodes.node("Gather", [TEXT_INPUT, index], axis=1)
        codes = nodes.node(
            "LabelEncoder",
            [cells],
            domain=ML_DOMAIN,
            keys_strings=list(categories),
            values_int64s=list(range(len(categories))),
            default_int64=-1,
        )
        every = nodes.constant(list(range(len(categories))), np.int64)
        hot = nodes.node("Equal", [codes, every])
        pieces.append(nodes.node("Cast", [hot], to=TensorProto.FLOAT))
    return pieces[0] if len(pieces) == 1 else nodes.node("Concat", pieces, axis=1)


def _answer(nodes: GraphBuilder, pre: Preprocess) -> None:
    """Logits -> label and probabilities, or standardised units -> the target's units."""
    if pre.task == "classification":
        assert pre.labels is not None
        nodes.node("Identity", [OUTPUT_NAME], output="logits")
        nodes.node("Softmax", [OUTPUT_NAME], output="probabilities", axis=1)
        index = nodes.node("ArgMax", [OUTPUT_NAME], axis=1, keepdims=0)
        nodes.node(
            "LabelEncoder",
            [index],
            domain=ML_DOMAIN,
            output="label",
            keys_int64s=list(range(len(pre.labels))),
            values_strings=list(pre.labels),
            default_string="",
        )
        return
    scale = nodes.constant([pre.scaler.target_std])
    shift = nodes.constant([pre.scaler.target_mean])
    nodes.node("Add", [nodes.node("Mul", [OUTPUT_NAME, scale]), shift], output="prediction")


def deployable(network: onnx.ModelProto, pre: Preprocess) -> onnx.ModelProto:
    """The network's model with `pre` inside: raw rows in, the target's units out."""
    nodes = GraphBuilder(prefix="deploy_")
    encoded = _encode(nodes, pre)
    mean = nodes.constant(pre.scaler.mean.astype(np.float32))
    std = nodes.constant(pre.scaler.std.astype(np.float32))
    dims = network.graph.input[0].type.tensor_type.shape.dim
    image = len(dims) == 4  # an image network: the rows are its pixels, channel-major
    centred = nodes.node("Sub", [encoded, mean])
    standardised = nodes.node("Div", [centred, std], output=None if image else STANDARDISED)
    if image:
        shape = nodes.constant([-1, *(d.dim_value for d in dims[1:])], np.int64)
        nodes.node("Reshape", [standardised, shape], output=STANDARDISED)
    inner = [_renamed(node) for node in network.graph.node]
    first = len(nodes.nodes)
    _answer(nodes, pre)
    batch = "batch"
    inputs = []
    if pre.encoding.numeric:
        width = len(pre.encoding.numeric)
        inputs.append(helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, [batch, width]))
    if pre.encoding.text:
        width = len(pre.encoding.text)
        inputs.append(helper.make_tensor_value_info(TEXT_INPUT, TensorProto.STRING, [batch, width]))
    outputs = [_output_info(name, pre) for name in OUTPUTS[pre.task]]
    graph = helper.make_graph(
        nodes.nodes[:first] + inner + nodes.nodes[first:],
        network.graph.name,
        inputs,
        outputs,
        list(network.graph.initializer) + nodes.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[*network.opset_import, helper.make_opsetid(ML_DOMAIN, ML_OPSET)],
        ir_version=network.ir_version,
        producer_name=network.producer_name,
        producer_version=network.producer_version,
    )
    metadata = {p.key: p.value for p in network.metadata_props}
    metadata["nscompile.preprocess"] = json.dumps(pre.as_dict(), sort_keys=True)
    metadata["nscompile.deployed"] = (
        "raw feature rows in (numeric columns as `input`, text columns as `categories`), "
        "standardised inside the graph; outputs: " + ", ".join(OUTPUTS[pre.task])
    )
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    return model


def _renamed(node: onnx.NodeProto) -> onnx.NodeProto:
    """A node of the network's graph reading the standardised matrix instead of `input`."""
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for i, name in enumerate(copy.input):
        if name == INPUT_NAME:
            copy.input[i] = STANDARDISED
    return copy


def _output_info(name: str, pre: Preprocess) -> onnx.ValueInfoProto:
    if name == "label":
        return helper.make_tensor_value_info(name, TensorProto.STRING, ["batch"])
    width = len(pre.labels) if pre.labels is not None else 1
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width])
