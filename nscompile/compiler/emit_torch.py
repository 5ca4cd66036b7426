"""PyTorch backend: ProgramIR -> the source of one standalone module that imports only torch.

Python decides every string here; `templates/module.py.jinja` only lays them out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import jinja2
import sympy as sp

from nscompile import __version__
from nscompile.compiler import ops
from nscompile.compiler.conv_printer import ConvPrinter
from nscompile.compiler.ir import (
    BlockIR,
    ConvIR,
    FlattenIR,
    HStack,
    LayerIR,
    NetworkIR,
    NeuronIR,
    Param,
    Patches,
    PoolIR,
    ProgramIR,
    StageIR,
    column_partitions,
    product_factors,
)
from nscompile.compiler.storage import Group, Member, fused_groups
from nscompile.compiler.torch_printer import HELPERS, TorchPrinter, _size_code
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key, unique_class_names
from nscompile.resources import data_path

_SAFE_DOC = re.compile(r"[A-Za-z0-9_ <>,+\-*().;=]*\Z")


def emit_torch(program: ProgramIR, accumulate: bool = True) -> str:
    """ProgramIR (optimised) -> Python source text, byte-identical for the same input.

    `accumulate=False` prints sums as plain `+` instead of accumulating in place (`add_`,
    `_accumulate`): with the un-optimised IR this is the layer written the obvious way, the
    reference of `nscompile bench`.
    """
    names = unique_class_names(
        [n.name for n in program.neurons] + [n.name for n in program.networks],
        {n.name: "Layer" for n in program.neurons},
    )
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_path("templates", "module.py.jinja").parent)),
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    conv_names = unique_class_names(
        [n.name for n in program.conv_neurons],
        {n.name: "Conv2d" for n in program.conv_neurons},
        set(names.values()),
    )
    # A conv layer with a BatchNorm per term (`bn=terms`) is a class of its own.
    term_names = unique_class_names(
        [n.name for n in program.term_bn_neurons],
        {n.name: "Conv2dTermBN" for n in program.term_bn_neurons},
        set(names.values()) | set(conv_names.values()),
    )
    neurons = [_neuron_view(n, names[n.name], accumulate) for n in program.neurons]
    convs = [_conv_view(n, conv_names[n.name], accumulate) for n in program.conv_neurons]
    convs += [_conv_view(n, term_names[n.name], accumulate) for n in program.term_bn_neurons]
    networks = [
        _network_view(n, names, _ConvClasses(conv_names, term_names), accumulate)
        for n in program.networks
    ]
    blocks = [layer for n in program.networks for layer in n.layers if isinstance(layer, BlockIR)]
    helpers = {name for view in neurons + convs for name in view["helpers"]}
    return env.get_template("module.py.jinja").render(
        version=__version__,
        source_name=program.source_name,
        sha256=program.source_sha256,
        accumulates=any(n["accumulates"] for n in neurons),
        helpers=[HELPERS[name].strip() for name in sorted(helpers)],
        fuses=any(n["fused"] for n in neurons),
        neurons=neurons,
        conv_neurons=convs,
        functional=bool(convs)
        or any(n["image"] for n in networks)
        or any(n["functional"] for n in neurons),
        blocks=bool(blocks),
        block_norms=any(b.term_bn for b in blocks),
        networks=networks,
    )


def _safe_doc(text: str) -> str:
    if not _SAFE_DOC.match(text):
        raise InternalError(f"unexpected character in docstring text {text!r}")
    return text


def _neuron_view(neuron: NeuronIR, class_name: str, accumulate: bool) -> dict[str, object]:
    groups = fused_groups(neuron) if accumulate else []
    stored = {g.node: f"self.{g.name}" for g in groups}
    for group in groups:  # the output sum's right sides: row slices of its stacked parameter
        for term, start, stop in group.terms:
            lo = "" if start == 0 else _size_code(start)
            stored[product_factors(term)[1][1]] = f"self.{group.name}[{lo}:{_size_code(stop)}]"
    printer = TorchPrinter({p.symbol for p in neuron.params}, accumulate, stored)
    body = _body(printer, neuron.assignments, column_partitions(neuron))
    return {
        "class_name": class_name,
        "name": neuron.name,
        "formula": _safe_doc(f"y = {neuron.formula}"),
        "rank": neuron.rank,
        "params": _param_lines(neuron, groups),
        "inits": [_init_code(p) for p in neuron.params],
        "fused": [
            (g.name, _members_doc(g), _tuple_code(m.param.name for m in g.members)) for g in groups
        ],
        "terms": _tuple_code(p.name for p in neuron.params),
        "views": [(m.param.name, _view_code(g, m)) for g in groups for m in g.members],
        "body": body,
        "result": printer(neuron.output),
        "one_gemm": _one_gemm(printer, neuron, groups),
        "accumulates": printer.accumulates,
        "helpers": printer.helpers,
        "functional": printer.functional,
    }


_POOLS = {"max": "F.max_pool2d", "avg": "F.avg_pool2d"}


def _conv_view(neuron: NeuronIR, class_name: str, accumulate: bool) -> dict[str, object]:
    """A conv neuron layer's class: its parameters and forward (`conv_printer`)."""
    biases = {p.symbol for p in neuron.params if p.role == "bias"}
    printer = ConvPrinter({p.symbol for p in neuron.params}, biases, accumulate)
    # A temporary that holds patches on their own (CSE of a shared conv input) is put back
    # into the convs that read it: a conv's input is printed, never its patches.
    patches = {t: e for t, e in neuron.assignments if isinstance(e, Patches)}
    assignments = [(t, e.xreplace(patches)) for t, e in neuron.assignments if t not in patches]
    body = _body(printer, assignments, column_partitions(neuron))
    return {
        "class_name": class_name,
        "name": neuron.name,
        "formula": _safe_doc(f"y = {neuron.formula}"),
        "rank": neuron.rank,
        "params": [(p.name, _shape_code(p)) for p in neuron.params],
        "inits": [_init_code(p) for p in neuron.params],
        "body": body,
        "result": printer(neuron.output.xreplace(patches)),
        "norms": list(neuron.norms),
        "helpers": printer.helpers,
        "channels_last": accumulate,  # the optimised layer; the unfused one stays NCHW
    }


