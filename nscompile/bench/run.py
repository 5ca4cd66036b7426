"""`nscompile bench`: one compiled spec measured beside its alternatives, in one process and run.

Compile: spec -> optimised IR, IR -> PyTorch source, IR -> ONNX, and for comparison
`torch.onnx.export(dynamo=True)` of the generated network. Run, for every neuron layer of the
network at its widths and every batch size, forward and forward+backward of:

- `generated`: the layer nscompile generates;
- `unfused`: the same spec compiled without fusion or CSE and summed term by term
  (`pipeline.to_torch_unfused`): one matrix product per projection, products term by term, the
  same parameters (checked to compute the same function with the same weights);
- `torch.compile`: `torch.compile` of the unfused layer, the peer a user would pick instead of
  nscompile (one graph per batch and pass; its first calls timed apart as its compile time;
  skipped with the reason where it fails, or with `--torch-compile off`);
- `nn.Linear`: a plain linear layer of the same widths, the floor;
- `tnlearn`: tnlearn's `TNLinear` for the nearest formula in its notation (`cp(x, k)` becomes
  one rank-1 product `<u1, x>*...*<uk, x>` per unit, the cheaper of the two interaction forms of
  the public NeuronSeek code), when tnlearn is installed;
- `onnxruntime-cpu` / `onnxruntime-cuda` (forward only): the layer as an ONNX graph, numpy in and
  out, CUDA only when onnxruntime really loaded its CUDA provider.

For an image network, every distinct task-driven conv layer (blocks' convs included) at its
channels, kernel, stride, padding and input size, at `Settings.conv_batches`: generated,
unfused, `torch.compile` of the unfused layer and `nn.Conv2d`, whose rate gives the time
predicted from the layer's FLOP count (see `nscompile.bench.conv`).

Figures are medians after warm-up. The torch layers alternate inside each repetition; tnlearn
and onnxruntime (its idle threads not spinning) are timed apart, because interleaved they slow
whichever torch layer runs next on a small machine. Memory:
parameters and their bytes, and the peak of a forward+backward at the largest batch (CUDA: the
allocator's peak above what was allocated before; CPU: the bytes the forward keeps for the
backward plus the output, which is what a training step adds). The targets of the project's
benchmark are checked on every layer at the largest batch and reported, never enforced.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nscompile.bench import timing as benchkit
from nscompile.bench.conv import CONV, bench_conv_layer, conv_modules, conv_sites
from nscompile.bench.layer import bench_layer
from nscompile.bench.peers import COMPILED
from nscompile.bench.settings import Settings, check_device
from nscompile.compiler.emit_torch import emit_torch
from nscompile.compiler.ir import LayerIR, NetworkIR
from nscompile.compiler.pipeline import (
    Compiled,
    compile_text,
    select_network,
    to_onnx,
    to_torch_unfused,
)
from nscompile.lang.naming import layer_key
from nscompile.lang.source import read_source
from nscompile.learn.loader import load_file

TARGETS = {
    "tnlearn": 20.0,
    "unfused": 1.5,
    "flop_model": 2.0,
    "export": 10.0,
    "conv_unfused": 1.3,
    "conv_flop_model": 1.5,
    "conv_torch_compile": 1.1,
}
#: The batch at which conv layers' targets are checked (else the largest measured).
CONV_TARGET_BATCH = 64


def run_bench(
    path: str,
    settings: Settings,
    network_name: str | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure the spec at `path`; every raw figure in one JSON-ready dict."""
    check_device(settings.device)
    source = read_source(path)
    compiled = compile_text(source, path)
    network = select_network(compiled, network_name)
    report: dict[str, Any] = {
        "spec": path,
        "network": network.name,
        "settings": {
            "batches": list(settings.batches),
            "conv_batches": list(settings.conv_batches),
            "torch_compile": settings.torch_compile,
            "device": settings.device,
            "reps": settings.reps,
            "warmup": settings.warmup,
            "seed": settings.seed,
        },
        "machine": benchkit.machine_info(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        generated = _build(emit_torch(compiled.optimized), work / "generated.py")
        unfused = _build(to_torch_unfused(compiled), work / "unfused.py")
        torch.manual_seed(settings.seed)
        # Both in eval mode, for the export: only a conv layer with a BatchNorm per term
        # (`bn=terms`) differs between the modes, and it then uses running statistics in both.
        model = generated.build(network.name).eval()
        reference = unfused.build(network.name).eval()
        reference.load_state_dict(model.state_dict())
        log(f"compile: {path}")
        report["compile"] = _compile_times(source, path, compiled, network, model, settings)
        report["layers"] = []
        seen: set[tuple[str, int, int]] = set()
        for index, layer in enumerate(network.layers, start=1):
            if not isinstance(layer, LayerIR):
                continue
            key = (layer.neuron or "", layer.in_features, layer.out_features)
            if layer.neuron is None or key in seen:
                continue
            seen.add(key)
            log(f"{layer_key(index)}: {layer.neuron} {layer.in_features} -> {layer.out_features}")
            neuron = next(n for n in compiled.optimized.neurons if n.name == layer.neuron)
            layers = {
                "generated": getattr(model, layer_key(index)),
                "unfused": getattr(reference, layer_key(index)),
            }
            report["layers"].append(
                bench_layer(compiled, neuron, layer, index, layers, settings, work)
            )
        for site in conv_sites(network):
            oh, ow = site.out_hw
            log(
                f"{site.key}: {site.neuron} conv {site.in_channels} -> {site.out_channels}, "
                f"k{site.kernel} s{site.stride} p{site.padding}, "
                f"{site.height} x {site.width} -> {oh} x {ow}"
            )
            neuron = compiled.optimized.conv_neuron(site.neuron, site.term_bn)
            report["layers"].append(
                bench_conv_layer(neuron, site, conv_modules(site, model, reference), settings)
            )
    report["targets"] = targets(report)
    return report


def _build(source: str, path: Path) -> Any:
    # A file that lives as long as the benchmark: torch.compile and the exporter may read it.
    path.write_text(source, encoding="utf-8")
    return load_file(path)


# ------------------------------------------------------------------------------------ compile


def _compile_times(
    source: str,
    path: str,
    compiled: Compiled,
    network: NetworkIR,
    model: nn.Module,
    s: Settings,
) -> dict[str, Any]:
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    contenders: dict[str, Callable[[], object]] = {
        "spec_to_ir": lambda: compile_text(source, path),
        "ir_to_torch": lambda: emit_torch(compiled.optimized),
        "ir_to_onnx": lambda: to_onnx(compiled, network, weights),
    }
    timing = benchkit.measure(contenders, s.warmup, s.compile_reps, s.min_rep_s, s.max_inner)
    result: dict[str, Any] = {name: timing[name]["median_s"] for name in contenders}
    x = torch.randn(2, network.input_width)
    try:
        export = benchkit.measure(
            {"export": lambda: benchkit.torch_export(model, x)},
            0,
            s.export_reps,
            s.min_rep_s,
            1,
            inner={"export": 1},
        )
        result["torch_onnx_export_dynamo"] = export["export"]["median_s"]
    except Exception as error:  # report: a missing onnxscript, an exporter bug
        result["torch_onnx_export_dynamo"] = None
        result["torch_onnx_export_skipped"] = f"{type(error).__name__}: {_first_line(error)}"
    return result


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark's targets, each with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []
    compile_ = report["compile"]
    export = compile_.get("torch_onnx_export_dynamo")
    out.append(
        _target(
            "ONNX emission vs torch.onnx.export(dynamo=True)",
            export / compile_["ir_to_onnx"] if export else None,
            TARGETS["export"],
            compile_.get("torch_onnx_export_skipped", ""),
        )
    )
    for layer in report["layers"]:
        if layer.get("kind") == "conv":
            out += _conv_targets(layer)
            continue
        largest = max(run["batch"] for run in layer["runs"])
        forward = next(
            r for r in layer["runs"] if r["batch"] == largest and r["pass"] == "forward"
        )["seconds"]
        widths = f"{layer['in_features']} -> {layer['out_features']}"
        name = f"{layer['layer']} ({widths}), batch {largest}, forward"
        generated = forward["generated"]
        tn = forward.get("tnlearn")
        out.append(
            _target(
                f"{name}: vs tnlearn TNLinear",
                tn / generated if tn else None,
                TARGETS["tnlearn"],
                layer["skipped"].get("tnlearn", ""),
            )
        )
        out.append(
            _target(f"{name}: vs unfused", forward["unfused"] / generated, TARGETS["unfused"], "")
        )
        flops = layer["forward_flops_per_row"]
        predicted = forward["nn.Linear"] * flops["generated"] / flops["nn.Linear"]
        out.append(
            _target(
                f"{name}: time / FLOP-predicted time (at most)",
                generated / predicted,
                TARGETS["flop_model"],
                "",
                at_most=True,
            )
        )
    return out


def _conv_targets(layer: dict[str, Any]) -> list[dict[str, Any]]:
    """At batch 64 (else the largest): forward and forward+backward against the unfused layer
    and the FLOP-predicted time, forward against torch.compile of the unfused layer."""
    batches = {run["batch"] for run in layer["runs"]}
    batch = CONV_TARGET_BATCH if CONV_TARGET_BATCH in batches else max(batches)
    h, w = layer["input_hw"]
    widths = f"conv {layer['in_features']} -> {layer['out_features']} on {h} x {w}"
    out: list[dict[str, Any]] = []
    for run in layer["runs"]:
        if run["batch"] != batch:
            continue
        seconds = run["seconds"]
        generated = seconds["generated"]
        name = f"{layer['layer']} ({widths}), batch {batch}, {run['pass']}"
        out.append(
            _target(
                f"{name}: vs unfused", seconds["unfused"] / generated, TARGETS["conv_unfused"], ""
            )
        )
        out.append(
            _target(
                f"{name}: time / FLOP-predicted time at the {CONV} rate (at most)",
                generated / run["flop_predicted_s"],
                TARGETS["conv_flop_model"],
                "",
                at_most=True,
            )
        )
        if run["pass"] == "forward":
            peer = seconds.get(COMPILED)
            out.append(
                _target(
                    f"{name}: vs {COMPILED}(unfused)",
                    peer / generated if peer else None,
                    TARGETS["conv_torch_compile"],
                    layer["skipped"].get(COMPILED, ""),
                )
            )
    return out


def _target(
    name: str, value: float | None, goal: float, reason: str, at_most: bool = False
) -> dict[str, Any]:
    if value is None:
        return {"target": name, "goal": goal, "value": None, "met": None, "skipped": reason}
    met = value <= goal if at_most else value >= goal
    return {"target": name, "goal": goal, "value": value, "met": bool(met), "at_most": at_most}


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:200] if text else ""
