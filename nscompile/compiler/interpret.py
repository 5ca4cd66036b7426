"""A float64 NumPy evaluator of the IR: the reference the backends are tested against.

Dense layers evaluate a neuron's matrices as they are: the input `x` is batch x in. Conv layers
(`ProgramIR.conv_neurons`, see `ir.Patches`) evaluate the same expressions on feature maps held
as (batch, height, width, channels) arrays: a matrix's rows are the positions, its columns the
last axis, so `a * U.T` (a 1 x 1 conv) is `a @ U.T` over the channels and `Patches(a)` is the
im2col of `a` with the layer's kernel, stride and zero padding, columns channel-major
(c, kh, kw) as a weight out x in x k x k reads as the matrix out x in*k*k. Broadcast ones
(`OneMatrix`: the per-channel bias, a constant added to a map) stay broadcastable, since the IR
does not say whether their rows are the input's or the output's positions.

`evaluate_network` runs a whole network, image stages included (conv, BatchNorm in eval mode,
pooling, flatten, residual blocks), from a state dict keyed like the generated module's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import sympy as sp
from numpy.lib.stride_tricks import sliding_window_view
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixExpr,
    MatrixSymbol,
    OneMatrix,
    Transpose,
    ZeroMatrix,
)

from nscompile.compiler import ops
from nscompile.compiler.ir import (
    BATCH,
    IN,
    KERNEL,
    OUT,
    Apply,
    BatchNorm,
    BlockIR,
    ColumnSlice,
    ConvIR,
    FlattenIR,
    HStack,
    LayerIR,
    NetworkIR,
    NeuronIR,
    Patches,
    PoolIR,
    ProgramIR,
    QuadForm,
    SqDist,
    VStack,
)
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key
from nscompile.visitor import Visitor

Env = dict[sp.Basic, np.ndarray]
State = Mapping[str, np.ndarray]

#: nn.BatchNorm2d's default epsilon, which the generated module uses.
BN_EPS = 1e-5


@dataclass(frozen=True)
class ConvGeometry:
    """A conv layer's k x k convs: kernel side, stride and zero padding (as `F.conv2d`)."""

    kernel: int
    stride: int = 1
    padding: int = 0

    def out_size(self, size: int) -> int:
        return (size + 2 * self.padding - self.kernel) // self.stride + 1


def evaluate_neuron(
    neuron: NeuronIR,
    x: np.ndarray,
    params: Mapping[str, np.ndarray],
    out_features: int,
    conv: ConvGeometry | None = None,
) -> np.ndarray:
    """Evaluate one neuron layer on `x` with tensors named as in the module.

    Dense (`conv` None): `x` is batch x in, the result batch x out. Conv (`neuron` from
    `ProgramIR.conv_neurons`, `conv` the layer's geometry): `x` is batch x C x H x W, the
    result batch x out x H' x W', parameters shaped as the conv-mode IR's (out x in x k x k...).
    """
    if conv is None:
        return _evaluate(neuron, np.asarray(x, np.float64), params, out_features, None)
    nhwc = np.asarray(x, np.float64).transpose(0, 2, 3, 1)
    return _evaluate(neuron, nhwc, params, out_features, conv).transpose(0, 3, 1, 2)


def _evaluate(
    neuron: NeuronIR,
    x: np.ndarray,
    params: Mapping[str, np.ndarray],
    out_features: int,
    conv: ConvGeometry | None,
) -> np.ndarray:
    """`evaluate_neuron` on a batch x in matrix, or in conv mode on a (B, H, W, C) map."""
    dims = {BATCH: x.shape[0], IN: x.shape[-1], OUT: out_features}
    if conv is not None:
        dims[KERNEL] = conv.kernel
    env: Env = {neuron.input: x}
    for param in neuron.params:
        value = np.asarray(params[param.name], dtype=np.float64)
        if param.role == "bias":
            value = value.reshape(1, -1)
        elif conv is not None:  # a conv weight out x in x k x k is the matrix out x in*k*k
            value = value.reshape(value.shape[0], -1)
        env[param.symbol] = value
    norms = {name: _own(params, f"{name}.") for name in neuron.norms}  # `bn=terms`
    evaluator = _Evaluator(env, dims, conv, x.shape, norms)
    for target, expr in neuron.assignments:
        env[target] = evaluator(expr)
    out = evaluator(neuron.output)
    if conv is None:
        return out
    batch, height, width, _ = x.shape
    shape = (batch, conv.out_size(height), conv.out_size(width), out_features)
    return np.broadcast_to(out, shape).copy()