@dataclass(frozen=True)
class _ConvClasses:
    """The class names of the conv neuron layers: plain ones, and those with a BN per term."""

    plain: dict[str, str]
    term_bn: dict[str, str]

    def of(self, neuron: str, term_bn: bool) -> str:
        return (self.term_bn if term_bn else self.plain)[neuron]


def _body(printer: TorchPrinter, assignments: Iterable, partitions: dict) -> list[str]:
    """The forward's statements: each assignment, and the split of a partitioned one."""
    body = []
    for target, expr in assignments:
        body.append(f"{printer.local(target)} = {printer(expr)}")
        if target in partitions:
            body.append(printer.split(target, partitions[target]))
    return body


def _network_view(
    network: NetworkIR, names: dict[str, str], conv_names: _ConvClasses, channels_last: bool
) -> dict[str, object]:
    """A network's class; an image network's maps channels last where `channels_last` (the
    optimised module; the unfused one stays NCHW, see the conv layers' forward)."""
    layers, lines = [], []
    for index, layer in enumerate(network.layers, start=1):
        source = "x" if index == 1 else "h"
        made, step = _stage_code(layer, index, source, names, conv_names)
        layers += made
        lines.append(step)
    return {
        "class_name": names[network.name],
        "name": network.name,
        "summary": _safe_doc(network.summary),
        "task": network.task,
        "in_features": network.input_width,
        "image": network.image,
        "channels_last": channels_last and network.image is not None,
        "out_features": network.out_features,
        "layers": layers,
        "steps": lines,
    }


