"""The NumPy evaluator on image networks: conv neurons, plain convs, BatchNorm, pooling,
flatten and residual blocks, on the lowered and on the optimised IR.

The reference here is written once more from the meaning (DESIGN §3) with
`torch.nn.functional`, one conv per term, from random weights shaped by the IR's parameters and
the state-dict contract; it shares nothing with the evaluator but the key names. Last, the
generated module loads the same state dict (strict) and agrees with the evaluator.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
import pytest
import sympy as sp
import torch
from helpers import compile_and_import, relative_error
from torch.nn import functional as F

from nscompile.compiler.interpret import ConvGeometry, evaluate_network, evaluate_neuron
from nscompile.compiler.ir import (
    IN,
    KERNEL,
    OUT,
    BlockIR,
    ConvIR,
    FlattenIR,
    LayerIR,
    NetworkIR,
    NeuronIR,
    PoolIR,
    ProgramIR,
)
from nscompile.compiler.pipeline import Compiled, compile_text

TOLERANCE = 1e-9

NEURONS = """
neuron td { rank 4
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
neuron q { y = <wr, x> * <wg, x> + <wb, x**2> + b }
neuron f { y = <w, x**3> + <v, sin(x)> + b }
neuron c { rank 3  y = cp(x, 2) + b }
neuron k { rank 2  y = <w, sin(x) + 1> * <v, x> + 0.5 + cp(x**2 - 1, 1) }
"""

#: network name -> body; together every stage kind, kernels 1/3/5, strides 1/2, padding 0/1/2,
#: both shortcuts, plain and task-driven convs and blocks, dense neurons after the image stages.
NETWORKS = {
    "brief": """
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
""",
    "mixed": """
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
""",
    "plain": """
    input 3 x 10 x 10
    conv 4 kernel=5 stride=2 padding=2 bn tanh
    block 4
    block 6 stride=2
    block 6 shortcut=conv
    avgpool 3 stride=2 padding=1
    flatten
    dense 5 tanh
    dense 2
    task regression
""",
    "pools": """
    input 2 x 11 x 11
    conv 3 k padding=0
    conv 4 f kernel=5 stride=2 padding=2 bn silu
    maxpool 3 stride=2 padding=1
    block 5 c first=plain gelu
    avgpool 2 stride=1
    flatten
    dense 6 td relu
    dense 4 q
    dense 2
    task regression
""",
}


@functools.cache
def _compile(name: str) -> Compiled:
    return compile_text(NEURONS + f"network {name} {{{NETWORKS[name]}}}\n", f"{name}.ns")


@functools.cache
def _all_conv_neurons(stage: str) -> dict[str, NeuronIR]:
    """Every neuron above lowered as a conv layer, from the lowered or the optimised program."""
    program: ProgramIR = getattr(_compile("pools"), stage)
    found = {n.name: n for n in program.conv_neurons}
    for name in ("mixed", "brief"):
        found.update({n.name: n for n in getattr(_compile(name), stage).conv_neurons})
    return found


# --- the meaning, with torch.nn.functional ----------------------------------------------------

Tensors = dict[str, torch.Tensor]
Inner = Callable[[torch.Tensor, str], torch.Tensor]
CP = Callable[[torch.Tensor, int], torch.Tensor]


def _meaning(neuron: str, x: torch.Tensor, inner: Inner, cp: CP, bias: torch.Tensor):
    """DESIGN §3 for the neurons above, given what `<w, e>` and `cp(e, m)` mean."""
    if neuron == "td":
        return inner(x, "w1") + inner(x**2, "w2") + cp(x, 2) + cp(x, 3) + bias
    if neuron == "q":
        return inner(x, "wr") * inner(x, "wg") + inner(x**2, "wb") + bias
    if neuron == "f":
        return inner(x**3, "w") + inner(torch.sin(x), "v") + bias
    if neuron == "c":
        return cp(x, 2) + bias
    if neuron == "k":
        return inner(torch.sin(x) + 1, "w") * inner(x, "v") + 0.5 + cp(x**2 - 1, 1)
    raise AssertionError(neuron)


def _conv_neuron(neuron: str, x: torch.Tensor, p: Tensors, stride: int, padding: int):
    """A conv layer: `<w, e>` a k x k conv of e, cp's factors 1 x 1 convs, its map k x k."""

    def inner(arg: torch.Tensor, weight: str) -> torch.Tensor:
        return F.conv2d(arg, p[weight], stride=stride, padding=padding)

    def cp(arg: torch.Tensor, order: int) -> torch.Tensor:
        product = F.conv2d(arg, p[f"cp{order}_u1"])
        for m in range(2, order + 1):
            product = product * F.conv2d(arg, p[f"cp{order}_u{m}"])
        return F.conv2d(product, p[f"cp{order}_a"], stride=stride, padding=padding)

    bias = p["bias"][:, None, None] if "bias" in p else 0.0
    return _meaning(neuron, x, inner, cp, bias)


def _dense_neuron(neuron: str, x: torch.Tensor, p: Tensors) -> torch.Tensor:
    def inner(arg: torch.Tensor, weight: str) -> torch.Tensor:
        return arg @ p[weight].T

    def cp(arg: torch.Tensor, order: int) -> torch.Tensor:
        product = arg @ p[f"cp{order}_u1"]
        for m in range(2, order + 1):
            product = product * (arg @ p[f"cp{order}_u{m}"])
        return product @ p[f"cp{order}_a"]

    return _meaning(neuron, x, inner, cp, p.get("bias", 0.0))


ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "identity": lambda t: t,
    "relu": torch.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "gelu": F.gelu,
    "silu": F.silu,
}


