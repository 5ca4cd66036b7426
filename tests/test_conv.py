"""Conv layers, pooling and residual blocks: the language, the IR and the PyTorch backend.

The generated conv layers are checked against the meaning of DESIGN §3 written once more here
with `torch.nn.functional` (one conv per term), against the unfused compile (same state dict,
same values and gradients), under CPU autocast, and a deep task-driven ResNet trains from its
initialisation without NaN.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from helpers import compile_and_import, relative_error
from torch.nn import functional as F

from nscompile.compiler.ir import ConvIR, Patches
from nscompile.compiler.pipeline import compile_text, to_torch_unfused
from nscompile.lang.parser import parse
from nscompile.lang.unparse import unparse

NEURONS = """
neuron td { rank 4
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
neuron q { y = <wr, x> * <wg, x> + <wb, x**2> + b }
neuron f { y = <w, x**3> + <v, sin(x)> + b }
neuron c { rank 3  y = cp(x, 2) + b }
"""

NETWORK = (
    NEURONS
    + """
network n {
    input 2 x 9 x 9
    conv 6 td relu bn
    conv 5 q kernel=5 padding=2
    conv 4 f stride=2 padding=0
    conv 4 c kernel=1
    conv 4 relu
    maxpool 2 stride=1
    block 6 td stride=2
    block 6 first=plain second=q
    avgpool 2 padding=1
    globalpool
    dense 3
    task classification
}
"""
)


def _randomise(model: torch.nn.Module) -> None:
    """Random weights and BatchNorm statistics, so that nothing is at its neutral value."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            values = torch.randn(tensor.shape, generator=generator) * 0.3
            tensor.copy_(values.abs() + 0.5 if name.endswith("running_var") else values)


def test_image_statements_round_trip_through_fmt():
    spec = parse(NETWORK)
    assert parse(unparse(spec)) == spec
    assert "input 2 x 9 x 9" in unparse(spec)
    assert "block 6 first=plain second=q" in unparse(spec)


def test_conv_neurons_lower_to_convs_and_fuse():
    program = compile_text(NETWORK).optimized
    convs = {n.name: n for n in program.conv_neurons}
    assert sorted(convs) == ["c", "f", "q", "td"]
    shapes = {p.name: p.shape for p in convs["td"].params}
    assert len(shapes["w1"]) == len(shapes["cp2_a"]) == 4 and shapes["cp2_u1"][2:] == (1, 1)
    dump = program.dump()
    # the five 1x1 factor convs of td are one conv, and both CP output maps one k x k conv
    assert "x*HStack(cp2_u1.T, cp2_u2.T, cp3_u1.T, cp3_u2.T, cp3_u3.T)" in dump
    assert "HStack(Patches(" in dump and "VStack(cp2_a.T, cp3_a.T)" in dump
    patches = [e for n in program.conv_neurons for e in [n.output] if e.atoms(Patches)]
    assert patches
    layers = program.networks[0].layers
    assert [type(layer).__name__ for layer in layers[:5]] == ["ConvIR"] * 5
    assert isinstance(layers[0], ConvIR) and layers[0].bn and layers[0].padding == 1


def _meaning(neuron: str, layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The DESIGN §3 meaning of the four neurons above, one conv per term."""
    p = {name: value for name, value in layer.named_parameters()}
    conv = {"stride": layer.stride, "padding": layer.padding}

    def cp(arg: torch.Tensor, order: int) -> torch.Tensor:
        product = F.conv2d(arg, p[f"cp{order}_u1"])
        for m in range(2, order + 1):
            product = product * F.conv2d(arg, p[f"cp{order}_u{m}"])
        return F.conv2d(product, p[f"cp{order}_a"], **conv)

    bias = p["bias"][:, None, None]
    if neuron == "td":
        linear = F.conv2d(x, p["w1"], **conv) + F.conv2d(x**2, p["w2"], **conv)
        return linear + cp(x, 2) + cp(x, 3) + bias
    if neuron == "q":
        product = F.conv2d(x, p["wr"], **conv) * F.conv2d(x, p["wg"], **conv)
        return product + F.conv2d(x**2, p["wb"], **conv) + bias
    if neuron == "f":
        return F.conv2d(x**3, p["w"], **conv) + F.conv2d(torch.sin(x), p["v"], **conv) + bias
    return cp(x, 2) + bias


@pytest.mark.parametrize("neuron", ["td", "q", "f", "c"])
@pytest.mark.parametrize(("kernel", "stride", "padding"), [(3, 1, 1), (5, 2, 0), (1, 1, 0)])
def test_each_conv_neuron_means_what_design_says(neuron, kernel, stride, padding):
    _, module = compile_and_import(NETWORK)
    cls = getattr(module, f"{neuron.capitalize()}Conv2d")
    layer = cls(3, 4, kernel, stride, padding).double()
    _randomise(layer)
    x = torch.randn(2, 3, 7, 7, dtype=torch.float64)
    out = layer(x)
    assert out.shape == (2, 4, (7 + 2 * padding - kernel) // stride + 1, out.shape[3])
    assert relative_error(out.detach().numpy(), _meaning(neuron, layer, x).detach().numpy()) < 1e-12


def test_network_equals_the_unfused_compile_in_values_and_gradients():
    compiled, module = compile_and_import(NETWORK)
    unfused_namespace: dict[str, object] = {"__name__": "unfused"}
    exec(compile(to_torch_unfused(compiled), "unfused.py", "exec"), unfused_namespace)  # ours
    fused, plain = module.build().double(), unfused_namespace["build"]().double()  # type: ignore[operator]
    _randomise(fused)
    plain.load_state_dict(fused.state_dict())
    for mode in ("train", "eval"):
        fused.train(mode == "train")
        plain.train(mode == "train")
        x = torch.randn(4, 2, 9, 9, dtype=torch.float64, requires_grad=True)
        a, b = fused(x), plain(x)
        assert a.shape == (4, 3)
        assert relative_error(a.detach().numpy(), b.detach().numpy()) < 1e-12
        (ga,) = torch.autograd.grad(a.square().sum(), x)
        (gb,) = torch.autograd.grad(b.square().sum(), x)
        assert relative_error(ga.numpy(), gb.numpy()) < 1e-10


def test_state_dict_keys_follow_the_layers():
    _, module = compile_and_import(NETWORK)
    keys = set(module.build().state_dict())
    assert {"layer1.w1", "layer1.cp2_u1", "bn1.running_var", "layer5.weight"} <= keys
    assert {"layer7.conv1.w1", "layer7.bn2.weight", "layer7.shortcut.0.weight"} <= keys
    assert "layer8.conv1.weight" in keys and "layer8.conv1.bias" not in keys  # plain in a block
    assert not any(key.startswith("layer8.shortcut") for key in keys)  # identity shortcut


def test_conv_network_trains_under_cpu_autocast():
    _, module = compile_and_import(NETWORK)
    model = module.build()
    x = torch.randn(8, 2, 9, 9)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = F.cross_entropy(model(x), torch.randint(0, 3, (8,)))
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_a_20_layer_task_driven_resnet_trains_from_its_initialisation():
    # a 3x3 stem, nine blocks of two 3x3 convs (widths 8-16-32), the linear head: 20 layers
    blocks = ["block 8 td"] * 3 + ["block 16 td stride=2"] + ["block 16 td"] * 2
    blocks += ["block 32 td stride=2"] + ["block 32 td"] * 2
    body = "\n    ".join(
        ["input 3 x 16 x 16", "conv 8 td relu bn", *blocks, "globalpool", "dense 4"]
    )
    text = NEURONS + f"network r20 {{\n    {body}\n    task classification\n}}\n"
    compiled, module = compile_and_import(text)
    assert (
        sum(
            1
            for layer in compiled.optimized.networks[0].layers
            if type(layer).__name__ == "BlockIR"
        )
        == 9
    )
    torch.manual_seed(0)
    model = module.build()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, y = torch.randn(16, 3, 16, 16), torch.randint(0, 4, (16,))
    losses = []
    for _ in range(5):
        loss = F.cross_entropy(model(x), y)
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(float(loss.detach()))
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", ["digits", "resnet18"])
def test_the_image_examples_compile_build_and_run(name):
    path = Path(__file__).resolve().parent.parent / "examples" / "images" / f"{name}.ns"
    compiled, module = compile_and_import(path.read_text(encoding="utf-8"), path.name)
    network = compiled.optimized.networks[0]
    model = module.build().eval()
    count = sum(p.numel() for p in model.parameters())
    assert count == compiled.optimized.parameter_count(network)
    with torch.no_grad():
        out = model(torch.randn(2, *network.image))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
