"""Benchmark the ONNX backend: emission against torch.onnx.export, onnxruntime against torch.

Run from anywhere:

    python examples/bench_onnx.py                       # full run on the CPU (about a minute)
    python examples/bench_onnx.py --quick               # a few seconds, for the tests
    python examples/bench_onnx.py --device cuda --json bench_gpu.json   # adds (c) on a GPU

(a) ONNX emission. For every `examples/*.ns`: nscompile's `to_onnx` (optimised IR -> checked
    ModelProto), and the whole `compile_file` + `to_onnx` + serialisation, against
    `torch.onnx.export(model, (x,), BytesIO, dynamo=True)` of the generated network module (batch
    dimension dynamic, as in nscompile's graphs). Target: nscompile >= 10x faster.
(b) CPU inference of examples/td.ns's network and of a wider TD network (64 -> 128 -> 128 -> 1),
    at batch 1 and 4096: `nscompile.learn.runtime.Session(provider="cpu")` (the real user path:
    numpy in, numpy out, input and output finiteness checks included) against torch eager
    (`no_grad`, float32), with the same weights. Target: onnxruntime no slower at either batch.
(c) With --device cuda: `Session(provider="cuda")` against torch on the GPU, at batch 4096 and 1.
    Session.run takes and returns numpy arrays, so its time includes the host -> device copy of
    the input and the device -> host copy of the output; torch is timed both with the input
    already on the GPU (output left there) and with a host tensor copied in and the output copied
    back per call (like-for-like with onnxruntime).

Contenders alternate within each repetition so that drift hits them alike; figures are medians of
per-call times after warm-up. Every section runs in its own try/except: a failure is printed and
the next section still runs (exit status 1 at the end). `--json FILE` writes every raw figure and
the machine's description. Targets are reported, never enforced: this is a command, not a test.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch  # before onnxruntime, so that onnxruntime-gpu can reuse torch's CUDA libraries

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "nscompile").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nscompile.bench import timing as benchkit  # noqa: E402
from nscompile.bench.timing import machine_info, torch_export  # noqa: E402
from nscompile.compiler.pipeline import (  # noqa: E402
    compile_file,
    compile_text,
    select_network,
    to_onnx,
    to_torch,
)
from nscompile.learn.loader import load_source  # noqa: E402
from nscompile.learn.weights import initial_state  # noqa: E402

EXAMPLES = ROOT / "examples"
TD_SPEC = EXAMPLES / "td.ns"
WIDE_TD_SPEC = """\
neuron td {
    rank 8
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}

network wide_td_net {
    input 64
    dense 128 td relu
    dense 128 td relu
    dense 1
    task regression
}
"""
EMIT_TARGET = 10.0
SEED = 0


@dataclass(frozen=True)
class Settings:
    """How much work one run does."""

    emit_warmup: int  # per spec, for nscompile's contenders
    export_warmup: int  # per spec, for torch.onnx.export (one global warm-up export always runs)
    emit_reps: int
    infer_warmup: int
    infer_reps: int
    min_rep_s: float  # calls per repetition are chosen so that one repetition takes about this
    max_inner: int
    cpu_batches: tuple[int, ...]
    gpu_batches: tuple[int, ...]


FULL = Settings(
    emit_warmup=3,
    export_warmup=1,
    emit_reps=5,
    infer_warmup=5,
    infer_reps=15,
    min_rep_s=0.05,
    max_inner=2000,
    cpu_batches=(1, 4096),
    gpu_batches=(4096, 1),
)
QUICK = Settings(
    emit_warmup=1,
    export_warmup=0,
    emit_reps=1,
    infer_warmup=1,
    infer_reps=3,
    min_rep_s=0.005,
    max_inner=50,
    cpu_batches=(1, 256),
    gpu_batches=(256, 1),
)


# ----------------------------------------------------------------------------------- timing


def measure(
    contenders: dict[str, Callable[[], object]],
    warmup: int | dict[str, int],
    reps: int,
    s: Settings,
    inner: dict[str, int] | None = None,
) -> dict[str, dict[str, Any]]:
    """`nscompile.bench.timing.measure` with this script's repetition sizes."""
    return benchkit.measure(contenders, warmup, reps, s.min_rep_s, s.max_inner, inner)


