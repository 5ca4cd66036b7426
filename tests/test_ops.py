"""The table of the language's functions (compiler/ops.py): every column means the same function.

The NumPy column is the reference; the ONNX lowering of each row runs on onnxruntime, and each
activation's `torch.nn` module (what the MLP baseline uses) runs in torch, on the same inputs.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import TensorProto, helper

from nscompile.compiler import ops
from nscompile.compiler.emit_onnx import IR_VERSION, OPSET, GraphBuilder
from nscompile.learn.train.core import MLP

X = np.linspace(-4.0, 4.0, 33, dtype=np.float32).reshape(3, 11)
ROWS = [*ops.ELEMENTWISE.values(), *ops.ACTIVATIONS.values()]


def _run_onnx(op: ops.Op, x: np.ndarray) -> np.ndarray:
    graph = GraphBuilder()
    graph.node("Identity", [op.onnx(graph, "x")], output="y")
    values = [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(x.shape)) for n in "xy"]
    proto = helper.make_graph(graph.nodes, op.name, values[:1], values[1:], graph.initializers)
    model = helper.make_model(
        proto, opset_imports=[helper.make_opsetid("", OPSET)], ir_version=IR_VERSION
    )
    onnx.checker.check_model(model, full_check=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


@pytest.mark.parametrize("op", ROWS, ids=lambda op: f"{type(op).__name__}-{op.name}")
def test_the_onnx_lowering_means_the_numpy_function(op: ops.Op) -> None:
    expected = op.numpy(X.astype(np.float64))
    np.testing.assert_allclose(_run_onnx(op, X), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op", ops.ACTIVATIONS.values(), ids=lambda op: op.name)
def test_the_training_module_means_the_numpy_function(op: ops.Activation) -> None:
    module = getattr(torch.nn, op.module)()
    actual = module(torch.from_numpy(X.astype(np.float64))).numpy()
    np.testing.assert_allclose(actual, op.numpy(X.astype(np.float64)), rtol=1e-12, atol=1e-12)


def test_the_mlp_baseline_takes_its_activations_from_the_table() -> None:
    mlp = MLP(4, [3] * len(ops.ACTIVATIONS), 1, "regression", activations=list(ops.ACTIVATIONS))
    modules = [type(m).__name__ for m in mlp.layers if not isinstance(m, torch.nn.Linear)]
    assert modules == [op.module for op in ops.ACTIVATIONS.values()]