def _sub(state: Tensors, prefix: str) -> Tensors:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _bn(h: torch.Tensor, p: Tensors) -> torch.Tensor:
    mean, var = p["running_mean"], p["running_var"]
    return F.batch_norm(h, mean, var, p["weight"], p["bias"], training=False, eps=1e-5)


def _conv(neuron: str | None, h: torch.Tensor, p: Tensors, stride: int, padding: int):
    if neuron is None:
        return F.conv2d(h, p["weight"], p.get("bias"), stride=stride, padding=padding)
    return _conv_neuron(neuron, h, p, stride, padding)


def _reference(network: NetworkIR, x: np.ndarray, state: dict[str, np.ndarray]) -> np.ndarray:
    """The network's meaning, stage by stage, with torch.nn.functional in float64."""
    tensors = {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
    h = torch.from_numpy(x)
    for i, layer in enumerate(network.layers, start=1):
        own = _sub(tensors, f"layer{i}.")
        if isinstance(layer, ConvIR):
            h = _conv(layer.neuron, h, own, layer.stride, layer.padding)
            h = _bn(h, _sub(tensors, f"bn{i}.")) if layer.bn else h
            h = ACTIVATIONS[layer.activation](h)
        elif isinstance(layer, PoolIR) and layer.kernel == 0:
            h = h.mean((2, 3))
        elif isinstance(layer, PoolIR):
            pool = F.max_pool2d if layer.kind == "max" else F.avg_pool2d
            h = pool(h, layer.kernel, layer.stride, layer.padding)
        elif isinstance(layer, FlattenIR):
            h = h.flatten(1)
        elif isinstance(layer, BlockIR):
            act = ACTIVATIONS[layer.activation]
            out = _conv(layer.first, h, _sub(own, "conv1."), layer.stride, 1)
            out = act(_bn(out, _sub(own, "bn1.")))
            out = _bn(_conv(layer.second, out, _sub(own, "conv2."), 1, 1), _sub(own, "bn2."))
            shortcut = h
            if layer.projection:
                shortcut = F.conv2d(h, own["shortcut.0.weight"], stride=layer.stride)
                shortcut = _bn(shortcut, _sub(own, "shortcut.1."))
            h = act(out + shortcut)
        else:
            assert isinstance(layer, LayerIR)
            if layer.neuron is None:
                h = F.linear(h, own["weight"], own["bias"])
            else:
                h = _dense_neuron(layer.neuron, h, own)
            h = ACTIVATIONS[layer.activation](h)
    return h.numpy()


# --- random weights of the contract's shapes --------------------------------------------------


def _tensor(rng: np.random.Generator, shape: tuple[int, ...], role: str) -> np.ndarray:
    if role == "bias":
        return 0.3 * rng.standard_normal(shape)
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    if role in ("factor", "output") and len(shape) == 2:  # dense cp: in x R, R x out
        fan_in = shape[0]
    return 0.5 * rng.standard_normal(shape) / np.sqrt(fan_in)


def _neuron_params(
    rng: np.random.Generator, neuron: NeuronIR, sizes: dict[sp.Symbol, int]
) -> dict[str, np.ndarray]:
    params = {}
    for p in neuron.params:
        shape = tuple(int(sp.sympify(s).subs(sizes)) for s in p.shape)
        params[p.name] = _tensor(rng, shape, p.role)
    return params


def _bn_state(rng: np.random.Generator, channels: int) -> dict[str, np.ndarray]:
    return {
        "weight": 1 + 0.3 * rng.standard_normal(channels),
        "bias": 0.3 * rng.standard_normal(channels),
        "running_mean": 0.3 * rng.standard_normal(channels),
        "running_var": rng.uniform(0.5, 1.5, channels),
        "num_batches_tracked": np.array(7, dtype=np.int64),
    }


def _random_state(program: ProgramIR, network: NetworkIR, seed: int) -> dict[str, np.ndarray]:
    """A state dict keyed and shaped as the contract says, random BatchNorm statistics too."""
    rng = np.random.default_rng(seed)
    convs = {n.name: n for n in program.conv_neurons}
    denses = {n.name: n for n in program.neurons}
    state: dict[str, np.ndarray] = {}

    def put(prefix: str, entries: dict[str, np.ndarray]) -> None:
        state.update({prefix + k: v for k, v in entries.items()})

    def conv(prefix: str, neuron: str | None, cin: int, cout: int, k: int, bias: bool) -> None:
        if neuron is not None:
            put(prefix, _neuron_params(rng, convs[neuron], {IN: cin, OUT: cout, KERNEL: k}))
            return
        put(prefix, {"weight": _tensor(rng, (cout, cin, k, k), "weight")})
        if bias:
            put(prefix, {"bias": _tensor(rng, (cout,), "bias")})

    for i, layer in enumerate(network.layers, start=1):
        if isinstance(layer, ConvIR):
            cin, cout = layer.in_channels, layer.out_channels
            conv(f"layer{i}.", layer.neuron, cin, cout, layer.kernel, bias=True)
            if layer.bn:
                put(f"bn{i}.", _bn_state(rng, cout))
        elif isinstance(layer, BlockIR):
            cin, cout = layer.in_channels, layer.out_channels
            conv(f"layer{i}.conv1.", layer.first, cin, cout, 3, bias=False)
            put(f"layer{i}.bn1.", _bn_state(rng, cout))
            conv(f"layer{i}.conv2.", layer.second, cout, cout, 3, bias=False)
            put(f"layer{i}.bn2.", _bn_state(rng, cout))
            if layer.projection:
                put(f"layer{i}.shortcut.0.", {"weight": _tensor(rng, (cout, cin, 1, 1), "weight")})
                put(f"layer{i}.shortcut.1.", _bn_state(rng, cout))
        elif isinstance(layer, LayerIR):
            sizes = {IN: layer.in_features, OUT: layer.out_features}
            if layer.neuron is None:
                shape = (layer.out_features, layer.in_features)
                put(f"layer{i}.", {"weight": _tensor(rng, shape, "weight")})
                put(f"layer{i}.", {"bias": _tensor(rng, (layer.out_features,), "bias")})
            else:
                put(f"layer{i}.", _neuron_params(rng, denses[layer.neuron], sizes))
    return state


def _input(network: NetworkIR, batch: int, seed: int) -> np.ndarray:
    assert network.image is not None
    return np.random.default_rng(seed).standard_normal((batch, *network.image))


# --- the tests --------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", ["lowered", "optimized"])
@pytest.mark.parametrize("neuron", ["td", "q", "f", "c", "k"])
@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(3, 1, 1), (5, 2, 0), (1, 1, 0), (3, 2, 0), (5, 1, 2)]
)
def test_each_conv_neuron_evaluates_to_its_meaning(stage, neuron, kernel, stride, padding):
    ir = _all_conv_neurons(stage)[neuron]
    rng = np.random.default_rng(kernel * 100 + stride * 10 + padding)
    params = _neuron_params(rng, ir, {IN: 3, OUT: 4, KERNEL: kernel})
    x = rng.standard_normal((2, 3, 7, 8))
    geometry = ConvGeometry(kernel, stride, padding)
    out = evaluate_neuron(ir, x, params, 4, geometry)
    tensors = {k: torch.from_numpy(v) for k, v in params.items()}
    expected = _conv_neuron(neuron, torch.from_numpy(x), tensors, stride, padding).numpy()
    assert out.shape == expected.shape == (2, 4, geometry.out_size(7), geometry.out_size(8))
    assert relative_error(out, expected) < TOLERANCE


