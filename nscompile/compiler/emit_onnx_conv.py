"""ONNX lowering of an image network's stages: conv layers, pooling, flatten, residual blocks.

`emit_onnx` calls `stage_shapes` and `lower_stage` for every stage that is not a dense layer;
the meaning is the generated module's (see `emit_torch`), stage by stage:

- a plain conv stage is one `Conv` (weight and bias); a task-driven one is its conv-mode neuron
  IR (`ProgramIR.conv_neurons`) lowered by `_ConvLowering`, every value an NCHW feature map;
- BatchNorm (eval mode, eps 1e-5: `(h - mean) / sqrt(var + eps) * weight + bias`) is folded
  into the weights at export time where that is exact: after a plain conv (a stage's, a block's
  bias-free one, the projection shortcut's) the conv's weight is scaled per output channel and
  its bias becomes `(bias - mean) * scale + beta`, so no BN node remains. After a task-driven
  layer the neuron is not linear in its weights, so the BN stays a per-channel affine after the
  neuron's sum: one `Mul` by `scale` and one `Add` of `beta - mean * scale`, both (1, C, 1, 1)
  initializers computed at export time. A layer with a BatchNorm per term (`bn=terms`) folds
  each term's into that term's last weight where exact and every shift into the bias
  (`term_bn_fold` says where), else one per-channel `Mul` for that term;
- pooling is `MaxPool` / `AveragePool` (count_include_pad=1, torch's default), the global
  average one `ReduceMean` over H and W; flatten is `Flatten(axis=1)` (channel-major).

Only the initializers the graph reads are in it: a state-dict tensor under its own key when a
node reads it unchanged, and tensors computed from the weights (concatenations the fusion pass
asks for, folded BN) under names of their own, `layer{i}...:what_n`. The node count depends
on the spec's structure, never on channel counts or sizes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import sympy as sp
from sympy import (
    HadamardPower,
    HadamardProduct,
    MatAdd,
    MatMul,
    MatrixSymbol,
    OneMatrix,
    Transpose,
)

from nscompile.compiler import ops
from nscompile.compiler.ir import (
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
    NeuronIR,
    Patches,
    PoolIR,
    ProgramIR,
    QuadForm,
    SqDist,
    VStack,
    product_factors,
)
from nscompile.compiler.term_bn_fold import FoldPlan, fold_plan
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key
from nscompile.visitor import Visitor


class GraphBuilder(Protocol):
    """What this module needs of `emit_onnx.GraphBuilder` (which imports this module)."""

    def fresh(self, hint: str) -> str: ...

    def initializer(self, name: str, value: np.ndarray) -> str: ...

    def constant(self, value: float | list[float] | np.ndarray, dtype: type = ...) -> str: ...

    def node(
        self, op: str, inputs: list[str], output: str | None = None, **attrs: object
    ) -> str: ...


#: `nn.BatchNorm2d`'s default epsilon, which the generated module keeps.
BN_EPS = 1e-5
#: The tensors of one `nn.BatchNorm2d` in its state dict.
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
#: A residual block's convs are 3 x 3 with padding 1.
BLOCK_KERNEL = 3

ConvStage = ConvIR | PoolIR | FlattenIR | BlockIR


# --- state-dict shapes -------------------------------------------------------------------------


def stage_shapes(program: ProgramIR, index: int, stage: ConvStage) -> dict[str, tuple[int, ...]]:
    """State-dict key -> shape for stage `index` (from 1) of an image network."""
    shapes: dict[str, tuple[int, ...]] = {}
    if isinstance(stage, ConvIR):
        prefix = layer_key(index)
        cin, cout, k = stage.in_channels, stage.out_channels, stage.kernel
        shapes |= _conv_shapes(program, prefix, stage.neuron, cin, cout, k, True, stage.term_bn)
        if stage.bn:
            shapes |= _bn_shapes(f"bn{index}", stage.out_channels)
    elif isinstance(stage, BlockIR):
        prefix, cin, cout = layer_key(index), stage.in_channels, stage.out_channels
        convs = (("1", stage.first, cin), ("2", stage.second, cout))
        for n, neuron, inputs in convs:
            conv = f"{prefix}.conv{n}"
            k = BLOCK_KERNEL
            shapes |= _conv_shapes(program, conv, neuron, inputs, cout, k, False, stage.term_bn)
            if stage.normalised(neuron):
                shapes |= _bn_shapes(f"{prefix}.bn{n}", cout)
        if stage.projection:
            shapes[f"{prefix}.shortcut.0.weight"] = (cout, cin, 1, 1)
            shapes |= _bn_shapes(f"{prefix}.shortcut.1", cout)
    return shapes  # pooling and flatten have no parameters


def _conv_shapes(
    program: ProgramIR,
    prefix: str,
    neuron: str | None,
    cin: int,
    cout: int,
    k: int,
    bias: bool,
    term_bn: bool = False,
) -> dict[str, tuple[int, ...]]:
    if neuron is None:  # nn.Conv2d
        shapes = {f"{prefix}.weight": (cout, cin, k, k)}
        return shapes | ({f"{prefix}.bias": (cout,)} if bias else {})
    dims = {IN: cin, OUT: cout, KERNEL: k}
    ir = program.conv_neuron(neuron, term_bn)
    shapes = {
        f"{prefix}.{p.name}": tuple(int(sp.sympify(s).subs(dims)) for s in p.shape)
        for p in ir.params
    }
    for norm in ir.norms:  # `bn=terms`: the BatchNorm of each term, `layer1.bn_w1.weight`...
        shapes |= _bn_shapes(f"{prefix}.{norm}", cout)
    return shapes


def _bn_shapes(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {
        f"{prefix}.{key}": (() if key == "num_batches_tracked" else (channels,)) for key in BN_KEYS
    }


# --- stages ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Geometry:
    """A k x k conv's kernel side, stride and padding (on all four sides)."""

    kernel: int
    stride: int
    padding: int

    def attrs(self) -> dict[str, list[int]]:
        k, s, p = self.kernel, self.stride, self.padding
        return {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p]}


