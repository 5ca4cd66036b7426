"""The image layers of a network: their options resolved, and the shape after each layer.

`conv`, `maxpool`/`avgpool` and `block` take options (bare words and `key=value` settings,
`syntax.Option`); this module is the one place that knows which options a layer takes, their
defaults and bounds, and how each layer changes the shape of what flows through the network:
`(C, H, W)` for images, `(D,)` for features. `shapes(network, spec)` walks a network's
layers and raises a `SpecError` at the first layer that cannot apply, saying the shape it
found; the checker calls it, and lowering reads the resolved settings from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from nscompile.errors import did_you_mean
from nscompile.lang import syntax as s
from nscompile.lang.check_errors import error

Shape = tuple[int, ...]  # (C, H, W) or (D,)

#: A basic block's convs: 3 x 3, padding 1.
BLOCK_KERNEL = 3
#: Default conv kernel.
DEFAULT_KERNEL = 3


@dataclass(frozen=True)
class ConvSettings:
    """A resolved `conv` layer (padding: `kernel // 2` unless given)."""

    width: int
    neuron: str | None
    activation: str
    bn: bool  # one BatchNorm2d after the sum (`bn`, `bn=sum`)
    kernel: int
    stride: int
    padding: int
    term_bn: bool = False  # a BatchNorm2d per term of the neuron's sum (`bn=terms`)


@dataclass(frozen=True)
class PoolSettings:
    """A resolved `maxpool` / `avgpool` (stride: the kernel unless given)."""

    kind: str
    kernel: int
    stride: int
    padding: int


@dataclass(frozen=True)
class BlockSettings:
    """A resolved residual basic block; `first`/`second` are neuron names or None (plain)."""

    width: int
    first: str | None
    second: str | None
    stride: int
    activation: str
    projection: bool  # the shortcut is a 1 x 1 conv with BatchNorm (else the identity)
    term_bn: bool = False  # its task-driven convs normalise each term instead (`bn=terms`)


def show(shape: Shape) -> str:
    """`(16, 8, 8)` -> `16 x 8 x 8`; `(10,)` -> `10 features`."""
    if len(shape) == 1:
        return f"{shape[0]} features"
    return " x ".join(str(n) for n in shape)


def conv_out(side: int, kernel: int, stride: int, padding: int) -> int:
    """The output side of a conv or pool: `(side + 2 padding - kernel) // stride + 1`."""
    return (side + 2 * padding - kernel) // stride + 1


class _Options:
    """A layer's options, consumed one kind at a time; what is left over is an error."""

    def __init__(self, stmt: s.Conv | s.Pool | s.Block, what: str, keys: tuple[str, ...]) -> None:
        self.stmt, self.what, self.keys = stmt, what, keys
        self.values: dict[str, s.Option] = {}
        self.words: list[s.Option] = []
        for option in stmt.options:
            if option.value is None:
                self.words.append(option)
                continue
            if option.key not in keys:
                hint = did_you_mean(option.key, keys) or f"{what} settings: {', '.join(keys)}"
                raise error("E180", option.span, hint, name=option.key, what=what)
            if option.key in self.values:
                raise error("E181", option.span, name=option.key)
            self.values[option.key] = option

    def number(self, key: str, default: int, low: int, high: int) -> int:
        option = self.values.get(key)
        if option is None:
            return default
        if not isinstance(option.value, int):
            raise error("E182", option.span, name=key, value=option.value)
        if not low <= option.value <= high:
            raise error("E185", option.span, name=key, low=low, high=high, value=option.value)
        return option.value

    def name(self, key: str) -> s.Option | None:
        option = self.values.get(key)
        if option is not None and not isinstance(option.value, str):
            raise error("E189", option.span, name=key, value=option.value)
        return option


