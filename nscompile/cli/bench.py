"""`nscompile bench SPEC`: a table on stdout, every raw figure with --json, a chart with --plot."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from typing import Any

from nscompile.cli.data import bounded_int
from nscompile.files import write_atomic

COLUMNS = (
    "generated",
    "unfused",
    "torch.compile",
    "nn.Linear",
    "nn.Conv2d",
    "tnlearn",
    "onnxruntime-cpu",
    "onnxruntime-cuda",
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help=(
            "time a compiled spec beside an unfused layer, torch.compile of it, nn.Linear or "
            "nn.Conv2d, tnlearn and onnxruntime"
        ),
        description=(
            "Measure compile times and, for every neuron layer (dense, or task-driven conv) of "
            "the network at its widths, "
            "forward and forward+backward times, parameters and peak memory of the generated "
            "layer beside its alternatives. Ratios are each contender's time over the generated "
            "layer's: above 1, the generated layer is faster."
        ),
    )
    bench.add_argument("spec", help="the .ns file")
    bench.add_argument(
        "--batch",
        help="batch sizes (default 1,256,4096 for dense layers and 1,64 for conv layers)",
    )
    bench.add_argument(
        "--torch-compile",
        choices=("inductor", "aot_eager", "off"),
        default="inductor",
        help="backend of the torch.compile(unfused) peer, or off (default inductor)",
    )
    bench.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    bench.add_argument("--network", help="the network to measure (default: the only one)")
    bench.add_argument("--json", metavar="FILE", help="write every raw figure here")
    bench.add_argument("--plot", metavar="PNG", help="write a bar chart here")
    bench.add_argument(
        "--reps", type=bounded_int(1, 10_000), default=15, help="timed repetitions (15)"
    )
    bench.add_argument("--threads", type=bounded_int(1, 1024), help="torch and onnxruntime threads")
    bench.set_defaults(run=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    import torch

    from nscompile.bench.run import run_bench
    from nscompile.bench.settings import Settings, check_device, parse_batches

    batches = parse_batches(args.batch) if args.batch is not None else None
    check_device(args.device)
    if args.plot:
        from nscompile.learn.plots import require_matplotlib

        require_matplotlib()
    if args.threads:
        torch.set_num_threads(args.threads)
    settings = Settings(device=args.device, reps=args.reps, torch_compile=args.torch_compile)
    if batches is not None:
        settings = replace(settings, batches=batches, conv_batches=batches)
    report = run_bench(
        args.spec, settings, args.network, log=lambda line: print(line, file=sys.stderr)
    )
    print(render(report))
    if args.json:
        write_atomic(args.json, json.dumps(report, indent=1, sort_keys=True) + "\n")
    if args.plot:
        from nscompile.learn.plots import plot_bench

        plot_bench(args.plot, _largest_batch(report))
    return 0


def render(report: dict[str, Any]) -> str:
    """The report as text: compile times, one table per layer, memory, targets."""
    machine = report["machine"]
    settings = report["settings"]
    lines = [
        f"nscompile bench {report['spec']}: network {report['network']}, {settings['device']}, "
        f"torch {machine['torch']} ({machine['torch_num_threads']} threads), "
        f"onnxruntime {machine['onnxruntime']}, tnlearn {machine['tnlearn']}, "
        f"torch.compile {settings.get('torch_compile', 'inductor')}",
        f"median of {settings['reps']} repetitions after {settings['warmup']} warm-up calls; "
        "(Nx) = that contender's time / the generated layer's",
        "",
        "compile                               ms",
    ]
    c = report["compile"]
    for key, label in (
        ("spec_to_ir", "spec -> optimised IR"),
        ("ir_to_torch", "IR -> PyTorch source"),
        ("ir_to_onnx", "IR -> ONNX"),
    ):
        lines.append(f"  {label:<34}{c[key] * 1e3:>9.2f}")
    export = c.get("torch_onnx_export_dynamo")
    if export:
        ratio = export / c["ir_to_onnx"]
        lines.append(
            f"  {'torch.onnx.export(dynamo=True)':<34}{export * 1e3:>9.2f}  ({ratio:.0f}x)"
        )
    else:
        lines.append(
            f"  torch.onnx.export(dynamo=True)    skipped: {c['torch_onnx_export_skipped']}"
        )
    for layer in report["layers"]:
        lines += ["", *_layer_lines(layer)]
    if not report["layers"]:
        lines += ["", f"network {report['network']} has no neuron layer: compile times only"]
    lines += ["", "targets"]
    for target in report["targets"]:
        if target["met"] is None:
            verdict = f"skipped ({target['skipped']})"
        else:
            sign = "<=" if target.get("at_most") else ">="
            state = "met" if target["met"] else "NOT met"
            verdict = f"{target['value']:.2f}x, {state} ({sign} {target['goal']:g}x)"
        lines.append(f"  {target['target']}: {verdict}")
    return "\n".join(lines)


def _layer_lines(layer: dict[str, Any]) -> list[str]:
    present = {k for run in layer["runs"] for k in run["seconds"]}
    columns = [c for c in COLUMNS if c in present or c in layer["skipped"]]
    conv = layer.get("kind") == "conv"
    if conv:
        (h, w), (oh, ow) = layer["input_hw"], layer["output_hw"]
        title = (
            f"{layer['layer']}: neuron {layer['neuron']}, conv {layer['in_features']} -> "
            f"{layer['out_features']}, kernel {layer['kernel']}, stride {layer['stride']}, "
            f"padding {layer['padding']}, {h} x {w} -> {oh} x {ow}; ms per call"
        )
        columns.append("FLOP-predicted")
    else:
        title = (
            f"{layer['layer']}: neuron {layer['neuron']}, {layer['in_features']} -> "
            f"{layer['out_features']}; ms per call"
        )
    lines = [title, f"  {'batch':>7}  {'pass':<17}" + "".join(f"{c:>19}" for c in columns)]
    for run in layer["runs"]:
        base = run["seconds"]["generated"]
        cells = []
        for column in columns:
            seconds = run["seconds"].get(column)
            if column == "FLOP-predicted":
                seconds = run["flop_predicted_s"]  # (Nx): the generated layer's / this
                cells.append(f"{seconds * 1e3:.4f} ({base / seconds:.2f}x)")
                continue
            if seconds is None:
                cells.append("skipped" if column in layer["skipped"] else "-")
            elif column == "generated":
                cells.append(f"{seconds * 1e3:.4f}")
            else:
                cells.append(f"{seconds * 1e3:.4f} ({seconds / base:.2f}x)")
        lines.append(f"  {run['batch']:>7}  {run['pass']:<17}" + "".join(f"{c:>19}" for c in cells))
    if conv:
        lines.append(
            "  FLOP-predicted: the layer's FLOPs at the same run's nn.Conv2d rate; (Nx) = the "
            "generated layer's time / it"
        )
    first = [
        f"batch {r['batch']} {r['pass']} {r['compile_seconds']['torch.compile']:.2f}"
        for r in layer["runs"]
        if "torch.compile" in r.get("compile_seconds", {})
    ]
    if first:
        lines.append("  torch.compile first call (compile + one run), s: " + ", ".join(first))
    if layer.get("torch_compile_max_relative_difference") is not None:
        lines.append(
            "  torch.compile vs unfused, largest relative difference: "
            f"{layer['torch_compile_max_relative_difference']:.2g}"
        )
    lines.append("  operators per call (forward / forward+backward; views not counted):")
    for batch in sorted({run["batch"] for run in layer["runs"]}):
        counts = {r["pass"]: r.get("kernels", {}) for r in layer["runs"] if r["batch"] == batch}
        forward, step = counts.get("forward", {}), counts.get("forward+backward", {})
        cells = [f"{k} {forward[k]}/{step.get(k, '-')}" for k in forward]
        lines.append(f"    batch {batch}: " + ", ".join(cells))
    params = layer["parameters"]
    lines.append(
        "  parameters: "
        + ", ".join(f"{k} {v['count']:,} ({v['bytes'] / 1024:.1f} KiB)" for k, v in params.items())
    )
    peak = layer["peak_memory"]
    kind = "allocator peak" if peak["kind"] == "cuda_allocator_peak" else "kept for backward"
    lines.append(
        f"  forward+backward memory at batch {peak['batch']} ({kind}): "
        + ", ".join(f"{k} {v / 2**20:.2f} MiB" for k, v in peak["bytes"].items())
    )
    if conv:
        flops = layer["forward_flops_per_sample"]
        lines.append(
            f"  forward FLOPs per image: generated {flops['generated']:,}, "
            f"nn.Conv2d {flops['nn.Conv2d']:,} ({flops['generated'] / flops['nn.Conv2d']:.2f}x)"
        )
    else:
        flops = layer["forward_flops_per_row"]
        lines.append(
            f"  forward FLOPs per row: generated {flops['generated']:,}, "
            f"nn.Linear {flops['nn.Linear']:,}"
        )
    if layer.get("tnlearn_formula"):
        lines.append(f"  tnlearn formula: {layer['tnlearn_formula']}")
    for name, reason in layer["skipped"].items():
        lines.append(f"  skipped {name}: {reason}")
    return lines


def _largest_batch(report: dict[str, Any]) -> list[tuple[str, dict[str, dict[str, float]]]]:
    out = []
    for layer in report["layers"]:
        largest = max(run["batch"] for run in layer["runs"])
        times: dict[str, dict[str, float]] = {}
        for run in layer["runs"]:
            if run["batch"] == largest:
                for name, seconds in run["seconds"].items():
                    times.setdefault(name, {})[run["pass"]] = seconds
        title = f"{layer['layer']} {layer['in_features']}->{layer['out_features']}, batch {largest}"
        out.append((title, times))
    return out