_ONE_BY_ONE = _Geometry(1, 1, 0)


class _Tensors:
    """The state dict, and the initializers the graph reads: each added once, on first use."""

    def __init__(self, graph: GraphBuilder, weights: Mapping[str, np.ndarray]) -> None:
        self.graph = graph
        self.weights = weights
        self.added: set[str] = set()

    def array(self, key: str) -> np.ndarray:
        return np.asarray(self.weights[key], dtype=np.float32)

    def use(self, key: str) -> str:
        """The initializer holding state-dict tensor `key` unchanged."""
        if key not in self.added:
            self.added.add(key)
            self.graph.initializer(key, self.array(key))
        return key

    def derived(self, owner: str, hint: str, value: np.ndarray) -> str:
        """A new initializer computed from the weights of `owner` (e.g. `layer3.conv1`)."""
        # ':' is in no state-dict key, so the name cannot collide with a parameter's.
        name = self.graph.fresh(f"{owner}:{hint}")
        return self.graph.initializer(name, np.asarray(value, dtype=np.float32))


def lower_stage(
    graph: GraphBuilder,
    program: ProgramIR,
    index: int,
    stage: ConvStage,
    weights: Mapping[str, np.ndarray],
    h: str,
) -> str:
    """Append the nodes of stage `index` reading feature map `h`; return its output's name."""
    tensors = _Tensors(graph, weights)
    if isinstance(stage, ConvIR):
        geometry = _Geometry(stage.kernel, stage.stride, stage.padding)
        bn = f"bn{index}" if stage.bn else None
        h = _conv(tensors, program, layer_key(index), stage.neuron, geometry, h, bn, True,
                  stage.term_bn)  # fmt: skip
        return ops.ACTIVATIONS[stage.activation].onnx(graph, h)
    if isinstance(stage, BlockIR):
        return _block(tensors, program, layer_key(index), stage, h)
    if isinstance(stage, PoolIR):
        return _pool(graph, stage, h)
    if isinstance(stage, FlattenIR):
        return graph.node("Flatten", [h], axis=1)
    raise InternalError(f"no ONNX lowering for stage {stage!r}")