def _words(
    options: _Options, spec: s.Spec, allow_bn: bool
) -> tuple[str | None, str | None, s.Option | None]:
    """The bare words of a layer: (neuron, activation, the `bn` word); each at most once."""
    neuron = activation = None
    bn: s.Option | None = None
    for word in options.words:
        if word.key == s.BN_WORD and allow_bn:
            if bn is not None:
                raise error("E181", word.span, name=word.key)
            bn = word
        elif word.key in s.ACTIVATIONS:
            if activation is not None:
                raise error("E190", word.span, what="activation", name=word.key, first=activation)
            activation = word.key
        elif word.key in spec.neurons:
            if neuron is not None:
                raise error("E190", word.span, what="neuron", name=word.key, first=neuron)
            neuron = word.key
        else:
            known = [*spec.neurons, *s.ACTIVATIONS, *([s.BN_WORD] if allow_bn else [])]
            hint = did_you_mean(word.key, known) or (
                f"neurons: {', '.join(spec.neurons) or 'none declared'}; "
                f"activations: {', '.join(s.ACTIVATIONS)}"
                + ("; 'bn' for BatchNorm" if allow_bn else "")
            )
            raise error("E144", word.span, hint, what="neuron or activation", name=word.key,
                        names="")  # fmt: skip
    return neuron, activation, bn


def _batch_norm(options: _Options, word: s.Option | None) -> tuple[str | None, s.Option | None]:
    """The layer's BatchNorm: None, `sum` (the `bn` word or `bn=sum`) or `terms`, and the
    option that said it; SpecError for a second one or an unknown mode."""
    setting = options.values.get(s.BN_WORD)
    if setting is not None and word is not None:
        order = list(options.stmt.options)
        second = max(setting, word, key=lambda o: next(i for i, x in enumerate(order) if x is o))
        raise error("E181", second.span, name=s.BN_WORD)
    if setting is None:
        return (s.BN_SUM if word is not None else None), word
    if setting.value not in s.BN_MODES:
        hint = did_you_mean(str(setting.value), s.BN_MODES)
        raise error("E192", setting.span, hint, value=setting.value)
    return str(setting.value), setting


