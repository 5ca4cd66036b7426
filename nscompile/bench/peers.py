"""What dense and conv layers share in `nscompile bench`: the `torch.compile(unfused)` peer and
the timing of every contender at every batch size.

`torch.compile` is the peer a user would pick instead of nscompile: the unfused layer (the spec
written term by term) handed to `torch.compile(dynamic=False)`, one graph per batch size and
pass. Its first call at each batch and pass (tracing, compiling, one run) is timed apart and
reported as its compile time; its timings start after that call and the usual warm-up. Where it
fails (no C compiler, an inductor error) the reason is reported and the peer skipped.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from nscompile.bench import timing as benchkit
from nscompile.bench.settings import Settings

COMPILED = "torch.compile"
#: Contenders that are not operators of ours to count, nor layers with their own parameters.
NOT_COUNTED = (COMPILED,)


def add_compiled(modules: dict[str, nn.Module], s: Settings, skipped: dict[str, str]) -> None:
    """Add `torch.compile(modules["unfused"])` to `modules`, unless turned off."""
    if s.torch_compile == "off":
        skipped[COMPILED] = "turned off (--torch-compile off)"
        return
    try:
        modules[COMPILED] = torch.compile(
            modules["unfused"], backend=s.torch_compile, dynamic=False
        )
    except Exception as error:  # e.g. torch.compile unsupported on this Python
        skipped[COMPILED] = _reason(error)


@contextlib.contextmanager
def recompile_room(graphs: int) -> Iterator[None]:
    """Let dynamo keep `graphs` graphs of one forward (one per batch size and grad mode) rather
    than fall back to eager silently after its default limit; the old limit is put back."""
    config = torch._dynamo.config
    old = config.recompile_limit
    config.recompile_limit = max(old, graphs)
    torch._dynamo.reset()
    try:
        yield
    finally:
        torch._dynamo.reset()
        config.recompile_limit = old


def time_batches(
    modules: dict[str, nn.Module],
    sessions: dict[str, Any],
    sample_shape: tuple[int, ...],
    batches: tuple[int, ...],
    s: Settings,
    skipped: dict[str, str],
    groups: Callable[[dict[str, Callable[[], object]]], list[dict[str, Callable[[], object]]]],
) -> tuple[list[dict[str, Any]], float | None]:
    """Forward and forward+backward medians (and samples) of every contender at every batch,
    on inputs (batch, *sample_shape); the torch.compile peer's first calls timed apart.

    Returns the runs and the largest relative difference of the torch.compile peer's outputs
    from the unfused layer's (None without that peer). A failing peer is dropped from `modules`.
    """
    device = torch.device(s.device)
    runs: list[dict[str, Any]] = []
    parity: float | None = None
    for batch in batches:
        x = torch.randn(batch, *sample_shape, device=device)
        host = x.cpu().numpy()
        forward = {name: forward_call(m, x) for name, m in modules.items()}
        forward.update({name: _ort(sess, host) for name, sess in sessions.items()})
        steps = {name: step_call(m, x) for name, m in modules.items()}
        for label, contenders in (("forward", forward), ("forward+backward", steps)):
            first: dict[str, float] = {}
            if COMPILED in contenders:
                outcome = _first_call(contenders[COMPILED], modules, x, label, skipped)
                if outcome is None:
                    del contenders[COMPILED]
                    forward.pop(COMPILED, None)
                    steps.pop(COMPILED, None)
                else:
                    first[COMPILED], difference = outcome
                    if difference is not None:
                        parity = max(parity or 0.0, difference)
            timing: dict[str, dict[str, Any]] = {}
            for group in groups(contenders):
                timing.update(benchkit.measure(group, s.warmup, s.reps, s.min_rep_s, s.max_inner))
            run: dict[str, Any] = {
                "batch": batch,
                "pass": label,
                "seconds": {k: v["median_s"] for k, v in timing.items()},
                "samples": {k: v["samples_s"] for k, v in timing.items()},
                "kernels": {
                    name: benchkit.count_kernels(call)
                    for name, call in contenders.items()
                    if name in modules and name not in NOT_COUNTED
                },
            }
            if first:
                run["compile_seconds"] = first
            runs.append(run)
    return runs, parity


def _first_call(
    call: Callable[[], object],
    modules: dict[str, nn.Module],
    x: torch.Tensor,
    label: str,
    skipped: dict[str, str],
) -> tuple[float, float | None] | None:
    """Seconds of the torch.compile peer's first call (compile and one run) and, for a forward,
    its difference from the unfused layer; None (and the reason in `skipped`) if it fails."""
    start = time.perf_counter()
    try:
        out = call()
    except Exception as error:  # no C compiler, an inductor or dynamo error: report, go on
        skipped[COMPILED] = f"{label} at batch {x.shape[0]} failed: {_reason(error)}"
        modules.pop(COMPILED, None)
        return None
    seconds = time.perf_counter() - start
    if not isinstance(out, torch.Tensor):
        return seconds, None
    with torch.no_grad():
        want = modules["unfused"](x)
    return seconds, relative_difference(out, want)


def relative_difference(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-30))


def _reason(error: BaseException) -> str:
    text = str(error).strip()
    line = text.splitlines()[0][:300] if text else ""
    return f"{type(error).__name__}: {line}" if line else type(error).__name__


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def forward_call(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            out = module(x)
        _sync(x.device)
        return out

    return run


def step_call(module: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        module.zero_grad(set_to_none=True)
        module(x).sum().backward()
        _sync(x.device)
        return None

    return run


def _ort(session: Any, host: Any) -> Callable[[], object]:
    return lambda: session.run(host)


def parameters(module: nn.Module) -> dict[str, int]:
    params = list(module.parameters())
    return {
        "count": sum(p.numel() for p in params),
        "bytes": sum(p.numel() * p.element_size() for p in params),
    }


def sizes(modules: dict[str, nn.Module], device: str, batch: int, memory: dict) -> dict:
    """A report's `parameters` (every contender but the compiled one, which shares the
    unfused layer's) and `peak_memory` at `batch` (what `peak_bytes` measured)."""
    kind = "cuda_allocator_peak" if device == "cuda" else "saved_for_backward_plus_output"
    return {
        "parameters": {name: parameters(m) for name, m in modules.items() if name != COMPILED},
        "peak_memory": {"batch": batch, "kind": kind, "bytes": memory},
    }


def peak_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Memory one forward+backward adds at this batch. CUDA: the allocator's peak above what
    was allocated before. CPU: the bytes of the distinct storages the forward saves for the
    backward (`torch.autograd.graph.saved_tensors_hooks`; the parameters and the input, which
    exist anyway, not counted) plus the output's: what a training step holds at its peak."""
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

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = module(x)
    saved.setdefault(out.untyped_storage().data_ptr(), out.untyped_storage().nbytes())
    del out
    return int(sum(saved.values()))


def peak_bytes_of_all(
    modules: dict[str, nn.Module], x: torch.Tensor, skipped: dict[str, str]
) -> dict[str, int]:
    """`peak_bytes` of every module; for the torch.compile peer only where it can be taken."""
    out: dict[str, int] = {}
    for name, module in modules.items():
        if name == COMPILED:
            try:
                out[name] = peak_bytes(module, x)
            except Exception as error:
                skipped[f"{COMPILED} memory"] = _reason(error)
            continue
        out[name] = peak_bytes(module, x)
    return out