def _block(tensors: _Tensors, program: ProgramIR, prefix: str, block: BlockIR, h: str) -> str:
    """`act(bn2(conv2(act(bn1(conv1(h))))) + shortcut(h))`."""
    graph, act = tensors.graph, ops.ACTIVATIONS[block.activation]
    first = _Geometry(BLOCK_KERNEL, block.stride, 1)
    second = _Geometry(BLOCK_KERNEL, 1, 1)
    bn1 = f"{prefix}.bn1" if block.normalised(block.first) else None
    bn2 = f"{prefix}.bn2" if block.normalised(block.second) else None
    term_bn = block.term_bn
    inner = _conv(tensors, program, f"{prefix}.conv1", block.first, first, h, bn1, False, term_bn)
    inner = act.onnx(graph, inner)
    inner = _conv(tensors, program, f"{prefix}.conv2", block.second, second, inner, bn2, False,
                  term_bn)  # fmt: skip
    shortcut = h
    if block.projection:
        geometry = _Geometry(1, block.stride, 0)
        shortcut = _plain_conv(
            tensors, f"{prefix}.shortcut.0", geometry, h, f"{prefix}.shortcut.1", bias=False
        )
    return act.onnx(graph, graph.node("Add", [inner, shortcut]))


def _conv(
    tensors: _Tensors,
    program: ProgramIR,
    prefix: str,
    neuron: str | None,
    geometry: _Geometry,
    h: str,
    bn: str | None,
    bias: bool = False,
    term_bn: bool = False,
) -> str:
    """A conv (`prefix` names its module) of `h`, then BatchNorm `bn` (a module name) if any;
    `term_bn`: the neuron's `bn=terms` form, each term's BatchNorm folded (`term_bn_fold`)."""
    if neuron is None:
        return _plain_conv(tensors, prefix, geometry, h, bn, bias)
    ir = program.conv_neuron(neuron, term_bn)
    h = _ConvLowering(tensors, ir, prefix, geometry).run(h)
    if bn is None:
        return h
    scale, shift = _bn_affine(tensors, bn)
    graph = tensors.graph
    scale_name = tensors.derived(bn, "scale", scale.reshape(1, -1, 1, 1))
    shift_name = tensors.derived(bn, "shift", shift.reshape(1, -1, 1, 1))
    return graph.node("Add", [graph.node("Mul", [h, scale_name]), shift_name])


def _plain_conv(
    tensors: _Tensors, prefix: str, geometry: _Geometry, h: str, bn: str | None, bias: bool
) -> str:
    """`nn.Conv2d` (with or without its bias), with BatchNorm `bn` folded into it exactly."""
    weight_key, bias_key = f"{prefix}.weight", f"{prefix}.bias"
    if bn is None:
        inputs = [h, tensors.use(weight_key)] + ([tensors.use(bias_key)] if bias else [])
        return tensors.graph.node("Conv", inputs, **geometry.attrs())
    scale, shift = _bn_affine(tensors, bn)
    weight = tensors.array(weight_key).astype(np.float64) * scale[:, None, None, None]
    if bias:
        shift = shift + tensors.array(bias_key).astype(np.float64) * scale
    inputs = [
        h,
        tensors.derived(prefix, f"weight_{_bn_tail(bn)}", weight),
        tensors.derived(prefix, f"bias_{_bn_tail(bn)}", shift),
    ]
    return tensors.graph.node("Conv", inputs, **geometry.attrs())


def _bn_tail(bn: str) -> str:
    """`layer3.bn1` -> `bn1`, `bn2` -> `bn2`: what an initializer's name says it folded."""
    return "folded_" + bn.rpartition(".")[2]


