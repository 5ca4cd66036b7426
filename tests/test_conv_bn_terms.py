"""A BatchNorm per term in task-driven conv layers (`conv O NEURON bn=terms`, `block ... bn=terms`).

`y = sum_t BN_t(term_t(h)) + bias`: each learnable top-level term (with its sign) has its own
`nn.BatchNorm2d` over the O output channels, the bias and constants none. Checked here: the
language and its errors, the meaning (written once more with `F.batch_norm`, training and eval
mode), the state dict, the unfused compile (values and gradients), the NumPy evaluator and
onnxruntime (each term's eval-mode BN folded into its weights where exact).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from helpers import compile_and_import, import_source, relative_error
from torch.nn import functional as F

from nscompile.compiler.interpret import evaluate_network
from nscompile.compiler.ir import ConvIR
from nscompile.compiler.pipeline import (
    compile_text,
    select_network,
    to_onnx,
    to_torch,
    to_torch_unfused,
)
from nscompile.errors import SpecError
from nscompile.lang.check import check
from nscompile.lang.parser import parse
from nscompile.lang.unparse import unparse

NEURONS = """
neuron td { rank 4
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
neuron q { y = <wr, x> * <wg, x> + <wb, x**2> + b }
neuron p { y = tanh(<w, x>) + 0.5 * <v, x> - <u, x**2> + <z, x>**3 }
"""

NETWORK = (
    NEURONS
    + """
network n {
    input 2 x 9 x 9
    conv 6 td relu bn=terms
    conv 5 q bn=terms kernel=5 padding=2
    conv 4 p bn=terms stride=2 padding=0
    conv 4 td bn=sum
    block 6 td stride=2 bn=terms
    block 6 first=plain second=q bn=terms
    globalpool
    dense 3
    task classification
}
"""
)
BATCHES = "num_batches_tracked"
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "images" / "neuronseek_conv.ns"


def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Random weights and BatchNorm statistics, so that nothing is at its neutral value."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=generator, dtype=tensor.dtype) * 0.3
            tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)


@pytest.fixture(scope="module")
def compiled():
    return compile_and_import(NETWORK)


# --- the language ----------------------------------------------------------------------------


def test_bn_terms_round_trips_through_fmt():
    spec = parse(NETWORK)
    assert parse(unparse(spec)) == spec
    text = unparse(spec)
    assert "conv 6 td relu bn=terms" in text and "block 6 td stride=2 bn=terms" in text
    assert "conv 4 td bn=sum" in text


def test_bn_sum_is_bare_bn(compiled):
    bare = compile_text(NETWORK.replace("conv 4 td bn=sum", "conv 4 td bn")).optimized
    assert bare.networks == compiled[0].optimized.networks


def _error(layer: str) -> SpecError:
    text = NEURONS + "network net { input 1 x 8 x 8 " + layer + " globalpool dense 1 }"
    with pytest.raises(SpecError) as info:
        check(parse(text, "f.ns"), "f.ns")
    err = info.value
    line = text.splitlines()[-1]
    err.covered = line[err.span.col - 1 : err.span.end_col - 1]  # type: ignore[attr-defined]
    return err


@pytest.mark.parametrize(
    ("layer", "code", "covered", "fragment"),
    [
        ("conv 4 bn=terms", "E193", "bn=terms", "a plain conv, which has one term"),
        ("conv 4 relu bn=terms", "E193", "bn=terms", "'conv 16 td bn=terms'"),
        ("block 4 bn=terms", "E193", "bn=terms", "both convs of this block are plain"),
        ("block 4 first=plain second=plain bn=terms", "E193", "bn=terms", "plain convs"),
        ("conv 4 td bn=term", "E192", "bn=term", "did you mean 'terms'?"),
        ("conv 4 td bn=2", "E192", "bn=2", "bn=terms: a BatchNorm per term"),
        ("block 4 td bn=none", "E192", "bn=none", "bn=sum"),
        ("conv 4 td bn bn=terms", "E181", "bn=terms", "given twice"),
        ("conv 4 td bn=terms bn", "E181", "bn", "given twice"),
        ("conv 4 td bn=terms bn=sum", "E181", "bn=sum", "given twice"),
        ("block 4 td bn", "E144", "bn", "unknown neuron or activation 'bn'"),
    ],
)
def test_misused_bn_is_an_error_at_its_span(layer, code, covered, fragment):
    err = _error(layer)
    assert err.code == code, err.render()
    assert err.covered == covered  # type: ignore[attr-defined]
    assert fragment in f"{err.message} {err.hint}", err.render()


def test_a_plain_conv_in_a_bn_terms_block_keeps_its_batchnorm(compiled):
    model = compiled[1].build()
    keys = set(model.state_dict())
    assert "layer6.bn1.weight" in keys and "layer6.conv1.weight" in keys  # the plain conv1
    assert not any(k.startswith("layer6.bn2.") for k in keys)  # conv2 (q) normalises its terms
    assert {"layer6.conv2.bn_wr.weight", "layer6.conv2.bn_wb.running_var"} <= keys


# --- the IR and the generated module ---------------------------------------------------------


def test_terms_keep_their_own_convs_and_the_factors_still_fuse(compiled):
    program = compiled[0].optimized
    normed = {n.name: n for n in program.term_bn_neurons}
    assert sorted(normed) == ["p", "q", "td"]
    assert normed["td"].norms == ("bn_w1", "bn_w2", "bn_cp2", "bn_cp3")
    assert normed["q"].norms == ("bn_wr", "bn_wb")
    assert normed["p"].norms == ("bn_w", "bn_v", "bn_u", "bn_z")
    dump = program.dump()
    assert "conv neuron (bn=terms) td" in dump and "batchnorm bn_w1[out_features]" in dump
    td = normed["td"].dump()
    assert "x*HStack(cp2_u1.T, cp2_u2.T, cp3_u1.T, cp3_u2.T, cp3_u3.T)" in td  # input side
    assert "VStack" not in td  # no sum of two terms inside one conv
    plain = next(n for n in program.conv_neurons if n.name == "td").dump()
    assert "VStack(cp2_a.T, cp3_a.T)" in plain  # `conv 4 td bn=sum` keeps the sum fusion
    layers = program.networks[0].layers
    assert isinstance(layers[0], ConvIR) and layers[0].term_bn and not layers[0].bn
    assert isinstance(layers[3], ConvIR) and layers[3].bn and not layers[3].term_bn


def test_generated_classes_name_each_terms_batchnorm(compiled):
    source = to_torch_unfused(compiled[0])
    module = compiled[1]
    layer = module.TdConv2dTermBN(3, 4)
    assert [name for name, _ in layer.named_children()] == ["bn_w1", "bn_w2", "bn_cp2", "bn_cp3"]
    assert list(layer.state_dict())[-5:] == [
        f"bn_cp3.{k}"
        for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ]
    assert "class TdConv2dTermBN(nn.Module)" in source and "class TdConv2d(nn.Module)" in source
    assert "norm1=False, norm2=False" in to_torch(compiled[0])
    assert "norm1=True, norm2=False" in to_torch(compiled[0])  # layer6: a plain conv1


def _meaning(neuron: str, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """sum_t BN_t(term_t) + bias, one conv per term, each BN with `F.batch_norm`."""
    p = dict(layer.named_parameters())
    conv = {"stride": layer.stride, "padding": layer.padding}

    def bn(name: str, h: torch.Tensor) -> torch.Tensor:
        m = getattr(layer, name)
        return F.batch_norm(h, m.running_mean.clone(), m.running_var.clone(), m.weight, m.bias,
                            layer.training, 0.0, m.eps)  # fmt: skip

    def cp(arg: torch.Tensor, order: int) -> torch.Tensor:
        product = F.conv2d(arg, p[f"cp{order}_u1"])
        for m in range(2, order + 1):
            product = product * F.conv2d(arg, p[f"cp{order}_u{m}"])
        return F.conv2d(product, p[f"cp{order}_a"], **conv)

    if neuron == "td":
        terms = bn("bn_w1", F.conv2d(x, p["w1"], **conv)) + bn(
            "bn_w2", F.conv2d(x**2, p["w2"], **conv)
        )
        return terms + bn("bn_cp2", cp(x, 2)) + bn("bn_cp3", cp(x, 3)) + p["bias"][:, None, None]
    if neuron == "q":
        product = F.conv2d(x, p["wr"], **conv) * F.conv2d(x, p["wg"], **conv)
        bias = p["bias"][:, None, None]
        return bn("bn_wr", product) + bn("bn_wb", F.conv2d(x**2, p["wb"], **conv)) + bias
    return (
        bn("bn_w", torch.tanh(F.conv2d(x, p["w"], **conv)))
        + bn("bn_v", 0.5 * F.conv2d(x, p["v"], **conv))
        + bn("bn_u", -F.conv2d(x**2, p["u"], **conv))
        + bn("bn_z", F.conv2d(x, p["z"], **conv) ** 3)
    )


@pytest.mark.parametrize("neuron", ["td", "q", "p"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_each_term_has_its_own_batchnorm(compiled, neuron, mode):
    cls = getattr(compiled[1], f"{neuron.capitalize()}Conv2dTermBN")
    layer = cls(3, 4, 3, 2, 1).double()
    _randomise(layer)
    layer.train(mode == "train")
    x = torch.randn(3, 3, 7, 7, dtype=torch.float64)
    expected = _meaning(neuron, layer, x)  # before the forward updates the running statistics
    out = layer(x)
    assert out.shape == (3, 4, 4, 4)
    assert relative_error(out.detach().numpy(), expected.detach().numpy()) < 1e-12


def _unfused(compiled_spec) -> torch.nn.Module:
    return import_source(to_torch_unfused(compiled_spec)).build()


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_network_equals_the_unfused_compile_in_values_and_gradients(compiled, mode):
    fused, plain = compiled[1].build().double(), _unfused(compiled[0]).double()
    _randomise(fused)
    assert list(fused.state_dict()) == list(plain.state_dict())
    plain.load_state_dict(fused.state_dict())
    fused.train(mode == "train")
    plain.train(mode == "train")
    x = torch.randn(4, 2, 9, 9, dtype=torch.float64, requires_grad=True)
    a, b = fused(x), plain(x)
    assert relative_error(a.detach().numpy(), b.detach().numpy()) < 1e-12
    ga = torch.autograd.grad(a.square().sum(), [x, *fused.parameters()])
    gb = torch.autograd.grad(b.square().sum(), [x, *plain.parameters()])
    names = [name for name, _ in fused.named_parameters()]
    assert names == [name for name, _ in plain.named_parameters()]
    # A bias before a BatchNorm has no gradient in training, only rounding noise on both
    # sides: each gradient is compared relative to itself or, when tiny, to the largest one.
    largest = max(float(v.norm()) for v in gb)
    for name, u, v in zip(["input", *names], ga, gb, strict=True):
        floor = 1e-10 * max(float(v.norm()), 1e-4 * largest)
        assert float((u - v).norm()) <= floor, name
    if mode == "train":  # every term's running statistics moved alike
        for key, value in fused.state_dict().items():
            assert torch.allclose(value, plain.state_dict()[key], rtol=1e-12, atol=0), key


def test_parameter_count_and_a_training_step(compiled):
    program, module = compiled
    torch.manual_seed(0)
    model = module.build()
    network = program.optimized.networks[0]
    assert sum(p.numel() for p in model.parameters()) == program.optimized.parameter_count(network)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = torch.randn(8, 2, 9, 9), torch.randint(0, 3, (8,))
    losses = []
    for _ in range(4):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert np.isfinite(losses).all() and losses[-1] < losses[0]


# --- the NumPy evaluator and ONNX ----------------------------------------------------------


def _eval_model(text: str, seed: int = 0):
    compiled_spec, module = compile_and_import(text)
    network = select_network(compiled_spec, None)
    torch.manual_seed(seed)
    model = module.build(network.name)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():  # the module's own weights, non-trivial BatchNorm statistics
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                c = layer.num_features
                layer.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
                layer.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
                layer.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(c, generator=generator) * 0.5)
    return compiled_spec, network, model.eval()


def test_ir_evaluation_equals_torch_in_eval_mode(compiled):
    compiled_spec, network, model = _eval_model(NETWORK)
    x = torch.randn(3, 2, 9, 9, dtype=torch.float64)
    with torch.no_grad():
        expected = model.double()(x).numpy()
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    for program in (compiled_spec.lowered, compiled_spec.optimized):
        out = evaluate_network(program, program.networks[0], x.numpy(), state)
        assert relative_error(out, expected) < 1e-10


def _onnx(compiled_spec, network, model) -> onnx.ModelProto:
    return to_onnx(compiled_spec, network, {k: v.numpy() for k, v in model.state_dict().items()})


@pytest.mark.parametrize(
    "text", [NETWORK, EXAMPLE.read_text(encoding="utf-8")], ids=["mixed", "example"]
)
def test_onnxruntime_equals_torch_eval_mode(text):
    compiled_spec, network, model = _eval_model(text)
    proto = _onnx(compiled_spec, network, model)
    onnx.checker.check_model(proto, full_check=True)
    onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = torch.randn(5, *network.image, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.double()(x.double()).numpy()
    out = session.run(None, {"input": x.numpy()})[0]
    assert relative_error(out, expected) < 1e-5


def test_scales_fold_into_weights_where_exact(compiled):
    compiled_spec, network, model = _eval_model(NETWORK)
    proto = _onnx(compiled_spec, network, model)
    names = {init.name for init in proto.graph.initializer}
    # explicit per-channel scales only for terms with no last linear map: p's tanh and cube
    explicit = sorted(n.split(":")[0] for n in names if ".bn_" in n and ":scale" in n)
    assert explicit == ["layer3.bn_w", "layer3.bn_z"]
    assert not any("bn_w1" in n or "bn_wr" in n or "bn_cp" in n for n in names)  # all folded
    # the raw weights of folded terms are not in the graph: their scaled copies are
    assert "layer1.w1" not in names and "layer2.wr" not in names and "layer1.cp3_a" not in names
    assert sum(":bn_shift" in n for n in names) == 1  # p has no bias: one Add of the shifts


def test_graph_size_does_not_grow_with_channels():
    spec = "network w {{ input 2 x 8 x 8  conv {w} td relu bn=terms  conv {w} q bn=terms" + (
        "  block {w} p bn=terms  globalpool  dense 2 }}\n"
    )
    sizes = []
    for width in (4, 32):
        compiled_spec, network, model = _eval_model(NEURONS + spec.format(w=width))
        sizes.append(len(_onnx(compiled_spec, network, model).graph.node))
    assert sizes[0] == sizes[1]


def test_the_example_compiles_builds_and_trains():
    compiled_spec, module = compile_and_import(EXAMPLE.read_text(encoding="utf-8"), EXAMPLE.name)
    network = compiled_spec.optimized.networks[0]
    model = module.build()
    keys = set(model.state_dict())
    assert {"layer1.bn_w1.weight", "layer1.bn_w2.weight", "layer1.bn_cp3.running_mean"} <= keys
    assert not any(".bn1." in k or ".bn2." in k or k.startswith("bn") for k in keys)
    assert sum(p.numel() for p in model.parameters()) == compiled_spec.optimized.parameter_count(
        network
    )
    loss = F.cross_entropy(model(torch.randn(4, 1, 8, 8)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert torch.isfinite(loss)
