"""Image networks in ONNX: the graph means what the generated module means, on onnxruntime.

Every spec is checked twice: against the generated PyTorch module (eval mode, BatchNorm
statistics randomised so that folding BN into the conv weights is really tested), and against
`reference` below, the state-dict contract and the conv neurons' meaning (DESIGN.md section 3)
written once more with torch.nn.functional, independently of both backends.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from helpers import compile_and_import, relative_error

from nscompile.compiler.emit_onnx import IR_VERSION, OPSET, expected_shapes
from nscompile.compiler.ir import BlockIR, ConvIR, FlattenIR, LayerIR, NetworkIR, PoolIR
from nscompile.compiler.pipeline import Compiled, select_network, to_onnx
from nscompile.errors import InputError

TD = "neuron td { rank 4  y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b }\n"
Q = "neuron q { y = <wr, x> * <wg, x> + <wb, x**2> + b }\n"
S = "neuron s { y = <w, x**3> + <v, sin(x)> + b }\n"
C = "neuron c { rank 3  y = cp(x, 2) + b }\n"

SPECS = {
    # The example: every stage kind, blocks with both shortcuts, plain and task-driven.
    "example": TD
    + Q
    + """network n {
  input 1 x 8 x 8
  conv 16 td relu bn
  conv 8 q
  conv 8 relu kernel=1
  maxpool 2
  block 16 td stride=2
  block 16 first=plain second=q
  globalpool
  dense 10
  task classification
}
""",
    # Kernels 5 and 3 with stride 2 and no padding, average pooling with padding, odd sizes,
    # a task-driven block with the identity shortcut and a plain one with a projection.
    "kernels": S
    + C
    + """network m {
  input 2 x 11 x 11
  conv 6 s tanh kernel=5 padding=2
  conv 6 c gelu bn stride=2 padding=0
  avgpool 3 stride=1 padding=1
  conv 8 silu bn kernel=3
  block 8 first=c second=s
  block 12 stride=2
  avgpool 2 stride=1
  flatten
  dense 5 relu
  dense 3
  task classification
}
""",
    # 1 x 1 task-driven convs, max pooling with stride and padding, a projection block whose
    # convs are both task-driven and one that only widens (stride 1).
    "pointwise": TD
    + C
    + Q
    + """network p {
  input 3 x 10 x 10
  conv 4 td sigmoid kernel=1
  conv 5 c relu bn kernel=1 stride=2
  maxpool 3 stride=2 padding=1
  block 6 first=q second=c
  block 6 td
  conv 7 relu bn kernel=3 padding=0
  flatten
  dense 4
  task classification
}
""",
}

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda h: h,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
}


# --- the meaning, written once more --------------------------------------------------------------

Conv = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (input, weight) -> k x k conv
Params = dict[str, torch.Tensor]


def _cp(p: Params, x: torch.Tensor, order: int, conv: Conv) -> torch.Tensor:
    """cp(x, m): m 1 x 1 convs of x to the rank's channels, their product, a k x k conv."""
    product = F.conv2d(x, p[f"cp{order}_u1"])
    for m in range(2, order + 1):
        product = product * F.conv2d(x, p[f"cp{order}_u{m}"])
    return conv(product, p[f"cp{order}_a"])


def _bias(p: Params) -> torch.Tensor:
    return p["bias"][None, :, None, None]


NEURONS: dict[str, Callable[[Params, torch.Tensor, Conv], torch.Tensor]] = {
    "td": lambda p, x, conv: (
        conv(x, p["w1"]) + conv(x**2, p["w2"]) + _cp(p, x, 2, conv) + _cp(p, x, 3, conv) + _bias(p)
    ),
    "q": lambda p, x, conv: conv(x, p["wr"]) * conv(x, p["wg"]) + conv(x**2, p["wb"]) + _bias(p),
    "s": lambda p, x, conv: conv(x**3, p["w"]) + conv(torch.sin(x), p["v"]) + _bias(p),
    "c": lambda p, x, conv: _cp(p, x, 2, conv) + _bias(p),
}