def evaluate_network(
    program: ProgramIR, network: NetworkIR, x: np.ndarray, state: State
) -> np.ndarray:
    """Evaluate a whole network with a state dict keyed like the generated module's.

    An image network takes batch x C x H x W, or rows of C*H*W pixels (channel-major) as the
    generated module does. Feature maps are (B, H, W, C) here between stages.
    """
    neurons = {n.name: n for n in program.neurons}
    h = np.asarray(x, dtype=np.float64)
    if network.image is not None:
        if h.ndim == 2:
            h = h.reshape(h.shape[0], *network.image)
        h = h.transpose(0, 2, 3, 1)
    for index, layer in enumerate(network.layers, start=1):
        own = _own(state, layer_key(index, ""))  # "layer3.": every key of the layer's parameters
        if isinstance(layer, LayerIR):
            if h.ndim != 2:
                raise InternalError(f"dense layer {index} on a feature map {h.shape}")
            if layer.neuron is None:
                h = h @ own["weight"].T + own["bias"]
            else:
                h = _evaluate(neurons[layer.neuron], h, own, layer.out_features, None)
            h = ops.ACTIVATIONS[layer.activation].numpy(h)
        elif isinstance(layer, ConvIR):
            geometry = ConvGeometry(layer.kernel, layer.stride, layer.padding)
            neuron = (
                None if layer.neuron is None else program.conv_neuron(layer.neuron, layer.term_bn)
            )
            h = _conv(h, neuron, own, layer.out_channels, geometry)
            if layer.bn:
                h = _batch_norm(h, _own(state, f"bn{index}."))
            h = ops.ACTIVATIONS[layer.activation].numpy(h)
        elif isinstance(layer, PoolIR):
            h = _pool(h, layer)
        elif isinstance(layer, FlattenIR):
            h = h.transpose(0, 3, 1, 2).reshape(h.shape[0], -1) if h.ndim == 4 else h
        elif isinstance(layer, BlockIR):
            h = _block(h, layer, own, program)
        else:
            raise InternalError(f"no evaluation of stage {type(layer).__name__}")
    return h


def _own(state: State, prefix: str) -> dict[str, np.ndarray]:
    """The entries of `state` under `prefix`, with the prefix dropped, as float64 arrays."""
    n = len(prefix)
    return {k[n:]: np.asarray(v, np.float64) for k, v in state.items() if k.startswith(prefix)}


def _conv(
    h: np.ndarray,
    neuron: NeuronIR | None,
    params: Mapping[str, np.ndarray],
    out_channels: int,
    geometry: ConvGeometry,
) -> np.ndarray:
    """A conv layer on a (B, H, W, C) map: the conv neuron's IR, or `nn.Conv2d` (bias if any)."""
    if h.ndim != 4:
        raise InternalError(f"a conv layer on {h.shape}, not a feature map")
    if neuron is not None:
        return _evaluate(neuron, h, params, out_channels, geometry)
    weight = params["weight"]
    out = patches(h, geometry) @ weight.reshape(weight.shape[0], -1).T
    return out + params["bias"] if "bias" in params else out


def _batch_norm(h: np.ndarray, params: Mapping[str, np.ndarray]) -> np.ndarray:
    """Eval-mode BatchNorm2d over the channels (the last axis)."""
    scale = params["weight"] / np.sqrt(params["running_var"] + BN_EPS)
    return (h - params["running_mean"]) * scale + params["bias"]