def _stage_code(
    layer: StageIR, index: int, source: str, names: dict[str, str], conv_names: _ConvClasses
) -> tuple[list[str], str]:
    """One stage of a network -> (the lines of `__init__` that build it, its forward step)."""
    attribute = f"self.{layer_key(index)}"
    if isinstance(layer, LayerIR):
        module = names[layer.neuron] if layer.neuron else "nn.Linear"
        made = [f"{attribute} = {module}({layer.in_features}, {layer.out_features})"]
        return made, ops.ACTIVATIONS[layer.activation].torch.format(f"{attribute}({source})")
    if isinstance(layer, ConvIR):
        sizes = f"{layer.in_channels}, {layer.out_channels}, {layer.kernel}, {layer.stride}"
        module = conv_names.of(layer.neuron, layer.term_bn) if layer.neuron else "nn.Conv2d"
        made = [f"{attribute} = {module}({sizes}, {layer.padding})"]
        step = f"{attribute}({source})"
        if layer.bn:
            made.append(f"self.bn{index} = nn.BatchNorm2d({layer.out_channels})")
            step = f"self.bn{index}({step})"
        return made, ops.ACTIVATIONS[layer.activation].torch.format(step)
    if isinstance(layer, PoolIR):
        if layer.kernel == 0:
            return [], f"{source}.mean((2, 3))"
        sizes = f"{layer.kernel}, {layer.stride}, {layer.padding}"
        return [], f"{_POOLS[layer.kind]}({source}, {sizes})"
    if isinstance(layer, FlattenIR):
        return [], f"{source}.flatten(1)"
    cin, cout, stride = layer.in_channels, layer.out_channels, layer.stride

    def conv(neuron: str | None, inputs: int, step: int) -> str:
        if neuron is None:
            return f"nn.Conv2d({inputs}, {cout}, 3, {step}, 1, bias=False)"
        return f"{conv_names.of(neuron, layer.term_bn)}({inputs}, {cout}, 3, {step}, 1)"

    activation = f"nn.{ops.ACTIVATIONS[layer.activation].module}()"
    made = [
        f"{attribute} = _BasicBlock(",
        f"    {conv(layer.first, cin, stride)},",
        f"    {conv(layer.second, cout, 1)},",
        f"    {cin}, {cout}, {stride}, projection={layer.projection}, activation={activation},",
        ")",
    ]
    if layer.term_bn:  # a conv that normalises its terms has no BatchNorm after it
        norms = f"norm1={layer.normalised(layer.first)}, norm2={layer.normalised(layer.second)}"
        made[-1:] = [f"    {norms},", ")"]
    return made, f"{attribute}({source})"


def _one_gemm(printer: TorchPrinter, neuron: NeuronIR, groups: list[Group]) -> str | None:
    """The output sum as one GEMM over its concatenated left sides, or None without an output
    group: `torch.addmm(rest, torch.cat([x, x**2, p], dim=1), self._fused0)`."""
    group = next((g for g in groups if g.terms), None)
    if group is None:
        return None
    terms = [term for term, _, _ in group.terms]
    lefts = []
    for term in terms:
        left = product_factors(term)[1][0]
        lefts += [printer(a) for a in left.args] if isinstance(left, HStack) else [printer(left)]
    gemm = f"torch.cat([{', '.join(lefts)}], dim=1), self.{group.name}"
    rest = [a for a in neuron.output.args if a not in terms]
    if not rest:
        return f"torch.mm({gemm})"
    return f"torch.addmm({printer.sum(rest)[0]}, {gemm})"


def _param_lines(neuron: NeuronIR, groups: list[Group]) -> list[tuple[str, str]]:
    """(attribute, shape code) per stored parameter: a fused group where its first member was."""
    group_of = {m.param.name: g for g in groups for m in g.members}
    lines, done = [], set()
    for param in neuron.params:
        group = group_of.get(param.name)
        if group is None:
            lines.append((param.name, _shape_code(param)))
        elif group.name not in done:
            done.add(group.name)
            lines.append((group.name, ", ".join(sp.sstr(s, order="lex") for s in group.shape)))
    return lines


def _tuple_code(names: Iterable[str]) -> str:
    """`("a", "b")`, or `("a",)` for one name."""
    quoted = [f'"{n}"' for n in names]
    return f"({quoted[0]},)" if len(quoted) == 1 else f"({', '.join(quoted)})"


def _members_doc(group: Group) -> str:
    """`[cp2_u1 | cp2_u2]` (side by side) or `[cp2_a; cp3_a]` (stacked), `.T` where transposed."""
    names = [m.param.name + (".T" if m.transposed else "") for m in group.members]
    return "[" + (" | " if group.dim == 1 else "; ").join(names) + "]"


def _view_code(group: Group, member: Member) -> str:
    """The member's view of the stored tensor: its columns (side by side) or rows (stacked)."""
    lo = "" if member.start == 0 else _size_code(member.start)
    span = f"{lo}:{_size_code(member.stop)}"
    code = f"self.{group.name}[:, {span}]" if group.dim == 1 else f"self.{group.name}[{span}]"
    return code + (".T" if member.transposed else "")


def _shape_code(param: Param) -> str:
    return ", ".join(sp.sstr(s) for s in param.shape)


def _init_code(param: Param) -> str:
    init = param.init
    if init.constant is not None:
        return f"nn.init.constant_(self.{param.name}, {init.constant!r})"
    if init.scale == 0:
        return f"nn.init.zeros_(self.{param.name})"
    fan = _size_code(init.fan_in)
    m2 = "" if init.second_moment == 1 else f"{init.second_moment:.6g} * "
    size = f"{init.scale:.6g} / math.sqrt({m2}{fan})"
    if init.uniform:
        return f"nn.init.uniform_(self.{param.name}, -{size}, {size})"
    return f"nn.init.normal_(self.{param.name}, std={size})"