def reference(network: NetworkIR, state: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """The network on `x` from its state dict alone, in the dtype of `state`."""

    def params(prefix: str) -> Params:
        return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}

    def conv(
        prefix: str, neuron: str | None, h: torch.Tensor, stride: int, pad: int, bias: bool
    ) -> torch.Tensor:
        p = params(prefix)
        if neuron is None:
            return F.conv2d(h, p["weight"], p["bias"] if bias else None, stride, pad)
        return NEURONS[neuron](p, h, lambda a, w: F.conv2d(a, w, stride=stride, padding=pad))

    def bn(prefix: str, h: torch.Tensor) -> torch.Tensor:
        p = params(prefix)
        scale = (p["weight"] / torch.sqrt(p["running_var"] + 1e-5))[None, :, None, None]
        return (h - p["running_mean"][None, :, None, None]) * scale + p["bias"][None, :, None, None]

    h = x
    for i, stage in enumerate(network.layers, start=1):
        name = f"layer{i}"
        if isinstance(stage, ConvIR):
            h = conv(name, stage.neuron, h, stage.stride, stage.padding, bias=True)
            h = bn(f"bn{i}", h) if stage.bn else h
            h = ACTIVATIONS[stage.activation](h)
        elif isinstance(stage, BlockIR):
            act = ACTIVATIONS[stage.activation]
            inner = conv(f"{name}.conv1", stage.first, h, stage.stride, 1, bias=False)
            inner = act(bn(f"{name}.bn1", inner))
            inner = bn(f"{name}.bn2", conv(f"{name}.conv2", stage.second, inner, 1, 1, bias=False))
            short = h
            if stage.projection:
                w = state[f"{name}.shortcut.0.weight"]
                short = bn(f"{name}.shortcut.1", F.conv2d(h, w, stride=stage.stride))
            h = act(inner + short)
        elif isinstance(stage, PoolIR):
            if stage.kernel == 0:
                h = h.mean((2, 3))
            elif stage.kind == "max":
                h = F.max_pool2d(h, stage.kernel, stage.stride, stage.padding)
            else:
                h = F.avg_pool2d(h, stage.kernel, stage.stride, stage.padding)
        elif isinstance(stage, FlattenIR):
            h = h.flatten(1)
        else:
            assert isinstance(stage, LayerIR) and stage.neuron is None  # plain heads only here
            h = F.linear(h, state[f"{name}.weight"], state[f"{name}.bias"])
            h = ACTIVATIONS[stage.activation](h)
    return h


# --- building and running --------------------------------------------------------------------


def build(text: str, seed: int = 0) -> tuple[Compiled, NetworkIR, torch.nn.Module]:
    """Compile `text` and build its module, seeded, BN statistics randomised, in eval mode."""
    compiled, module = compile_and_import(text)
    network = select_network(compiled, None)
    torch.manual_seed(seed)
    model = module.build(network.name)
    generator = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for layer in model.modules():
            if isinstance(layer, torch.nn.BatchNorm2d):
                c = layer.num_features
                layer.running_mean.copy_(torch.randn(c, generator=generator) * 0.5)
                layer.running_var.copy_(torch.rand(c, generator=generator) * 1.5 + 0.5)
                layer.weight.copy_(torch.rand(c, generator=generator) + 0.5)
                layer.bias.copy_(torch.randn(c, generator=generator) * 0.5)
    return compiled, network, model.eval()


def export(compiled: Compiled, network: NetworkIR, model: torch.nn.Module) -> onnx.ModelProto:
    return to_onnx(compiled, network, {k: v.numpy() for k, v in model.state_dict().items()})


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def run(model: onnx.ModelProto | ort.InferenceSession, x: np.ndarray) -> np.ndarray:
    if isinstance(model, onnx.ModelProto):
        model = session(model)
    return model.run(None, {"input": x})[0]