def _bn_affine(tensors: _Tensors, bn: str) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm `bn` in eval mode as `h * scale + shift` per channel, in float64."""
    mean, var, weight, bias = (
        tensors.array(f"{bn}.{key}").astype(np.float64)
        for key in ("running_mean", "running_var", "weight", "bias")
    )
    scale = weight / np.sqrt(var + BN_EPS)
    return scale, bias - mean * scale


def _pool(graph: GraphBuilder, pool: PoolIR, h: str) -> str:
    if pool.kernel == 0:  # global average: h.mean((2, 3))
        axes = graph.constant([2, 3], np.int64)
        return graph.node("ReduceMean", [h, axes], keepdims=0)
    k, s, p = pool.kernel, pool.stride, pool.padding
    attrs: dict[str, object] = {"kernel_shape": [k, k], "strides": [s, s], "pads": [p, p, p, p]}
    if pool.kind == "max":
        return graph.node("MaxPool", [h], **attrs)
    if pool.kind == "avg":
        return graph.node("AveragePool", [h], count_include_pad=1, **attrs)
    raise InternalError(f"unknown pooling '{pool.kind}'")


# --- the conv-mode neuron IR ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Weight:
    """A matrix of the IR that is a constant at export time: a parameter, its transpose, or a
    concatenation or slice of such. `array` is the tensor (out x in x k x k for a conv weight,
    (C,) for a bias); the matrix is its (out x in*k*k) view, or that view's transpose."""

    array: np.ndarray
    transposed: bool = False
    key: str | None = None  # the state-dict key while the tensor is a parameter unchanged


@dataclass(frozen=True)
class _PatchesOf:
    """A feature map whose k x k patches the next product convolves (`Patches`)."""

    name: str


Value = str | _Weight | _PatchesOf