def _pool(h: np.ndarray, pool: PoolIR) -> np.ndarray:
    """Max or average pooling of a (B, H, W, C) map, or the global average (-> B x C)."""
    if pool.kernel == 0:
        return h.mean(axis=(1, 2))
    if pool.kind not in ("max", "avg"):
        raise InternalError(f"no pooling {pool.kind!r}")
    fill = -np.inf if pool.kind == "max" else 0.0  # zeros count in the average, as torch's
    windows = _windows(h, pool.kernel, pool.stride, pool.padding, fill)  # (B, H', W', C, k, k)
    return windows.max(axis=(4, 5)) if pool.kind == "max" else windows.mean(axis=(4, 5))


def _block(
    h: np.ndarray, block: BlockIR, params: Mapping[str, np.ndarray], program: ProgramIR
) -> np.ndarray:
    """A residual basic block on a (B, H, W, C) map."""
    act = ops.ACTIVATIONS[block.activation].numpy
    width = block.out_channels
    first = None if block.first is None else program.conv_neuron(block.first, block.term_bn)
    second = None if block.second is None else program.conv_neuron(block.second, block.term_bn)
    out = _conv(h, first, _own(params, "conv1."), width, ConvGeometry(3, block.stride, 1))
    if block.normalised(block.first):
        out = _batch_norm(out, _own(params, "bn1."))
    out = act(out)
    out = _conv(out, second, _own(params, "conv2."), width, ConvGeometry(3, 1, 1))
    if block.normalised(block.second):
        out = _batch_norm(out, _own(params, "bn2."))
    shortcut = h
    if block.projection:
        geometry = ConvGeometry(1, block.stride, 0)
        shortcut = _conv(h, None, _own(params, "shortcut.0."), width, geometry)
        shortcut = _batch_norm(shortcut, _own(params, "shortcut.1."))
    return act(out + shortcut)


def _windows(h: np.ndarray, kernel: int, stride: int, padding: int, fill: float) -> np.ndarray:
    """The k x k windows of a (B, H, W, C) map padded with `fill`: (B, H', W', C, k, k)."""
    if padding:
        pad = ((0, 0), (padding, padding), (padding, padding), (0, 0))
        h = np.pad(h, pad, constant_values=fill)
    windows = sliding_window_view(h, (kernel, kernel), axis=(1, 2))
    return windows[:, ::stride, ::stride]


def patches(h: np.ndarray, geometry: ConvGeometry) -> np.ndarray:
    """The im2col of a (B, H, W, C) map: (B, H', W', C*k*k), columns channel-major (c, kh, kw)."""
    windows = _windows(h, geometry.kernel, geometry.stride, geometry.padding, 0.0)
    return windows.reshape(*windows.shape[:3], -1)


