"""Timing tools shared by `nscompile bench` and the benchmark scripts under `examples/`.

Figures are medians of per-call times after warm-up, with the contenders alternating inside
each repetition so that drift on a shared machine hits them alike.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def measure(
    contenders: dict[str, Callable[[], object]],
    warmup: int | dict[str, int],
    reps: int,
    min_rep_s: float,
    max_inner: int,
    inner: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """Median seconds per call of each contender, with the raw samples.

    Each contender first runs its `warmup` calls (an int for all, or one per name; at least one
    unless its calls per repetition are given in `inner`), which also size its repetitions to
    about `min_rep_s` (at most `max_inner` calls). Then `reps` repetitions run, the contenders
    alternating inside each.
    """
    calls = dict(inner or {})
    warmups = warmup if isinstance(warmup, dict) else dict.fromkeys(contenders, warmup)
    for name, fn in contenders.items():
        count = warmups.get(name, 1)
        if name in calls and count == 0:
            continue
        start = time.perf_counter()
        for _ in range(max(1, count)):
            fn()
        per_call = (time.perf_counter() - start) / max(1, count)
        if name not in calls:
            calls[name] = max(1, min(max_inner, math.ceil(min_rep_s / max(per_call, 1e-9))))
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    for _ in range(reps):
        for name, fn in contenders.items():
            start = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            samples[name].append((time.perf_counter() - start) / calls[name])
    return {
        name: {
            "median_s": statistics.median(samples[name]),
            "samples_s": samples[name],
            "calls_per_rep": calls[name],
            "warmup": warmups.get(name, 1),
        }
        for name in contenders
    }


@contextlib.contextmanager
def silenced() -> Iterator[None]:
    """Swallow everything written to stdout and stderr, Python-level and file-descriptor-level."""
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            stream.flush()
    saved = [os.dup(1), os.dup(2)]
    try:
        with tempfile.TemporaryFile() as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            try:
                with (
                    contextlib.redirect_stdout(io.StringIO()),
                    contextlib.redirect_stderr(io.StringIO()),
                ):
                    yield
            finally:
                for stream in (sys.__stdout__, sys.__stderr__):
                    if stream is not None:
                        stream.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
    finally:
        for fd in saved:
            os.close(fd)


def torch_export(model: torch.nn.Module, x: torch.Tensor) -> bytes:
    """`torch.onnx.export(..., dynamo=True)` to memory, batch dimension dynamic, output silenced."""
    buffer = io.BytesIO()
    with silenced():
        torch.onnx.export(
            model,
            (x,),
            buffer,
            dynamo=True,
            verbose=False,
            dynamic_shapes=({0: torch.export.Dim("batch")},),
        )
    data = buffer.getvalue()
    if not data:
        raise RuntimeError("torch.onnx.export wrote nothing")
    return data


def machine_info() -> dict[str, Any]:
    """The machine and the versions that produced a set of figures."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "torch_cuda_available": torch.cuda.is_available(),
        "torch_num_threads": torch.get_num_threads(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if torch.cuda.is_available():
        info["cuda_devices"] = [
            torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())
        ]
    for name in ("onnx", "onnxruntime", "onnxscript", "sympy", "tnlearn", "nscompile"):
        try:
            info[name] = importlib.import_module(name).__version__
        except Exception as error:  # report, do not fail, for a missing package
            info[name] = f"unavailable ({type(error).__name__})"
    try:
        import onnxruntime as ort

        info["onnxruntime_providers"] = ort.get_available_providers()
        info["onnxruntime_device"] = ort.get_device()
    except Exception as error:
        info["onnxruntime_providers"] = f"unavailable ({type(error).__name__}: {error})"
    return info


def cuda_unavailable() -> str:
    """'' when torch can use a CUDA device here, else why not."""
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} sees no CUDA device"
    return ""


def ort_cuda_unavailable() -> str:
    """'' when onnxruntime has its CUDA provider here, else why not."""
    try:
        import onnxruntime as ort
    except ImportError:
        return "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return (
            f"onnxruntime {ort.__version__} has no CUDA provider "
            f"({', '.join(ort.get_available_providers())}); install onnxruntime-gpu"
        )
    return ""


def count_kernels(call: Callable[[], object]) -> int:
    """How many operators `call` runs that compute something (views such as `.T`, slices and
    `split` are free and not counted), forward and backward alike: each is at least one kernel
    launch, the per-call cost that does not shrink with the batch."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Counter(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204
            if not func.is_view:
                self.count += 1
            return func(*args, **(kwargs or {}))

    with Counter() as counter:
        call()
    return counter.count