class _ConvLowering(Visitor):
    """Lowers one conv-mode neuron's IR into nodes, for one layer: every matrix of the IR that
    depends on the input is an NCHW feature map (channels = the matrix's columns, on axis 1),
    the parameters are constants. `Patches(a) * W.T` is a `Conv` of `a` with the layer's
    geometry, `a * U.T` a 1 x 1 `Conv`, `OneMatrix * b` the bias as (1, C, 1, 1); HStack and
    VStack of weights are concatenated at export time (output channels: axis 0, input
    channels: axis 1), of feature maps a `Concat` on axis 1; a column slice is a `Slice` on
    axis 1; products, powers and elementwise functions are as in the dense lowering."""

    def __init__(
        self, tensors: _Tensors, neuron: NeuronIR, prefix: str, geometry: _Geometry
    ) -> None:
        self.tensors = tensors
        self.graph = tensors.graph
        self.neuron = neuron
        self.prefix = prefix
        self.geometry = geometry
        self.values: dict[sp.Basic, Value] = {}
        for p in neuron.params:
            key = f"{prefix}.{p.name}"
            self.values[p.symbol] = _Weight(tensors.array(key), key=key)
        self.dims: dict[sp.Symbol, int] = {}
        # `bn=terms`: maps whose output channels take BatchNorm scales, maps whose constant
        # went into those scales, the scales no map takes, the shift no bias takes.
        self.scales: dict[sp.Basic, np.ndarray] = {}
        self.coefficient_folded: set[sp.Basic] = set()
        self.explicit: dict[str, np.ndarray] = {}
        self.shift: np.ndarray | None = None

    def run(self, h: str) -> str:
        self.dims = self._dims()
        self.values[self.neuron.input] = h
        if self.neuron.norms:
            self._fold_norms(fold_plan(self.neuron))
        for target, expr in self.neuron.assignments:
            self.values[target] = self.lower(expr)
        out = self.map(self.lower(self.neuron.output), self.neuron.output)
        if self.shift is None:
            return out
        shift = self.tensors.derived(self.prefix, "bn_shift", self.shift.reshape(1, -1, 1, 1))
        return self.graph.node("Add", [out, shift])

    def _fold_norms(self, plan: FoldPlan) -> None:
        """Each term's eval-mode BatchNorm `s * term + c` (see `term_bn_fold`): `s` into the
        weights `plan` names (or an explicit `Mul`), every `c` into the bias."""
        shift = np.zeros(self.size(OUT))
        for norm in self.neuron.norms:
            scale, c = _bn_affine(self.tensors, f"{self.prefix}.{norm}")
            shift += c
            fold = plan.folds[norm]
            if fold.target is None:
                self.explicit[norm] = scale
                continue
            coefficient, matrices = product_factors(fold.target)
            if fold.with_coefficient:
                scale = scale * float(coefficient)
                self.coefficient_folded.add(fold.target)
            columns = self.scales.setdefault(fold.target, np.ones(self.size(matrices[1].shape[1])))
            columns[self.size(fold.start) : self.size(fold.stop)] *= scale
        if plan.bias is None:
            self.shift = shift
            return
        coefficient, (bias,) = product_factors(plan.bias)
        weight = self.values[bias]
        assert isinstance(weight, _Weight)
        self.values[bias] = _Weight(weight.array + shift / float(coefficient))

    def _dims(self) -> dict[sp.Symbol, int]:
        """IN, OUT and KERNEL of this layer, read off the parameters' actual shapes."""
        dims: dict[sp.Symbol, int] = {}
        for p in self.neuron.params:
            actual = self.tensors.array(f"{self.prefix}.{p.name}").shape
            for symbolic, size in zip(p.shape, actual, strict=True):
                symbolic = sp.sympify(symbolic)
                if symbolic in (IN, OUT, KERNEL):
                    dims[symbolic] = int(size)
        return dims

    def size(self, value: sp.Expr) -> int:
        return int(sp.sympify(value).subs(self.dims))

    def lower(self, expr: sp.Basic) -> Value:
        if expr in self.values:
            return self.values[expr]
        return self.visit(expr)

    def map(self, value: Value, expr: sp.Basic) -> str:
        """`value` as a feature map (or scalar constant) name; weights are not maps."""
        if isinstance(value, str):
            return value
        raise InternalError(f"{self.neuron.name}: {expr} is no feature map")

    def maps(self, exprs: tuple[sp.Basic, ...]) -> list[str]:
        return [self.map(self.lower(e), e) for e in exprs]

    def weight_name(self, weight: _Weight, hint: str) -> str:
        if weight.key is not None:
            return self.tensors.use(weight.key)
        return self.tensors.derived(self.prefix, hint, weight.array)

    def chain(self, op: str, args: list[str]) -> str:
        result = args[0]
        for arg in args[1:]:
            result = self.graph.node(op, [result, arg])
        return result

    def conv(self, source: Value, weight: _Weight, expr: sp.Basic) -> str:
        """`Patches(a) * W.T` (the layer's k x k conv) or `a * U.T` (a 1 x 1 conv)."""
        if not weight.transposed or weight.array.ndim != 4:
            raise InternalError(f"{self.neuron.name}: {expr} is no conv")
        if isinstance(source, _PatchesOf):
            name, geometry = source.name, self.geometry
        else:
            name, geometry = self.map(source, expr), _ONE_BY_ONE
        k = geometry.kernel
        if weight.array.shape[2:] != (k, k):
            raise InternalError(f"{self.neuron.name}: {expr} has a weight {weight.array.shape}")
        inputs = [name, self.weight_name(weight, "weight")]
        return self.graph.node("Conv", inputs, **geometry.attrs())

    def _visit_MatMul(self, node: MatMul) -> Value:
        coefficient, matrices = product_factors(node)
        scalar = float(coefficient)
        if all(isinstance(m, OneMatrix) for m in matrices):
            return self.graph.constant(scalar)
        values = [self.lower(m) for m in matrices]
        if len(values) == 1 and isinstance(values[0], _Weight) and values[0].array.ndim == 1:
            # `OneMatrix * bias`: the per-channel bias, scaled at export time.
            bias = values[0].array.astype(np.float64).reshape(1, -1, 1, 1) * scalar
            return self.tensors.derived(self.prefix, "bias", bias)
        if len(values) == 1 and isinstance(values[0], str):  # `0.5 * tanh(<w, x>)`: a scaled map
            return self.graph.node("Mul", [values[0], self.graph.constant(scalar)])
        if len(values) != 2 or not isinstance(values[1], _Weight):
            raise InternalError(f"{self.neuron.name}: {node} is no conv")
        result = self.conv(values[0], self._scaled(node, values[1]), node)
        if scalar == 1 or node in self.coefficient_folded:
            return result
        return self.graph.node("Mul", [result, self.graph.constant(scalar)])

    def _scaled(self, node: sp.Basic, weight: _Weight) -> _Weight:
        """`weight` with its output channels scaled by the BatchNorms folded into `node`."""
        if node not in self.scales:
            return weight
        columns = self.scales[node]
        if not weight.transposed or weight.array.ndim != 4 or len(columns) != len(weight.array):
            raise InternalError(f"{self.neuron.name}: {node} cannot take a BatchNorm's scale")
        array = weight.array.astype(np.float64) * columns[:, None, None, None]
        return _Weight(array, transposed=True)

    def _visit_BatchNorm(self, node: BatchNorm) -> Value:
        value = self.map(self.lower(node.arg), node)
        if node.name not in self.explicit:
            return value  # its scale is in a weight (`_fold_norms`), its shift in the bias
        scale = self.explicit[node.name].reshape(1, -1, 1, 1)
        name = self.tensors.derived(f"{self.prefix}.{node.name}", "scale", scale)
        return self.graph.node("Mul", [value, name])

    def _visit_QuadForm(self, node: QuadForm) -> Value:
        """Every patch's p^T W_o p without the patches: t = conv(a, K) with K's output channel
        (o, j) = W_o[:, j] (so t[(o, j)] = sum_i p_i W_o[i, j]); the patches themselves
        conv(a, I) (identity kernels), tiled once per unit; their product summed per unit by a
        grouped 1 x 1 conv of ones. Static shapes throughout, no reshape of the batch."""
        a = self._patches_source(node)
        weight = self.lower(node.weight)
        assert isinstance(weight, _Weight)
        array = weight.array.astype(np.float64)
        units, channels, k = array.shape[0], array.shape[1], array.shape[2]
        n = channels * k * k
        forms = array.reshape(units, n, n).transpose(0, 2, 1).reshape(units * n, channels, k, k)
        identity = np.eye(n).reshape(n, channels, k, k)
        geometry = self.geometry.attrs()
        owner = f"{self.prefix}.{node.weight.name}"
        mapped = self.graph.node("Conv", [a, self.tensors.derived(owner, "forms", forms)],
                                 **geometry)  # fmt: skip
        patches = self.graph.node("Conv", [a, self.tensors.derived(owner, "patches", identity)],
                                  **geometry)  # fmt: skip
        repeats = self.graph.constant([1, units, 1, 1], np.int64)
        product = self.graph.node("Mul", [mapped, self.graph.node("Tile", [patches, repeats])])
        ones = self.tensors.derived(owner, "sum", np.ones((units, n, 1, 1)))
        return self.graph.node("Conv", [product, ones], kernel_shape=[1, 1], group=units)

    def _visit_SqDist(self, node: SqDist) -> Value:
        """|p|^2 - 2 p.c_o + |c_o|^2 for every patch p: conv(a, -2 C) with bias |C|^2, plus
        conv(a * a, ones) (one output channel, broadcast over the units)."""
        a = self._patches_source(node)
        centre = self.lower(node.centre)
        assert isinstance(centre, _Weight)
        array = centre.array.astype(np.float64)
        owner = f"{self.prefix}.{node.centre.name}"
        geometry = self.geometry.attrs()
        cross_weight = self.tensors.derived(owner, "cross", -2.0 * array)
        norms = self.tensors.derived(owner, "norms", (array * array).sum(axis=(1, 2, 3)))
        cross = self.graph.node("Conv", [a, cross_weight, norms], **geometry)
        ones = self.tensors.derived(owner, "ones", np.ones((1, *array.shape[1:])))
        squares = self.graph.node("Conv", [self.graph.node("Mul", [a, a]), ones], **geometry)
        return self.graph.node("Add", [cross, squares])

    def _patches_source(self, node: QuadForm | SqDist) -> str:
        """The feature map whose patches a quadratic form or distance reads."""
        source = self.lower(node.arg)  # `Patches(a)`, or a temporary holding it
        if not isinstance(source, _PatchesOf):
            raise InternalError(f"{self.neuron.name}: {node} reads no patches")
        return source.name

    def _visit_Patches(self, node: Patches) -> Value:
        return _PatchesOf(self.map(self.lower(node.arg), node))

    def _visit_Transpose(self, node: Transpose) -> Value:
        value = self.lower(node.arg)
        if not isinstance(value, _Weight) or value.array.ndim != 4:
            raise InternalError(f"{self.neuron.name}: {node} transposes no conv weight")
        return _Weight(value.array, not value.transposed, value.key)

    def _stack(self, node: HStack | VStack, weight_axis: int) -> Value:
        """Feature maps side by side (`Concat` on channels), or weights concatenated now.

        `weight_axis`: the tensor axis along which the stacked matrices' *columns* (HStack) or
        rows (VStack) of a transposed weight run: out channels (0) or in channels (1).
        """
        values = [self.lower(a) for a in node.args]
        if all(isinstance(v, _Weight) for v in values):
            weights: list[_Weight] = values  # type: ignore[assignment]
            transposed = {w.transposed for w in weights}
            ndims = {w.array.ndim for w in weights}
            if len(transposed) != 1 or len(ndims) != 1:
                raise InternalError(f"{self.neuron.name}: {node} stacks unlike weights")
            if ndims == {1}:  # biases side by side
                if isinstance(node, VStack):
                    raise InternalError(f"{self.neuron.name}: {node} stacks biases")
                axis = 0
            else:
                axis = weight_axis if transposed == {True} else 1 - weight_axis
            array = np.concatenate([w.array for w in weights], axis=axis)
            return _Weight(array, transposed.pop())
        if isinstance(node, VStack):
            raise InternalError(f"{self.neuron.name}: {node} stacks feature maps vertically")
        if all(isinstance(v, _PatchesOf) for v in values):
            names = [v.name for v in values]  # type: ignore[union-attr]
            return _PatchesOf(self.graph.node("Concat", names, axis=1))
        return self.graph.node("Concat", [self.map(v, node) for v in values], axis=1)

    def _visit_HStack(self, node: HStack) -> Value:
        return self._stack(node, weight_axis=0)

    def _visit_VStack(self, node: VStack) -> Value:
        return self._stack(node, weight_axis=1)

    def _visit_ColumnSlice(self, node: ColumnSlice) -> Value:
        mat, start, stop = node.args
        begin, end = self.size(start), self.size(stop)
        value = self.lower(mat)
        if isinstance(value, _Weight):  # columns of W.T: output channels; of a bias: its entries
            if not (value.transposed or value.array.ndim == 1):
                raise InternalError(f"{self.neuron.name}: {node} slices a weight's inputs")
            return _Weight(value.array[begin:end], value.transposed)
        bounds = [self.graph.constant([b], np.int64) for b in (begin, end)]
        axes = self.graph.constant([1], np.int64)
        return self.graph.node("Slice", [self.map(value, node), *bounds, axes])

    def _visit_HadamardPower(self, node: HadamardPower) -> Value:
        base, k = self.map(self.lower(node.base), node), int(node.exp)
        if k == 2:
            return self.graph.node("Mul", [base, base])
        return self.graph.node("Pow", [base, self.graph.constant(float(k))])

    def _visit_HadamardProduct(self, node: HadamardProduct) -> Value:
        return self.chain("Mul", self.maps(node.args))

    def _visit_MatAdd(self, node: MatAdd) -> Value:
        return self.chain("Add", self.maps(node.args))

    def _visit_Apply(self, node: Apply) -> Value:
        return ops.ELEMENTWISE[node.name].onnx(self.graph, self.map(self.lower(node.arg), node))

    def _visit_MatrixSymbol(self, node: MatrixSymbol) -> Value:
        raise InternalError(f"{node} has no value")  # inputs and parameters are in `values`

    def _visit_OneMatrix(self, node: OneMatrix) -> Value:
        return self.graph.constant(1.0)  # a constant broadcast over every position

    def _visit_Number(self, node: sp.Number) -> Value:
        return self.graph.constant(float(node))
