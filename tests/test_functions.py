"""`log`, `sqrt`, `softplus`, `tan`: their meaning, their domains, and every backend agreeing.

`log(u)` = log(max(|u|, 1e-8)) and `sqrt(u)` = sqrt(max(|u|, 1e-8)) (`ops.FLOOR`): finite
everywhere, with finite gradients, on the negative and zero inputs a standardised table holds.
`softplus(u)` = log(1 + e^u); `tan` is unguarded at its poles. The NumPy column of the table is
the reference; the generated module (float32 and float64), the IR evaluator and onnxruntime
must agree on random inputs, in dense and conv layers.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import compile_and_import, relative_error

from nscompile.compiler import ops
from nscompile.compiler.interpret import evaluate_network
from nscompile.compiler.pipeline import compile_text, select_network, to_onnx
from nscompile.errors import SpecError
from nscompile.learn.runtime import Session

NEW = ("log", "sqrt", "softplus", "tan")
FLOOR = ops.FLOOR

# Zeros, tiny and large magnitudes of both signs; nowhere near a pole of tan.
SPECIAL = np.array(
    [0.0, -0.0, 1e-12, -1e-12, 1e-9, -1e-9, 1e-8, 2e-8, -3e-6, 1e-3, -0.5, 0.5, 1.0, -1.0, 1.5,
     -1.5, 3.0, -4.0, 7.5, -12.0, 19.0, 21.0, 45.0, -45.0, 88.0, -100.0]
)  # fmt: skip


def _torch_column(op: ops.Op, a: torch.Tensor) -> torch.Tensor:
    """Evaluate the row's torch format string as the generated module would."""
    return eval(op.torch.format("a"), {"torch": torch, "nn": torch.nn, "a": a})  # noqa: S307


def _tan_safe(a: np.ndarray, name: str) -> np.ndarray:
    return a[np.abs(a) < 1.5] if name == "tan" else a


@pytest.mark.parametrize("name", sorted(ops.ELEMENTWISE))
def test_the_torch_column_means_the_numpy_function(name: str) -> None:
    op = ops.ELEMENTWISE[name]
    a = _tan_safe(SPECIAL[np.abs(SPECIAL) < 80] if name == "exp" else SPECIAL, name)
    actual = _torch_column(op, torch.from_numpy(a)).numpy()
    # torch's softplus returns u itself above u = 20, within 2e-9 of log(1 + e^u).
    rtol = 1e-10 if name == "softplus" else 1e-12
    np.testing.assert_allclose(actual, op.numpy(a), rtol=rtol, atol=1e-12)


def test_the_meanings_as_documented() -> None:
    a = np.array([-4.0, -1.0, -0.25, 0.0, 1e-9, 0.25, 1.0, 4.0])
    np.testing.assert_allclose(ops.ELEMENTWISE["log"].numpy(a), np.log(np.maximum(abs(a), FLOOR)))
    np.testing.assert_allclose(ops.ELEMENTWISE["sqrt"].numpy(a), np.sqrt(np.maximum(abs(a), FLOOR)))
    np.testing.assert_allclose(ops.ELEMENTWISE["softplus"].numpy(a), np.log1p(np.exp(a)))
    np.testing.assert_allclose(ops.ELEMENTWISE["tan"].numpy(a), np.tan(a))
    # Exactly log|u| and sqrt|u| above the floor: tnlearn's log(|x| + 1e-8) is unchanged by it.
    assert ops.ELEMENTWISE["log"].numpy(np.array(-2.0)) == math.log(2.0)
    assert ops.ELEMENTWISE["sqrt"].numpy(np.array(-9.0)) == 3.0
    assert ops.ELEMENTWISE["log"].numpy(np.array(0.0)) == math.log(1e-8)
    assert ops.ELEMENTWISE["softplus"].numpy(np.array(1000.0)) == 1000.0  # no overflow
    assert ops.ELEMENTWISE["softplus"].numpy(np.array(-1000.0)) == 0.0


@pytest.mark.parametrize("name", NEW)
def test_values_and_gradients_are_finite_at_zero_and_beyond_the_domain(name: str) -> None:
    op = ops.ELEMENTWISE[name]
    for dtype in (torch.float32, torch.float64):
        a = torch.tensor(_tan_safe(SPECIAL, name), dtype=dtype, requires_grad=True)
        value = _torch_column(op, a)
        (grad,) = torch.autograd.grad(value.sum(), a)
        assert torch.isfinite(value).all() and torch.isfinite(grad).all(), (name, dtype)
    if name in ("log", "sqrt"):  # the documented bounds of the derivative
        a = torch.tensor([0.0, -0.0, FLOOR, -FLOOR, 1.5 * FLOOR], dtype=torch.float64)
        a.requires_grad_(True)
        (grad,) = torch.autograd.grad(_torch_column(op, a).sum(), a)
        bound = 1 / FLOOR if name == "log" else 0.5 / math.sqrt(FLOOR)
        assert float(grad.abs().max()) <= bound * (1 + 1e-9)
        assert grad[0] == 0.0


