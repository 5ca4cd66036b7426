"""`nscompile bench`: one compiled spec measured beside its alternatives, in one process and run.

Compile: spec -> optimised IR, IR -> PyTorch source, IR -> ONNX, and for comparison
`torch.onnx.export(dynamo=True)` of the generated network. Run, for every neuron layer of the
network at its widths and every batch size, forward and forward+backward of:

- `generated`: the layer nscompile generates;
- `unfused`: the same spec compiled without fusion or CSE and summed term by term
  (`pipeline.to_torch_unfused`): one matrix product per projection, products term by term, the
  same parameters (checked to compute the same function with the same weights);
- `nn.Linear`: a plain linear layer of the same widths, the floor;
- `tnlearn`: tnlearn's `TNLinear` for the nearest formula in its notation (`cp(x, k)` becomes
  one rank-1 product `<u1, x>*...*<uk, x>` per unit, the cheaper of the two interaction forms of
  the public NeuronSeek code), when tnlearn is installed;
- `onnxruntime-cpu` / `onnxruntime-cuda` (forward only): the layer as an ONNX graph, numpy in and
  out, CUDA only when onnxruntime really loaded its CUDA provider.

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nscompile.bench import timing as benchkit
from nscompile.bench.tnlearn_notation import tnlearn_formula
from nscompile.compiler.emit_onnx import emit_onnx
from nscompile.compiler.emit_torch import emit_torch
from nscompile.compiler.flops import forward_flops
from nscompile.compiler.ir import (
    LayerIR,
    NetworkIR,
    NeuronIR,
)
from nscompile.compiler.pipeline import (
    Compiled,
    compile_text,
    select_network,
    to_onnx,
    to_torch_unfused,
)
from nscompile.errors import InputError, InternalError
from nscompile.lang.naming import layer_key
from nscompile.lang.source import read_source
from nscompile.learn.loader import load_file

DEVICES = ("cpu", "cuda")
MAX_BATCH = 1_000_000
TARGETS = {"tnlearn": 20.0, "unfused": 1.5, "flop_model": 2.0, "export": 10.0}


@dataclass(frozen=True)
class Settings:
    """What one run measures and how long it tries."""

    batches: tuple[int, ...] = (1, 256, 4096)
    device: str = "cpu"
    reps: int = 15
    warmup: int = 3
    min_rep_s: float = 0.02
    max_inner: int = 200
    compile_reps: int = 5
    export_reps: int = 2
    seed: int = 0


def parse_batches(text: str) -> tuple[int, ...]:
    """`1,256,4096` -> (1, 256, 4096); InputError for anything else."""
    parts = [p.strip() for p in text.split(",")]
    if not parts or not all(p.isdigit() for p in parts):
        raise InputError(
            f"--batch '{text}' is not a comma-separated list of positive integers",
            hint="for example --batch 1,256,4096",
        )
    values = sorted({int(p) for p in parts})
    if values[0] < 1 or values[-1] > MAX_BATCH:
        raise InputError(f"--batch sizes must be between 1 and {MAX_BATCH:,}, got '{text}'")
    return tuple(values)


def check_device(device: str) -> None:
    """InputError for an unknown device, or for CUDA where torch has none."""
    if device not in DEVICES:
        raise InputError(f"unknown device '{device}'", hint=f"one of {', '.join(DEVICES)}")
    if device == "cuda":
        reason = benchkit.cuda_unavailable()
        if reason:
            raise InputError(f"CUDA was asked for, but {reason}", hint="use --device cpu")


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
        model = generated.build(network.name).eval()  # eval for the export; no layer differs
        reference = unfused.build(network.name)
        reference.load_state_dict(model.state_dict())
        log(f"compile: {path}")
        report["compile"] = _compile_times(source, path, compiled, network, model, settings)
        report["layers"] = []
        seen: set[tuple[str, int, int]] = set()
        for index, layer in enumerate(network.layers, start=1):
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
                _bench_layer(compiled, neuron, layer, index, layers, settings, work)
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


# -------------------------------------------------------------------------------------- layers


def _bench_layer(
    compiled: Compiled,
    neuron: NeuronIR,
    layer: LayerIR,
    index: int,
    modules: dict[str, nn.Module],
    s: Settings,
    work: Path,
) -> dict[str, Any]:
    device = torch.device(s.device)
    d, o = layer.in_features, layer.out_features
    skipped: dict[str, str] = {}
    torch.manual_seed(s.seed)
    modules["nn.Linear"] = nn.Linear(d, o)
    formula, reason = tnlearn_formula(compiled.spec.neurons[layer.neuron or ""])
    if formula is not None:
        try:
            from tnlearn.modules.TNlinear import TNLinear

            modules["tnlearn"] = TNLinear(d, o, formula)
        except ImportError:
            reason = "tnlearn is not installed (pip install 'nscompile[compare]')"
    if "tnlearn" not in modules:
        skipped["tnlearn"] = reason
    for module in modules.values():
        module.to(device)
    parity = _parity(modules["generated"], modules["unfused"], d, device)
    if parity > 1e-4:
        raise InternalError(f"{layer_key(index)}: the unfused reference differs by {parity:.3g}")
    sessions = _sessions(compiled, layer, modules["generated"], s, work, skipped)
    runs: list[dict[str, Any]] = []
    for batch in s.batches:
        x = torch.randn(batch, d, device=device)
        host = x.cpu().numpy()
        forward = {name: _forward(m, x) for name, m in modules.items()}
        forward.update({name: _ort(sess, host) for name, sess in sessions.items()})
        steps = {name: _step(m, x) for name, m in modules.items()}
        for label, contenders in (("forward", forward), ("forward+backward", steps)):
            timing: dict[str, dict[str, Any]] = {}
            for group in _groups(contenders):
                timing.update(benchkit.measure(group, s.warmup, s.reps, s.min_rep_s, s.max_inner))
            runs.append(
                {
                    "batch": batch,
                    "pass": label,
                    "seconds": {k: v["median_s"] for k, v in timing.items()},
                    "samples": {k: v["samples_s"] for k, v in timing.items()},
                }
            )
    largest = max(s.batches)
    x = torch.randn(largest, d, device=device)
    return {
        "layer": layer_key(index),
        "neuron": layer.neuron,
        "in_features": d,
        "out_features": o,
        "tnlearn_formula": formula,
        "skipped": skipped,
        "parity_max_relative_difference": parity,
        "parameters": {name: _parameters(m) for name, m in modules.items()},
        "peak_memory": {
            "batch": largest,
            "kind": "cuda_allocator_peak"
            if s.device == "cuda"
            else "saved_for_backward_plus_output",
            "bytes": {name: _peak_bytes(m, x) for name, m in modules.items()},
        },
        "forward_flops_per_row": {
            "generated": forward_flops(neuron, 1, d, o),
            "nn.Linear": 2 * d * o + o,
        },
        "runs": runs,
    }


def _sessions(
    compiled: Compiled,
    layer: LayerIR,
    module: nn.Module,
    s: Settings,
    work: Path,
    skipped: dict[str, str],
) -> dict[str, Any]:
    """onnxruntime sessions of the layer alone: CPU always, CUDA on --device cuda."""
    try:
        from nscompile.learn.runtime import Session
    except ImportError as error:  # pragma: no cover - runtime imports onnxruntime lazily
        skipped["onnxruntime"] = str(error)
        return {}
    one = NetworkIR(
        name="layer",
        input_width=layer.in_features,
        layers=(LayerIR(layer.neuron, layer.in_features, layer.out_features, "identity"),),
        task="regression",
        classes=None,
        summary=f"{layer.neuron} layer",
    )
    weights = {layer_key(1, k): v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    path = work / f"{layer.neuron}_{layer.in_features}_{layer.out_features}.onnx"
    path.write_bytes(emit_onnx(compiled.optimized, one, weights).SerializeToString())
    sessions: dict[str, Any] = {}
    providers = ["cpu", "cuda"] if s.device == "cuda" else ["cpu"]
    for provider in providers:
        name = f"onnxruntime-{provider}"
        try:
            sessions[name] = Session(
                path, provider=provider, threads=torch.get_num_threads(), spinning=False
            )
        except InputError as error:
            skipped[name] = error.message
    return sessions


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _forward(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            out = module(x)
        _sync(x.device)
        return out

    return run


def _groups(contenders: dict[str, Callable[[], object]]) -> list[dict[str, Callable[[], object]]]:
    """The torch layers alternate with each other; tnlearn and onnxruntime run apart.

    tnlearn's calls allocate hundreds of MiB and onnxruntime keeps its own thread pool: either,
    interleaved with the torch layers, slows whichever layer runs next on a small machine.
    """
    alone = {k for k in contenders if k == "tnlearn" or k.startswith("onnx")}
    together = {k: v for k, v in contenders.items() if k not in alone}
    return [together, *({k: contenders[k]} for k in contenders if k in alone)]


def _ort(session: Any, host: Any) -> Callable[[], object]:
    return lambda: session.run(host)


def _step(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
        _sync(x.device)
        return None

    return run


def _parity(generated: nn.Module, reference: nn.Module, width: int, device: torch.device) -> float:
    x = torch.randn(64, width, device=device)
    with torch.no_grad():
        want, got = reference(x), generated(x)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def _parameters(module: nn.Module) -> dict[str, int]:
    params = list(module.parameters())
    return {
        "count": sum(p.numel() for p in params),
        "bytes": sum(p.numel() * p.element_size() for p in params),
    }


def _peak_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Memory one forward+backward adds at this batch (see the module docstring)."""
    module.zero_grad(set_to_none=True)
    if x.device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        module(x).sum().backward()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - base
        module.zero_grad(set_to_none=True)
        return int(peak)
    owned = {p.untyped_storage().data_ptr() for p in module.parameters()}
    owned.add(x.untyped_storage().data_ptr())
    saved: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in owned:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = module(x)
    saved.setdefault(out.untyped_storage().data_ptr(), out.untyped_storage().nbytes())
    del out
    return int(sum(saved.values()))


# -------------------------------------------------------------------------------- targets


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
