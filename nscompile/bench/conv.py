"""One task-driven conv layer timed beside its alternatives: one entry of `nscompile bench`'s
report for an image network.

Contenders, forward and forward+backward on inputs (batch, in, H, W) at the layer's place in
the network: `generated` (the conv neuron's class, e.g. `TdConv2d`), `unfused` (one conv per
term, products term by term, the same parameters; checked to compute the same function),
`torch.compile` of the unfused layer (its first calls timed apart as compile time), and
`nn.Conv2d(in, out, k, stride, padding)`, the floor, whose rate in the same run turns the
layer's FLOP count (`flops.conv_forward_flops`) into a predicted time. Memory: the bytes a
forward+backward adds at the largest batch (see `peers.peak_bytes`). onnxruntime and tnlearn
are dense-only peers here and reported as skipped.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nscompile.bench import peers
from nscompile.bench.settings import Settings
from nscompile.compiler.flops import conv_forward_flops
from nscompile.compiler.ir import BlockIR, ConvIR, FlattenIR, LayerIR, NetworkIR, NeuronIR, PoolIR
from nscompile.errors import InternalError
from nscompile.lang.naming import layer_key

CONV = "nn.Conv2d"


@dataclass(frozen=True)
class ConvSite:
    """A task-driven conv of a network where it sits: its module's attribute path and shapes."""

    key: str  # "layer1", or "layer2.conv1" inside a block
    neuron: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    padding: int
    height: int  # of its input
    width: int
    term_bn: bool = False  # the `bn=terms` form of the neuron (`TdConv2dTermBN`)

    @property
    def out_hw(self) -> tuple[int, int]:
        return _side(self.height, self.kernel, self.stride, self.padding), _side(
            self.width, self.kernel, self.stride, self.padding
        )

    def signature(self) -> tuple[object, ...]:
        """What makes two sites the same benchmark."""
        return (
            self.neuron, self.in_channels, self.out_channels, self.kernel, self.stride,
            self.padding, self.height, self.width, self.term_bn,
        )  # fmt: skip


def _side(n: int, kernel: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - kernel) // stride + 1


def conv_sites(network: NetworkIR) -> list[ConvSite]:
    """Every task-driven conv of an image network in order (blocks' convs included), distinct
    by neuron, channels, kernel, stride, padding and input size."""
    if network.image is None:
        return []
    _, h, w = network.image
    sites: list[ConvSite] = []
    for index, stage in enumerate(network.layers, start=1):
        if isinstance(stage, ConvIR):
            if stage.neuron is not None:
                sites.append(
                    ConvSite(
                        layer_key(index),
                        stage.neuron,
                        stage.in_channels,
                        stage.out_channels,
                        stage.kernel,
                        stage.stride,
                        stage.padding,
                        h,
                        w,
                        stage.term_bn,
                    )  # fmt: skip
                )
            h, w = (_side(n, stage.kernel, stage.stride, stage.padding) for n in (h, w))
        elif isinstance(stage, BlockIR):
            key = layer_key(index)
            first = ConvSite(
                f"{key}.conv1", stage.first or "", stage.in_channels, stage.out_channels,
                3, stage.stride, 1, h, w, stage.term_bn,
            )  # fmt: skip
            h, w = first.out_hw
            if stage.first is not None:
                sites.append(first)
            if stage.second is not None:
                sites.append(
                    ConvSite(
                        f"{key}.conv2",
                        stage.second,
                        stage.out_channels,
                        stage.out_channels,
                        3,
                        1,
                        1,
                        h,
                        w,
                        stage.term_bn,
                    )  # fmt: skip
                )
        elif isinstance(stage, PoolIR):
            if stage.kernel == 0:
                break  # global pooling: features from here on
            h, w = (_side(n, stage.kernel, stage.stride, stage.padding) for n in (h, w))
        elif isinstance(stage, FlattenIR | LayerIR):
            break
    distinct: dict[tuple[object, ...], ConvSite] = {}
    for site in sites:
        distinct.setdefault(site.signature(), site)
    return list(distinct.values())


def conv_modules(site: ConvSite, model: nn.Module, reference: nn.Module) -> dict[str, nn.Module]:
    """The generated and the unfused module of `site`."""
    get = operator.attrgetter(site.key)
    return {"generated": get(model), "unfused": get(reference)}


def bench_conv_layer(
    neuron: NeuronIR, site: ConvSite, modules: dict[str, nn.Module], s: Settings
) -> dict[str, Any]:
    """The report entry of one conv layer: parity with the unfused layer, times, memory, FLOPs."""
    device = torch.device(s.device)
    c, h, w = site.in_channels, site.height, site.width
    oh, ow = site.out_hw
    skipped: dict[str, str] = {
        "tnlearn": "tnlearn has no conv layer",
        "onnxruntime": "not measured for conv layers",
    }
    torch.manual_seed(s.seed)
    modules[CONV] = nn.Conv2d(c, site.out_channels, site.kernel, site.stride, site.padding)
    for module in modules.values():
        module.to(device)
    x = torch.randn(2, c, h, w, device=device)
    with torch.no_grad():
        parity = peers.relative_difference(modules["generated"](x), modules["unfused"](x))
    if parity > 1e-4:
        raise InternalError(f"{site.key}: the unfused reference differs by {parity:.3g}")
    peers.add_compiled(modules, s, skipped)
    batches = s.conv_batches
    with peers.recompile_room(2 * len(batches) + 2):
        runs, compiled_parity = peers.time_batches(
            modules, {}, (c, h, w), batches, s, skipped, _together
        )
        largest = max(batches)
        x = torch.randn(largest, c, h, w, device=device)
        memory = peers.peak_bytes_of_all(modules, x, skipped)
    flops = {
        "generated": conv_forward_flops(neuron, oh * ow, h * w, c, site.out_channels, site.kernel),
        CONV: 2 * oh * ow * c * site.kernel**2 * site.out_channels + oh * ow * site.out_channels,
    }
    for run in runs:
        rate = flops[CONV] / run["seconds"][CONV]
        run["flop_predicted_s"] = flops["generated"] / rate
    return {
        "layer": site.key,
        "kind": "conv",
        "neuron": site.neuron,
        "in_features": c,  # the channels, under the dense layers' names
        "out_features": site.out_channels,
        "kernel": site.kernel,
        "stride": site.stride,
        "padding": site.padding,
        "input_hw": [h, w],
        "output_hw": [oh, ow],
        "skipped": skipped,
        "parity_max_relative_difference": parity,
        "torch_compile_max_relative_difference": compiled_parity,
        **peers.sizes(modules, s.device, largest, memory),
        "forward_flops_per_sample": flops,
        "runs": runs,
    }


def _together(
    contenders: dict[str, Callable[[], object]],
) -> list[dict[str, Callable[[], object]]]:
    return [contenders]  # all torch layers, alternating inside each repetition
