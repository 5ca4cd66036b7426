"""The learnable forms beside `<w, e>`: `quad(e, W)` (a per-unit quadratic form) and
`sqdist(e, c)` (a squared distance to a per-unit centre), in dense and conv layers.

Each is checked against its definition written here in NumPy (not from the IR), then the
whole network as every spec is: the IR evaluator (lowered and optimised) and onnxruntime
against torch, gradients against the unfused compile, and autocast.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from helpers import compile_and_import, import_source, relative_error

from nscompile.compiler.interpret import evaluate_network
from nscompile.compiler.pipeline import (
    compile_text,
    select_network,
    to_onnx,
    to_torch,
    to_torch_unfused,
)
from nscompile.errors import SpecError

SPEC = """
neuron volterra {                       # Zoumpourlis et al.: a linear and a quadratic kernel
    y = <w, x> + quad(x, W) + b
}
neuron gauss {                          # a Gaussian kernel beside a product with a distance
    scalar g = 0.5
    y = exp(-g * sqdist(x, c)) + sqdist(x**2, d) * <v, x>
}
network dense_net {
    input 5
    dense 4 volterra relu
    dense 3 gauss
    dense 2
    task classification
}
network conv_net {
    input 2 x 6 x 6
    conv 3 volterra relu
    conv 4 gauss stride=2 bn=terms
    conv 2 volterra bn padding=0
    globalpool
    dense 2
    task classification
}
"""


def _randomised(module, name: str, seed: int = 0):  # noqa: ANN001, ANN202
    torch.manual_seed(seed)
    model = module.build(name).double()
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if not value.is_floating_point():
                continue
            if key.endswith(".g"):  # the Gaussian's width: positive
                value.copy_(torch.rand(value.shape, generator=generator, dtype=torch.float64) + 0.1)
            elif key.endswith("running_var"):
                value.copy_(torch.rand(value.shape, generator=generator, dtype=torch.float64) + 0.5)
            else:
                value.copy_(
                    0.3 * torch.randn(value.shape, generator=generator, dtype=torch.float64)
                )
    return model.eval()


def test_dense_forms_compute_their_definitions() -> None:
    _, module = compile_and_import(SPEC)
    model = _randomised(module, "dense_net")
    x = np.random.default_rng(2).normal(size=(7, 5))
    state = model.state_dict()
    p = {k.split(".", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("layer1.")}
    q = {k.split(".", 1)[1]: v.numpy() for k, v in state.items() if k.startswith("layer2.")}
    with torch.no_grad():
        first = model.layer1(torch.from_numpy(x)).numpy()
        h = np.maximum(first, 0.0)
        second = model.layer2(torch.from_numpy(h)).numpy()
    # y_o = w_o . x + x^T W_o x + b_o, W_o the state dict's W[o]
    quad = np.array([[row @ p["W"][o] @ row for o in range(4)] for row in x])
    assert relative_error(first, x @ p["w"].T + quad + p["bias"]) < 1e-12
    # ||h - c_o||^2 term by term, no expansion
    dist = ((h[:, None, :] - q["c"][None]) ** 2).sum(-1)
    dist2 = ((h[:, None, :] ** 2 - q["d"][None]) ** 2).sum(-1)
    expected = np.exp(-q["g"] * dist) + dist2 * (h @ q["v"].T)
    assert model.layer1.W.shape == (4, 5, 5) and model.layer2.c.shape == (3, 4)
    assert relative_error(second, expected) < 1e-10


def test_conv_forms_compute_their_definitions() -> None:
    """In a conv layer each form reads every k x k patch, zero padding included."""
    _, module = compile_and_import(SPEC)
    model = _randomised(module, "conv_net")
    x = torch.randn(2, 2, 6, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(4))
    layer1 = model.layer1
    assert layer1.W.shape == (3, 2, 3, 3, 2, 3, 3)
    with torch.no_grad():
        actual = layer1(x)
        patches = F.unfold(x, 3, padding=1).transpose(1, 2)  # (B, positions, 18)
        weight = layer1.W.reshape(3, 18, 18)
        quad = torch.einsum("bli,oij,blj->bol", patches, weight, patches).reshape(2, 3, 6, 6)
        linear = F.conv2d(x, layer1.w, layer1.bias, padding=1)
        assert relative_error(actual.numpy(), (quad + linear).numpy()) < 1e-12
        h = torch.relu(actual)
        layer2 = model.layer2
        patches = F.unfold(h, 3, padding=1, stride=2).transpose(1, 2)  # (B, 9, 27)
        centres = layer2.c.reshape(4, -1)
        dist = ((patches[:, :, None, :] - centres) ** 2).sum(-1).transpose(1, 2).reshape(2, 4, 3, 3)
        term = torch.exp(-layer2.g[None, :, None, None] * dist)
        # the whole layer: a BatchNorm per term (named after the term's first parameter)
        squares = F.unfold(h**2, 3, padding=1, stride=2).transpose(1, 2)
        dist2 = ((squares[:, :, None, :] - layer2.d.reshape(4, -1)) ** 2).sum(-1)
        dist2 = dist2.transpose(1, 2).reshape(2, 4, 3, 3)
        other = F.conv2d(h, layer2.v, None, 2, 1) * dist2
        expected = layer2.bn_g(term) + layer2.bn_d(other)
        assert relative_error(layer2(h).numpy(), expected.numpy()) < 1e-12


@pytest.mark.parametrize("name", ["dense_net", "conv_net"])
def test_ir_evaluation_and_onnxruntime_equal_torch(name: str) -> None:
    compiled, module = compile_and_import(SPEC)
    network = select_network(compiled, name)
    model = _randomised(module, name)
    shape = (5, 5) if name == "dense_net" else (5, 2, 6, 6)
    x = np.random.default_rng(3).normal(size=shape)
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for program in (compiled.lowered, compiled.optimized):
        net = next(n for n in program.networks if n.name == name)
        assert relative_error(evaluate_network(program, net, x, state), expected) < 1e-10
    proto = to_onnx(compiled, network, {k: v.astype(np.float32) for k, v in state.items()})
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch stays dynamic
        out = session.run(None, {"input": x[:batch].astype(np.float32)})[0]
        assert relative_error(out, expected[:batch]) < 1e-5


@pytest.mark.parametrize("name", ["dense_net", "conv_net"])
def test_values_and_gradients_equal_the_unfused_compile(name: str) -> None:
    compiled = compile_text(SPEC)
    fused = _randomised(import_source(to_torch(compiled)), name)
    plain = import_source(to_torch_unfused(compiled)).build(name).double()
    plain.load_state_dict(fused.state_dict())
    plain.eval()
    shape = (6, 5) if name == "dense_net" else (3, 2, 6, 6)
    x = torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(5))
    a, b = fused(x), plain(x)
    assert relative_error(a.detach().numpy(), b.detach().numpy()) < 1e-12
    grads_a = torch.autograd.grad(a.square().sum(), list(fused.parameters()))
    grads_b = torch.autograd.grad(b.square().sum(), list(plain.parameters()))
    for ga, gb in zip(grads_a, grads_b, strict=True):
        assert relative_error(ga.numpy(), gb.numpy()) < 1e-10


@pytest.mark.parametrize("name", ["dense_net", "conv_net"])
def test_forms_train_under_cpu_autocast(name: str) -> None:
    _, module = compile_and_import(SPEC)
    torch.manual_seed(0)
    model = module.build(name)
    shape = (8, 5) if name == "dense_net" else (4, 2, 6, 6)
    x = torch.randn(*shape)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x)
    out.float().square().mean().backward()
    assert torch.isfinite(out.float()).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


def test_initial_forms_have_moderate_scale() -> None:
    """quad alone starts at about unit variance on standardised inputs (beside a linear term
    at a tenth of it, as every non-linear term), a centre where such inputs lie."""
    spec = SPEC.replace("y = <w, x> + quad(x, W) + b", "y = quad(x, W)")
    for text, share in ((spec, 1.0), (SPEC, 0.1)):
        _, module = compile_and_import(text)
        torch.manual_seed(0)
        model = module.build("dense_net")
        x = torch.randn(4000, 5)
        with torch.no_grad():
            quad = F.bilinear(x, x, model.layer1.W)
        assert 0.5 * share < float(quad.std()) < 2.0 * share
        assert 0.7 < float(model.layer2.c.detach().std()) < 1.4


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ("y = quad(x)", "E118", "quad takes an input-wide expression and a weight's name"),
        ("y = sqdist(x, 2)", "E118", "got (x, 2)"),
        ("y = quad(x, W, x)", "E118", "got (x, W, x)"),
        ("y = quad(<w, x>, W)", "E122", "the first argument of quad(e, W)"),
        ("y = sqdist(1, c)", "E123", "must contain x"),
        ("y = quad(x, W) + <W, x**2>", "E125", "weight 'W' is used twice"),
        ("y = quad(x, b)", "E124", "'b' cannot name a weight"),
        ("y = x * quad(x, W)", "E131", "outside an inner product"),
        ("y = sqdist(x - x, c)", "E136", ""),
    ],
)
def test_bad_forms_get_their_errors(body: str, code: str, needle: str) -> None:
    spec = f"neuron n {{\n    {body}\n}}\nnetwork m {{\n    input 3\n    dense 2 n\n}}\n"
    with pytest.raises(SpecError) as caught:
        compile_text(spec)
    assert caught.value.code == code
    assert needle in str(caught.value)