def conv_settings(stmt: s.Conv, spec: s.Spec) -> ConvSettings:
    """`conv O ...` -> its settings; SpecError for an unknown, repeated or bad option."""
    options = _Options(stmt, "conv", ("kernel", "stride", "padding", s.BN_WORD))
    neuron, activation, word = _words(options, spec, allow_bn=True)
    bn, said = _batch_norm(options, word)
    if bn == s.BN_TERMS and neuron is None:
        assert said is not None
        raise error("E193", said.span, what="a plain conv, which has one term")
    kernel = options.number("kernel", DEFAULT_KERNEL, 1, s.MAX_KERNEL)
    stride = options.number("stride", 1, 1, s.MAX_KERNEL)
    padding = options.number("padding", kernel // 2, 0, s.MAX_KERNEL)
    return ConvSettings(stmt.width, neuron, activation or "identity", bn == s.BN_SUM, kernel,
                        stride, padding, term_bn=bn == s.BN_TERMS)  # fmt: skip


def pool_settings(stmt: s.Pool) -> PoolSettings:
    """`maxpool K ...` / `avgpool K ...` -> its settings."""
    options = _Options(stmt, f"{stmt.kind}pool", ("stride", "padding"))
    if options.words:
        word = options.words[0]
        raise error("E180", word.span, "pool settings: stride, padding", name=word.key,
                    what=f"{stmt.kind}pool")  # fmt: skip
    if not 1 <= stmt.kernel <= s.MAX_KERNEL:
        raise error("E185", stmt.span, name="kernel", low=1, high=s.MAX_KERNEL, value=stmt.kernel)
    stride = options.number("stride", stmt.kernel, 1, s.MAX_KERNEL)
    padding = options.number("padding", 0, 0, s.MAX_KERNEL)
    if 2 * padding > stmt.kernel:  # what torch and onnxruntime accept
        option = options.values["padding"]
        raise error("E186", option.span, value=padding, kernel=stmt.kernel)
    return PoolSettings(stmt.kind, stmt.kernel, stride, padding)


def block_settings(stmt: s.Block, spec: s.Spec, channels: int) -> BlockSettings:
    """`block O ...` -> its settings, given the channels of its input."""
    options = _Options(stmt, "block", ("stride", "first", "second", "shortcut", s.BN_WORD))
    neuron, activation, _ = _words(options, spec, allow_bn=False)
    bn, said = _batch_norm(options, None)  # a block has its BatchNorms: `bn=sum` is the default
    stride = options.number("stride", 1, 1, s.MAX_KERNEL)
    first = second = neuron
    for key in ("first", "second"):
        option = options.name(key)
        if option is None:
            continue
        name = str(option.value)
        if name != s.PLAIN_WORD and name not in spec.neurons:
            hint = did_you_mean(name, [*spec.neurons, s.PLAIN_WORD]) or (
                f"'{key}=' takes a neuron ({', '.join(spec.neurons) or 'none declared'}) or "
                f"'{s.PLAIN_WORD}'"
            )
            raise error("E144", option.span, hint, what="neuron", name=name, names="")
        chosen = None if name == s.PLAIN_WORD else name
        first, second = (chosen, second) if key == "first" else (first, chosen)
    changes = stride != 1 or channels != stmt.width
    shortcut = options.name("shortcut")
    projection = changes
    if shortcut is not None:
        if shortcut.value not in ("identity", "conv"):
            raise error("E189", shortcut.span, name="shortcut", value=shortcut.value)
        projection = shortcut.value == "conv"
    if bn == s.BN_TERMS and first is None and second is None:
        assert said is not None
        hint = (
            "both convs of this block are plain: drop 'bn=terms' (a block has a BatchNorm "
            "after each conv), or make one task-driven, e.g. 'block 64 td bn=terms'"
        )
        raise error("E193", said.span, hint, what="a block of plain convs, one term each")
    return BlockSettings(stmt.width, first, second, stride, activation or "relu", projection,
                         term_bn=bn == s.BN_TERMS)  # fmt: skip


def shapes(network: s.Network, spec: s.Spec) -> list[Shape]:
    """The shape after each of `network.stages`, in order; SpecError at the first layer
    that cannot take the shape before it (the message says that shape)."""
    image = network.image_input
    if image is not None:
        shape: Shape = (image.channels, image.height, image.width)
    else:
        shape = (network.input_width or 0,)
    out = []
    for stage in network.stages:
        shape = _after(stage, shape, spec)
        out.append(shape)
    return out


def _after(stage: s.Dense | s.ImageStmt, shape: Shape, spec: s.Spec) -> Shape:
    if isinstance(stage, s.Dense):
        if len(shape) == 3:
            raise error("E183", stage.span, shape=show(shape), flat=shape[0] * shape[1] * shape[2],
                        channels=shape[0])  # fmt: skip
        return (stage.width,)
    what = _WHAT[type(stage)]
    if len(shape) == 1:
        raise error("E184", stage.span, what=what, shape=show(shape))
    channels, height, width = shape
    if isinstance(stage, s.Flatten):
        return (channels * height * width,)
    if isinstance(stage, s.GlobalPool):
        return (channels,)
    if isinstance(stage, s.Conv):
        conv = conv_settings(stage, spec)
        _in_range("channels", stage.width, stage)
        return (stage.width, *_spatial(stage, shape, conv.kernel, conv.stride, conv.padding))
    if isinstance(stage, s.Pool):
        pool = pool_settings(stage)
        return (channels, *_spatial(stage, shape, pool.kernel, pool.stride, pool.padding))
    block = block_settings(stage, spec, channels)
    _in_range("channels", stage.width, stage)
    side = _spatial(stage, shape, BLOCK_KERNEL, block.stride, 1)
    if not block.projection and (block.stride != 1 or channels != stage.width):
        raise error("E188", stage.span, shape=show(shape), out=show((stage.width, *side)))
    return (stage.width, *side)


def _in_range(what: str, value: int, stmt: s.Conv | s.Block) -> None:
    if not 1 <= value <= s.MAX_WIDTH:
        why = "it is the number of feature maps the layer computes"
        raise error("E142", stmt.span, what=f"the number of output {what}", high=s.MAX_WIDTH,
                    value=value, why=why)  # fmt: skip


def _spatial(
    stage: s.Conv | s.Pool | s.Block, shape: Shape, kernel: int, stride: int, padding: int
) -> tuple[int, int]:
    _, height, width = shape
    if kernel > min(height, width) + 2 * padding:
        raise error("E187", stage.span, kernel=kernel, shape=show(shape), padding=padding,
                    padded=f"{height + 2 * padding} x {width + 2 * padding}")  # fmt: skip
    return conv_out(height, kernel, stride, padding), conv_out(width, kernel, stride, padding)


_WHAT = {
    s.Conv: "a conv layer",
    s.Pool: "pooling",
    s.GlobalPool: "global pooling",
    s.Flatten: "flatten",
    s.Block: "a residual block",
}