# ---------------------------------------------------------------------------------- helpers


@dataclass
class Deployed:
    """One network: the torch model (CPU, eval) and its ONNX file with the same weights."""

    label: str
    network: str
    input_width: int
    model: torch.nn.Module
    onnx_path: Path


def deploy(label: str, compiled: Any, workdir: Path) -> Deployed:
    network = select_network(compiled, None)
    module = load_source(to_torch(compiled))
    torch.manual_seed(SEED)
    model = module.build(network.name).eval()
    weights = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    path = workdir / f"{network.name}.onnx"
    path.write_bytes(to_onnx(compiled, network, weights).SerializeToString())
    return Deployed(label, network.name, network.input_width, model, path)


def inference_networks(workdir: Path) -> list[Deployed]:
    return [
        deploy("examples/td.ns", compile_file(str(TD_SPEC)), workdir),
        deploy("wide TD 64-128-128-1", compile_text(WIDE_TD_SPEC, "wide_td.ns"), workdir),
    ]


def batch_input(width: int, batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, width)).astype(np.float32)


def relative_difference(got: np.ndarray, want: np.ndarray) -> tuple[float, float]:
    diff = float(np.abs(got.astype(np.float64) - want).max())
    return diff, diff / max(float(np.abs(want).max()), 1e-30)


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:.4f}" if seconds < 1e-2 else f"{seconds * 1e3:.2f}"


# -------------------------------------------------------------------------------- (a) emission


def bench_emission(s: Settings, results: dict[str, Any]) -> None:
    print("(a) ONNX emission: nscompile (from the IR) vs torch.onnx.export(dynamo=True)")
    print(
        "    emit = to_onnx (IR -> checked ModelProto); compile+emit = compile_file + to_onnx + "
        "SerializeToString;\n    export = torch.onnx.export of the generated network to a "
        "BytesIO (dynamic batch); weights from initial_state"
    )
    for name in ("torch.onnx", "onnxscript"):
        logging.getLogger(name).setLevel(logging.ERROR)
    specs = sorted(EXAMPLES.glob("*.ns"))
    prepared = []
    for path in specs:
        compiled = compile_file(str(path))
        network = select_network(compiled, None)
        source = to_torch(compiled)
        weights = initial_state(source, network.name, SEED)
        module = load_source(source)
        torch.manual_seed(SEED)
        model = module.build(network.name).eval()
        x = torch.randn(4, network.input_width)
        prepared.append((path, compiled, network, weights, model, x))

    # The exporter's one-time start-up (imports, registries) is not part of any spec's figure:
    # one export runs first, of the first spec it succeeds on.
    export_skip = "no spec"
    for path, *_, model, x in prepared:
        try:
            start = time.perf_counter()
            torch_export(model, x)
        except Exception as error:  # onnxscript missing, exporter broken: say so, never zero
            export_skip = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            continue
        results["export_first_call_s"] = time.perf_counter() - start
        results["export_warmed_up_with"] = path.name
        export_skip = ""
        break
    if export_skip:
        print(f"    torch.onnx.export skipped: {export_skip}")
        results["export_skipped"] = export_skip

    print(f"    median of {s.emit_reps} rep(s); ms per call")
    header = f"    {'spec':<16}{'emit':>10}{'compile+emit':>14}{'export':>12}{'export/emit':>13}"
    print(header + f"{'export/(compile+emit)':>23}")
    per_spec: dict[str, Any] = {}
    results["specs"] = per_spec
    ratios = []
    for path, compiled, network, weights, model, x in prepared:
        spec_text = str(path)
        contenders: dict[str, Callable[[], object]] = {
            "emit": lambda c=compiled, n=network, w=weights: to_onnx(c, n, w),
            "compile+emit": lambda p=spec_text, w=weights: to_onnx(
                (c := compile_file(p)), select_network(c, None), w
            ).SerializeToString(),
        }
        if not export_skip:
            contenders["export"] = lambda m=model, t=x: torch_export(m, t)
        warmups = {"emit": s.emit_warmup, "compile+emit": s.emit_warmup}
        warmups["export"] = s.export_warmup
        spec_skip = export_skip
        try:
            row = measure(contenders, warmups, s.emit_reps, s, inner={"export": 1})
        except Exception as error:  # the exporter failing on one spec: time nscompile alone
            if "export" not in contenders:
                raise
            spec_skip = f"{type(error).__name__}: {str(error).strip().splitlines()[0][:200]}"
            print(f"    {path.name}: torch.onnx.export skipped: {spec_skip}")
            del contenders["export"]
            row = measure(contenders, warmups, s.emit_reps, s)
            row["export_skipped"] = spec_skip
        emit, whole = row["emit"]["median_s"], row["compile+emit"]["median_s"]
        line = f"    {path.name:<16}{ms(emit):>10}{ms(whole):>14}"
        if spec_skip:
            line += f"{'skipped':>12}"
        else:
            export = row["export"]["median_s"]
            ratios.append(export / whole)
            row["export_over_emit"] = export / emit
            row["export_over_compile_emit"] = export / whole
            line += f"{ms(export):>12}{export / emit:>12.0f}x{export / whole:>22.0f}x"
        print(line)
        per_spec[path.name] = row
    if ratios:
        worst = min(ratios)
        verdict = "meets" if worst >= EMIT_TARGET else "BELOW"
        print(
            f"    slowest case: nscompile compile+emit {worst:.0f}x faster than the exporter "
            f"({verdict} the {EMIT_TARGET:.0f}x target)"
        )
        results["worst_export_over_compile_emit"] = worst