@pytest.mark.parametrize("stage", ["lowered", "optimized"])
@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_image_networks_evaluate_to_their_meaning(stage, name):
    compiled = _compile(name)
    program: ProgramIR = getattr(compiled, stage)
    network = program.networks[0]
    state = _random_state(program, network, seed=len(name))
    x = _input(network, batch=3, seed=1)
    out = evaluate_network(program, network, x, state)
    expected = _reference(network, x, state)
    assert out.shape == expected.shape == (3, network.out_features)
    assert relative_error(out, expected) < TOLERANCE
    # the generated module's other input: rows of C*H*W pixels, channel-major
    rows = evaluate_network(program, network, x.reshape(3, -1), state)
    assert relative_error(rows, expected) < TOLERANCE


def test_the_networks_cover_every_stage_kind():
    layers = [layer for name in NETWORKS for layer in _compile(name).optimized.networks[0].layers]
    convs = [layer for layer in layers if isinstance(layer, ConvIR)]
    blocks = [layer for layer in layers if isinstance(layer, BlockIR)]
    pools = {(p.kind, p.kernel == 0) for p in layers if isinstance(p, PoolIR)}
    assert {c.kernel for c in convs} == {1, 3, 5} and {c.stride for c in convs} == {1, 2}
    assert {c.padding for c in convs} >= {0, 1, 2} and {c.bn for c in convs} == {True, False}
    assert {c.neuron for c in convs} >= {"td", "q", "f", "c", "k", None}
    assert {b.projection for b in blocks} == {True, False}
    assert {b.first for b in blocks} >= {None, "td"} and {b.stride for b in blocks} == {1, 2}
    assert pools == {("max", False), ("avg", False), ("avg", True)}
    assert any(isinstance(layer, FlattenIR) for layer in layers)
    assert any(isinstance(layer, LayerIR) and layer.neuron for layer in layers)


def test_the_lowered_and_optimised_programs_evaluate_alike_on_a_batch_of_one():
    compiled = _compile("mixed")
    network = compiled.lowered.networks[0]
    state = _random_state(compiled.lowered, network, seed=5)
    x = _input(network, batch=1, seed=2)
    a = evaluate_network(compiled.lowered, network, x, state)
    b = evaluate_network(compiled.optimized, compiled.optimized.networks[0], x, state)
    assert a.shape == (1, 3) and relative_error(b, a) < 1e-12


@pytest.mark.parametrize("name", sorted(NETWORKS))
def test_the_generated_module_equals_the_evaluator(name):
    text = NEURONS + f"network {name} {{{NETWORKS[name]}}}\n"
    compiled, module = compile_and_import(text, f"{name}.ns")
    network = compiled.optimized.networks[0]
    state = _random_state(compiled.lowered, network, seed=11)
    model = module.build().double().eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()}, strict=True)
    x = _input(network, batch=4, seed=3)
    with torch.no_grad():
        actual = model(torch.from_numpy(x)).numpy()
    expected = evaluate_network(compiled.optimized, network, x, state)
    assert relative_error(actual, expected) < TOLERANCE