@pytest.fixture(scope="module", params=sorted(SPECS))
def exported(request: pytest.FixtureRequest):
    """(network, its module, its ONNX model, an onnxruntime session of that) for a spec."""
    compiled, network, model = build(SPECS[request.param])
    onnx_model = export(compiled, network, model)
    return network, model, onnx_model, session(onnx_model)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnxruntime_matches_torch_and_the_reference(exported, batch: int) -> None:
    network, model, _, runtime = exported
    x = torch.randn(batch, *network.image, generator=torch.Generator().manual_seed(batch))
    state = {k: v.double() for k, v in model.state_dict().items()}
    with torch.no_grad():
        expected = reference(network, state, x.double()).numpy()
        module = model.double()(x.double()).numpy()
        model.float()
    actual = run(runtime, x.numpy())
    assert actual.shape == expected.shape == (batch, network.out_features)
    assert relative_error(module, expected) < 1e-10  # the module means the contract
    assert relative_error(actual, expected) < 1e-5
    assert relative_error(actual, module) < 1e-5


def test_model_is_pinned_checked_and_shaped(exported) -> None:
    network, _, model, _ = exported
    onnx.checker.check_model(model, full_check=True)
    onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True)
    assert model.ir_version == IR_VERSION
    assert [(o.domain, o.version) for o in model.opset_import] == [("", OPSET)]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"
    assert [d.dim_value for d in dims[1:]] == list(network.image)
    out = model.graph.output[0].type.tensor_type.shape.dim
    assert out[0].dim_param == "batch" and out[1].dim_value == network.out_features
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}
    used = {name for node in model.graph.node for name in node.input}
    assert {t.name for t in model.graph.initializer} <= used  # nothing unused
    meta = {p.key: p.value for p in model.metadata_props}
    assert "y = " in meta["nscompile.formula"]


def test_expected_shapes_are_the_modules() -> None:
    for text in SPECS.values():
        compiled, network, model = build(text)
        shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        assert expected_shapes(compiled.optimized, network) == shapes


def test_plain_conv_batchnorm_folds_into_the_conv() -> None:
    """Plain convs (a stage's, a block's, the shortcut's) followed by BN leave no BN arithmetic."""
    text = (
        "network r { input 3 x 8 x 8  conv 8 relu bn  block 8  block 16 stride=2  globalpool"
        "  dense 2 }\n"
    )
    compiled, network, model = build(text)
    onnx_model = export(compiled, network, model)
    ops = [n.op_type for n in onnx_model.graph.node]
    assert sorted(set(ops)) == ["Add", "Conv", "Gemm", "Identity", "ReduceMean", "Relu"]
    assert ops.count("Add") == 2  # the residual adds, nothing else
    x = torch.randn(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.double()(x.double()).numpy()
    assert relative_error(run(onnx_model, x.numpy()), expected) < 1e-5


def test_dense_neuron_layer_after_the_convs() -> None:
    text = TD + (
        "network d { input 1 x 6 x 6  conv 4 td relu bn  maxpool 2  flatten  dense 5 td relu"
        "  dense 2 }\n"
    )
    compiled, network, model = build(text)
    x = torch.randn(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = model.double()(x.double()).numpy()
    assert relative_error(run(export(compiled, network, model), x.numpy()), expected) < 1e-5


def test_graph_size_does_not_grow_with_channels() -> None:
    spec = (
        "network w {{ input 3 x 8 x 8  conv {w} td relu bn  conv {w} q  maxpool 2"
        "  block {w} first=plain second=td  block {w2} q stride=2  globalpool  dense 2 }}\n"
    )
    sizes = []
    for width in (8, 64):
        compiled, network, model = build(TD + Q + spec.format(w=width, w2=2 * width))
        sizes.append(len(export(compiled, network, model).graph.node))
    assert sizes[0] == sizes[1]


def test_emission_is_deterministic() -> None:
    compiled, network, model = build(SPECS["example"])
    assert export(compiled, network, model).SerializeToString() == (
        export(compiled, network, model).SerializeToString()
    )


def test_missing_batchnorm_statistics_are_an_input_error() -> None:
    compiled, network, model = build(SPECS["example"])
    weights = {k: v.numpy() for k, v in model.state_dict().items() if k != "bn1.running_var"}
    with pytest.raises(InputError, match="bn1.running_var"):
        to_onnx(compiled, network, weights)