# ------------------------------------------------------------------------------- (b) CPU


def thread_report() -> dict[str, Any]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    return {
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "ort_intra_op_num_threads_option": options.intra_op_num_threads,
        "ort_inter_op_num_threads_option": options.inter_op_num_threads,
        "note": "nscompile.learn.runtime.Session takes no thread option; onnxruntime runs with its "
        "default (0 = one intra-op thread per physical core)",
    }


def bench_cpu(s: Settings, networks: list[Deployed], results: dict[str, Any]) -> None:
    from nscompile.learn.runtime import Session

    threads = thread_report()
    results["threads"] = threads
    print()
    print("(b) CPU inference: nscompile Session(provider='cpu') vs torch eager (no_grad, float32)")
    print(
        f"    torch threads {threads['torch_num_threads']}; onnxruntime intra-op threads: the same "
        f"(Session(threads=...)); os.cpu_count() = {os.cpu_count()}"
    )
    print(f"    median of {s.infer_reps} reps; ms per batch (Session.run: numpy in/out, checks)")
    print(
        f"    {'network':<22}{'batch':>6}{'onnxruntime':>13}{'torch':>11}{'torch/ort':>11}  verdict"
    )
    rows: list[dict[str, Any]] = []
    results["rows"] = rows
    for net in networks:
        session = Session(net.onnx_path, provider="cpu", threads=torch.get_num_threads())
        for batch in s.cpu_batches:
            x = batch_input(net.input_width, batch)
            tensor = torch.from_numpy(x)
            with torch.no_grad():
                want = net.model(tensor).numpy()
            diff, rel = relative_difference(session.run(x), want)

            def run_torch(t: torch.Tensor = tensor, m: torch.nn.Module = net.model) -> object:
                with torch.no_grad():
                    return m(t)

            timing = measure(
                {"onnxruntime": lambda se=session, a=x: se.run(a), "torch": run_torch},
                s.infer_warmup,
                s.infer_reps,
                s,
            )
            ort_s, torch_s = timing["onnxruntime"]["median_s"], timing["torch"]["median_s"]
            verdict = "ok" if ort_s <= torch_s else "SLOWER"
            print(
                f"    {net.label:<22}{batch:>6}{ms(ort_s):>13}{ms(torch_s):>11}"
                f"{torch_s / ort_s:>10.2f}x  {verdict}"
            )
            rows.append(
                {
                    "network": net.label,
                    "batch": batch,
                    "providers": session.providers,
                    "max_abs_diff": diff,
                    "relative_diff": rel,
                    "timing": timing,
                    "torch_over_ort": torch_s / ort_s,
                }
            )
    worst = max(rows, key=lambda r: abs(r["relative_diff"]))
    print(f"    parity: largest relative difference {worst['relative_diff']:.3g} (same weights)")