DENSE = """\
neuron f {
    y = <w1, log(x)> + <w2, sqrt(x)> + <w3, softplus(x)> + <w4, tan(x)> + b
}
neuron g {
    rank 3
    y = softplus(<w1, x>) + <w2, x> * <w3, log(abs(x) + 1)> + cp(sqrt(x), 2) + 0.5 * tan(<w4, x>)
}
network net {
    input 6
    dense 8 f tanh
    dense 5 g
    dense 2
    task regression
}
"""

CONV = """\
neuron f {
    y = <w1, log(x)> + <w2, sqrt(x)> + <w3, softplus(x)> + <w4, tan(x)> + b
}
neuron g {
    rank 3
    y = softplus(<w1, x>) + <w2, x> * <w3, log(x**2 + 1)> + cp(sqrt(x), 2) + 0.5 * tan(<w4, x>)
}
network img {
    input 2 x 6 x 6
    conv 4 f tanh
    conv 3 g bn stride=2
    globalpool
    dense 2
    task regression
}
"""


def _inputs(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Uniform in (-1.4, 1.4), away from tan's poles, with exact zeros and tiny values."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.4, 1.4, size=shape)
    flat = x.reshape(-1)
    picks = rng.choice(flat.size, size=flat.size // 4, replace=False)
    flat[picks] = rng.choice([0.0, -0.0, 1e-12, -1e-9, 3e-8, -1e-4], size=picks.size)
    return x


@pytest.mark.parametrize("text", [DENSE, CONV], ids=["dense", "conv"])
def test_torch_the_ir_evaluator_and_onnxruntime_agree(text: str) -> None:
    compiled, module = compile_and_import(text)
    network = select_network(compiled, None)
    torch.manual_seed(0)
    model = module.build(network.name).eval()
    state = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    shape = (7, *(network.image or (network.input_width,)))
    x = _inputs(shape, seed=1)
    reference = evaluate_network(
        compiled.lowered, network, x, {k: np.float64(v) for k, v in state.items()}
    )
    optimised = evaluate_network(compiled.optimized, network, x, state)
    assert np.isfinite(reference).all()
    assert relative_error(optimised, reference) < 1e-9
    with torch.no_grad():
        exact = model.double()(torch.from_numpy(x)).numpy()
        single = model.float()(torch.from_numpy(x).float()).numpy()
    assert relative_error(exact, reference) < 1e-9
    assert relative_error(single, reference) < 1e-5
    proto = to_onnx(compiled, network, state)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    ops_used = {node.op_type for node in proto.graph.node}
    assert {"Log", "Sqrt", "Softplus", "Tan", "Abs", "Max"} <= ops_used
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = x.astype(np.float32)
    if network.image is None:  # the runtime's own wrapper, for (batch, features) models
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.onnx"
            path.write_bytes(proto.SerializeToString())
            actual = Session(path, provider="cpu").run(feed)
    else:
        actual = session.run(None, {session.get_inputs()[0].name: feed})[0]
    assert np.isfinite(actual).all()
    assert relative_error(actual, reference) < 1e-5


@pytest.mark.parametrize("text", [DENSE, CONV], ids=["dense", "conv"])
def test_gradients_are_finite_on_zero_inputs(text: str) -> None:
    compiled, module = compile_and_import(text)
    network = select_network(compiled, None)
    torch.manual_seed(0)
    model = module.build(network.name).double()
    shape = (3, *(network.image or (network.input_width,)))
    for x in (torch.zeros(shape, dtype=torch.float64), torch.from_numpy(_inputs(shape, 2))):
        x.requires_grad_(True)
        out = model(x)
        grads = torch.autograd.grad(out.sum(), [x, *model.parameters()], allow_unused=True)
        assert torch.isfinite(out).all()
        assert all(g is None or bool(torch.isfinite(g).all()) for g in grads)


def test_constants_fold_with_the_same_meaning() -> None:
    """`log(0)` and `sqrt(-4)` fold at compile time as the backends compute them."""
    text = "neuron n { y = log(0) * <w, x> + sqrt(-4) + softplus(0) * <v, tan(x)> }\n"
    compiled = compile_text(text, "n.ns")
    dump = compiled.lowered.dump()
    assert "- 18.42068" in dump and "2.0*1" in dump and "0.693147" in dump


@pytest.mark.parametrize(
    ("body", "code", "hint"),
    [
        ("<w, lg(x)>", "E129", "did you mean 'log'?"),
        ("<w, sqr(x)>", "E129", "did you mean 'sqrt'?"),
        ("<w, softplus(x, 2)>", "E130", "write softplus(x)"),
        ("<w, log(x, 10)>", "E130", "write log(x)"),
        ("<w, tan>", "E120", "'tan' is a function: call it, e.g. tan(x)"),
    ],
)
def test_bad_calls_are_errors_with_hints(body: str, code: str, hint: str) -> None:
    with pytest.raises(SpecError) as caught:
        compile_text(f"neuron n {{ y = {body} + b }}\n", "n.ns")
    assert caught.value.code == code and caught.value.span is not None
    assert hint in (caught.value.hint or "")
