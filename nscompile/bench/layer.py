"""One neuron layer timed beside its alternatives (unfused, torch.compile of the unfused layer,
nn.Linear, tnlearn, onnxruntime), its parameters, peak memory and FLOPs: one entry of
`nscompile bench`'s report."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nscompile.bench import peers
from nscompile.bench.settings import Settings
from nscompile.bench.tnlearn_notation import tnlearn_formula
from nscompile.compiler.emit_onnx import emit_onnx
from nscompile.compiler.flops import forward_flops
from nscompile.compiler.ir import LayerIR, NetworkIR, NeuronIR
from nscompile.compiler.pipeline import Compiled
from nscompile.errors import InputError, InternalError
from nscompile.lang.naming import layer_key


def bench_layer(
    compiled: Compiled,
    neuron: NeuronIR,
    layer: LayerIR,
    index: int,
    modules: dict[str, nn.Module],
    s: Settings,
    work: Path,
) -> dict[str, Any]:
    """The report entry of one layer: parity with the unfused layer, times, memory, FLOPs."""
    device = torch.device(s.device)
    d, o = layer.in_features, layer.out_features
    skipped: dict[str, str] = {}
    torch.manual_seed(s.seed)
    formula = _add_peers(compiled, layer, modules, skipped)
    for module in modules.values():
        module.to(device)
    parity = _parity(modules["generated"], modules["unfused"], d, device)
    if parity > 1e-4:
        raise InternalError(f"{layer_key(index)}: the unfused reference differs by {parity:.3g}")
    sessions = _sessions(compiled, layer, modules["generated"], s, work, skipped)
    peers.add_compiled(modules, s, skipped)
    with peers.recompile_room(2 * len(s.batches) + 2):
        runs, compiled_parity = peers.time_batches(
            modules, sessions, (d,), s.batches, s, skipped, _groups
        )
        largest = max(s.batches)
        x = torch.randn(largest, d, device=device)
        memory = peers.peak_bytes_of_all(modules, x, skipped)
    return {
        "layer": layer_key(index),
        "neuron": layer.neuron,
        "in_features": d,
        "out_features": o,
        "tnlearn_formula": formula,
        "skipped": skipped,
        "parity_max_relative_difference": parity,
        "torch_compile_max_relative_difference": compiled_parity,
        **peers.sizes(modules, s.device, largest, memory),
        "forward_flops_per_row": {
            "generated": forward_flops(neuron, 1, d, o),
            "nn.Linear": 2 * d * o + o,
        },
        "runs": runs,
    }


def _add_peers(
    compiled: Compiled, layer: LayerIR, modules: dict[str, nn.Module], skipped: dict[str, str]
) -> str | None:
    """Add nn.Linear and (where it can express the neuron, and is installed) tnlearn's TNLinear
    to `modules`; say in `skipped` why tnlearn is not there. Returns the tnlearn formula."""
    d, o = layer.in_features, layer.out_features
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
    return formula


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


def _groups(contenders: dict[str, Callable[[], object]]) -> list[dict[str, Callable[[], object]]]:
    """The torch layers alternate with each other; tnlearn and onnxruntime run apart.

    tnlearn's calls allocate hundreds of MiB and onnxruntime keeps its own thread pool: either,
    interleaved with the torch layers, slows whichever layer runs next on a small machine.
    """
    alone = {k for k in contenders if k == "tnlearn" or k.startswith("onnx")}
    together = {k: v for k, v in contenders.items() if k not in alone}
    return [together, *({k: contenders[k]} for k in contenders if k in alone)]


def _parity(generated: nn.Module, reference: nn.Module, width: int, device: torch.device) -> float:
    x = torch.randn(64, width, device=device)
    with torch.no_grad():
        want, got = reference(x), generated(x)
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))