class _Evaluator(Visitor):
    """IR expressions -> float64 arrays, given the values of the symbols and the sizes.

    `conv`: a conv layer's geometry; then matrices are (B, H, W, columns) arrays (broadcast
    ones (1, 1, 1, columns)) and `input_shape` is the layer input's (B, H, W, C).
    """

    def __init__(
        self,
        env: Env,
        dims: dict[sp.Symbol, int],
        conv: ConvGeometry | None = None,
        input_shape: tuple[int, ...] | None = None,
        norms: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    ) -> None:
        self.env = env
        self.dims = dims
        self.conv = conv
        self.input_shape = input_shape
        self.norms = norms or {}  # BatchNorm module -> its tensors (`bn=terms`)

    def __call__(self, expr: sp.Basic) -> np.ndarray:
        if expr in self.env:
            return self.env[expr]
        return self.visit(expr)

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def _visit_MatrixSymbol(self, node: MatrixSymbol) -> np.ndarray:
        raise InternalError(f"{node} has no value")

    def _visit_Transpose(self, node: Transpose) -> np.ndarray:
        value = self(node.arg)
        if value.ndim != 2:
            raise InternalError(f"{node}: transpose of a feature map")
        return value.T

    def _visit_MatMul(self, node: MatMul) -> np.ndarray:
        scalar, matrices = 1.0, []
        for arg in node.args:
            if isinstance(arg, MatrixExpr):
                matrices.append(self(arg))
            else:
                scalar *= float(arg)
        result = matrices[0]
        for matrix in matrices[1:]:
            result = result @ matrix
        return scalar * result

    def _visit_MatAdd(self, node: MatAdd) -> np.ndarray:
        return sum((self(a) for a in node.args[1:]), self(node.args[0]))

    def _visit_HadamardProduct(self, node: HadamardProduct) -> np.ndarray:
        result = self(node.args[0])
        for arg in node.args[1:]:
            result = result * self(arg)
        return result

    def _visit_HadamardPower(self, node: HadamardPower) -> np.ndarray:
        return self(node.base) ** int(node.exp)

    def _visit_Apply(self, node: Apply) -> np.ndarray:
        return ops.ELEMENTWISE[node.name].numpy(self(node.arg))

    def _visit_HStack(self, node: HStack) -> np.ndarray:
        parts = [self(a) for a in node.args]
        if self.conv is None:
            return np.concatenate(parts, axis=1)
        rows = np.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return np.concatenate([np.broadcast_to(p, (*rows, p.shape[-1])) for p in parts], axis=-1)

    def _visit_VStack(self, node: VStack) -> np.ndarray:
        parts = [self(a) for a in node.args]
        if any(p.ndim != 2 for p in parts):
            raise InternalError(f"{node}: feature maps one above the other")
        return np.concatenate(parts, axis=0)

    def _visit_ColumnSlice(self, node: ColumnSlice) -> np.ndarray:
        return self(node.args[0])[..., self.size(node.args[1]) : self.size(node.args[2])]

    def _visit_Patches(self, node: Patches) -> np.ndarray:
        if self.conv is None or self.input_shape is None:
            raise InternalError(f"{node} outside a conv layer")
        arg = self(node.arg)  # at the input's positions: broadcast ones take its shape
        arg = np.broadcast_to(arg, (*self.input_shape[:-1], arg.shape[-1]))
        return patches(arg, self.conv)

    def _visit_QuadForm(self, node: QuadForm) -> np.ndarray:
        rows = self(node.arg)  # (..., n): rows, or a conv's patches
        n = rows.shape[-1]
        weight = self(node.weight).reshape(-1, n, n)  # unit o's matrix W_o
        return np.einsum("...i,oij,...j->...o", rows, weight, rows)

    def _visit_SqDist(self, node: SqDist) -> np.ndarray:
        rows = self(node.arg)
        centres = self(node.centre).reshape(-1, rows.shape[-1])
        return ((rows[..., None, :] - centres) ** 2).sum(axis=-1)  # the definition, no expansion

    def _visit_BatchNorm(self, node: BatchNorm) -> np.ndarray:
        if node.name not in self.norms:
            raise InternalError(f"{node}: no tensors for BatchNorm {node.name}")
        return _batch_norm(self(node.arg), self.norms[node.name])

    def _visit_OneMatrix(self, node: OneMatrix) -> np.ndarray:
        return self._constant(node, 1.0)

    def _visit_ZeroMatrix(self, node: ZeroMatrix) -> np.ndarray:
        return self._constant(node, 0.0)

    def _constant(self, node: MatrixExpr, value: float) -> np.ndarray:
        rows, columns = self.size(node.shape[0]), self.size(node.shape[1])
        if self.conv is not None and node.shape[0] == BATCH:  # positions: broadcast
            return np.full((1, 1, 1, columns), value)
        return np.full((rows, columns), value)

    def _visit_Number(self, node: sp.Number) -> np.ndarray:
        return np.asarray(float(node))