# ------------------------------------------------------------------------------- (c) CUDA


def cuda_unavailable() -> str:
    """'' when both torch and onnxruntime can use CUDA here, else why not."""
    return benchkit.cuda_unavailable() or benchkit.ort_cuda_unavailable()


def cuda_session(path: Path, results: dict[str, Any]) -> Any:
    """Session(provider='cuda'); if CUDA will not load, retry once after ort.preload_dlls()."""
    import onnxruntime as ort

    from nscompile.errors import InputError
    from nscompile.learn.runtime import Session

    try:
        return Session(path, provider="cuda")
    except InputError as error:
        if not hasattr(ort, "preload_dlls"):
            raise
        results["first_cuda_session_error"] = str(error)
        print(f"    Session(provider='cuda') failed ({error}); retrying after ort.preload_dlls()")
        ort.preload_dlls()
        results["preload_dlls"] = True
        return Session(path, provider="cuda")


def bench_cuda(s: Settings, networks: list[Deployed], results: dict[str, Any]) -> None:
    print()
    print("(c) CUDA inference: nscompile Session(provider='cuda') vs torch on the GPU")
    reason = cuda_unavailable()
    if reason:
        print(f"    skipped: {reason}")
        results["skipped"] = reason
        return
    device = torch.device("cuda")
    results["device_name"] = torch.cuda.get_device_name(0)
    results["torch_cuda"] = torch.version.cuda
    results["torch_allow_tf32_matmul"] = torch.backends.cuda.matmul.allow_tf32
    print(f"    {results['device_name']}, torch CUDA {torch.version.cuda}")
    print(
        "    onnxruntime: Session.run(numpy) = host->device copy + run + device->host copy (and "
        "its finiteness checks);\n    torch resident: input already on the GPU, output left "
        "there, synchronize per call;\n    torch copied: host tensor .cuda() in, .cpu() out per "
        "call (like-for-like with onnxruntime)"
    )
    print(f"    median of {s.infer_reps} reps; ms per batch")
    head = f"    {'network':<22}{'batch':>6}{'onnxruntime':>13}{'torch resident':>16}"
    print(head + f"{'torch copied':>14}{'copied/ort':>12}{'resident/ort':>14}")
    rows: list[dict[str, Any]] = []
    results["rows"] = rows
    for net in networks:
        session = cuda_session(net.onnx_path, results)
        results.setdefault("providers", session.providers)
        model = net.model.to(device)
        try:
            for batch in s.gpu_batches:
                x = batch_input(net.input_width, batch)
                host = torch.from_numpy(x)
                on_gpu = host.to(device)
                with torch.no_grad():
                    want = model(on_gpu).cpu().numpy()
                diff, rel = relative_difference(session.run(x), want)

                def resident(m: torch.nn.Module = model, t: torch.Tensor = on_gpu) -> object:
                    with torch.no_grad():
                        y = m(t)
                    torch.cuda.synchronize()
                    return y

                def copied(m: torch.nn.Module = model, t: torch.Tensor = host) -> object:
                    with torch.no_grad():
                        return m(t.to(device)).cpu()

                torch.cuda.synchronize()
                timing = measure(
                    {
                        "onnxruntime": lambda se=session, a=x: se.run(a),
                        "torch_resident": resident,
                        "torch_copied": copied,
                    },
                    s.infer_warmup,
                    s.infer_reps,
                    s,
                )
                ort_s = timing["onnxruntime"]["median_s"]
                res_s = timing["torch_resident"]["median_s"]
                cop_s = timing["torch_copied"]["median_s"]
                print(
                    f"    {net.label:<22}{batch:>6}{ms(ort_s):>13}{ms(res_s):>16}{ms(cop_s):>14}"
                    f"{cop_s / ort_s:>11.2f}x{res_s / ort_s:>13.2f}x"
                )
                rows.append(
                    {
                        "network": net.label,
                        "batch": batch,
                        "providers": session.providers,
                        "max_abs_diff": diff,
                        "relative_diff": rel,
                        "timing": timing,
                        "torch_copied_over_ort": cop_s / ort_s,
                        "torch_resident_over_ort": res_s / ort_s,
                    }
                )
        finally:
            net.model.to("cpu")
    if rows:
        worst = max(rows, key=lambda r: abs(r["relative_diff"]))
        print(
            f"    parity: largest relative difference {worst['relative_diff']:.3g} "
            "(onnxruntime's CUDA provider may use TF32 for float32 GEMMs; torch by default not)"
        )


# -------------------------------------------------------------------------------- driver


def section(name: str, results: dict[str, Any], errors: list[str], run: Callable[[], None]) -> None:
    """Run one section; a failure is printed and recorded, and the next section still runs."""
    start = time.perf_counter()
    try:
        run()
    except Exception as error:
        sys.stdout.flush()
        traceback.print_exc()
        message = f"{type(error).__name__}: {error}"
        print(f"    section {name} FAILED: {message}")
        results.setdefault(name, {})["error"] = message
        errors.append(name)
    results.setdefault(name, {})["section_s"] = time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, small batches")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="cuda adds section (c)"
    )
    parser.add_argument("--json", metavar="FILE", help="write every raw figure here")
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's; 1 under --quick)"
    )
    args = parser.parse_args(argv)
    # Under --quick the tests may share the cores with other work; one torch thread keeps OpenMP
    # from stalling against it (onnxruntime's thread count cannot be set through Session).
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    s = QUICK if args.quick else FULL
    started = time.perf_counter()
    results: dict[str, Any] = {
        "argv": sys.argv[1:],
        "settings": s.__dict__,
        "machine": machine_info(),
        "emission": {},
        "cpu_inference": {},
    }
    m = results["machine"]
    print(
        f"nscompile {m['nscompile']}, torch {m['torch']}, onnxruntime {m['onnxruntime']}, "
        f"onnx {m['onnx']}, onnxscript {m['onnxscript']}; {m['platform']}, "
        f"{m['cpu_count']} CPUs; providers {m['onnxruntime_providers']}"
    )
    print()
    errors: list[str] = []
    section("emission", results, errors, lambda: bench_emission(s, results["emission"]))
    with tempfile.TemporaryDirectory() as tmp:
        networks: list[Deployed] = []

        def prepare() -> None:
            networks.extend(inference_networks(Path(tmp)))

        section("networks", results, errors, prepare)
        if networks:
            section(
                "cpu_inference",
                results,
                errors,
                lambda: bench_cpu(s, networks, results["cpu_inference"]),
            )
            if args.device == "cuda":
                results["cuda_inference"] = {}
                section(
                    "cuda_inference",
                    results,
                    errors,
                    lambda: bench_cuda(s, networks, results["cuda_inference"]),
                )
    if args.device == "cpu":
        print()
        print("(c) CUDA inference: not run (pass --device cuda)")
    results["total_s"] = time.perf_counter() - started
    results["failed_sections"] = errors
    print()
    print(
        f"total {results['total_s']:.1f} s" + (f"; FAILED: {', '.join(errors)}" if errors else "")
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8"
        )
        print(f"wrote {args.json}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
