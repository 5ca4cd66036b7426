"""Benchmark the generated code: the fused TD layer against an unfused one, and CLI compile times.

Run from anywhere, on the CPU:

    python examples/bench_codegen.py            # full run (about 15 s on 2 cores)
    python examples/bench_codegen.py --quick    # a few seconds, for the tests

Part (a) times forward + backward of the `TdLayer` nscompile generates for

    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b      (rank 8)

against the same layer written the obvious way (one `nn.Linear` per term and per CP factor), after
checking that both compute the same function with the same weights. Part (b) times
`nscompile SPEC -o model.py` as a fresh process, interpreter start included, for every example spec.
The targets (speed-up >= 1.5x, compile < 2 s) are reported, never enforced: this is a command, not
a test.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "nscompile").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nscompile.compiler.pipeline import compile_text, to_torch  # noqa: E402
from nscompile.learn.loader import load_file  # noqa: E402

TD_SPEC = """\
neuron td {
    rank 8
    y = <w1, x> + <w2, x**2> + cp(x, 2) + cp(x, 3) + b
}
network net {
    input 64
    dense 64 td relu
    dense 1
    task regression
}
"""
RANK = 8
CP_ORDERS = (2, 3)
SPEEDUP_TARGET = 1.5
COMPILE_TARGET_S = 2.0


@dataclass(frozen=True)
class Settings:
    """How much work one run does."""

    batch: int
    features: int
    warmup: int
    reps: int
    inner: int
    compile_runs: int


FULL = Settings(batch=4096, features=64, warmup=10, reps=30, inner=5, compile_runs=3)
QUICK = Settings(batch=512, features=64, warmup=2, reps=5, inner=2, compile_runs=1)


class UnfusedTdLayer(nn.Module):
    """The TD layer written the obvious way: one linear map per pure term and per CP factor."""

    def __init__(self, in_features: int, out_features: int, rank: int = RANK) -> None:
        super().__init__()
        self.pure1 = nn.Linear(in_features, out_features, bias=False)
        self.pure2 = nn.Linear(in_features, out_features, bias=False)
        self.cp_factors = nn.ModuleList(
            nn.ModuleList(nn.Linear(in_features, rank, bias=False) for _ in range(k))
            for k in CP_ORDERS
        )
        self.cp_out = nn.ModuleList(nn.Linear(rank, out_features, bias=False) for _ in CP_ORDERS)
        self.bias = nn.Parameter(torch.zeros(out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pure1(x) + self.pure2(x**2) + self.bias
        for factors, out in zip(self.cp_factors, self.cp_out, strict=True):
            product = factors[0](x)
            for factor in factors[1:]:
                product = product * factor(x)
            y = y + out(product)
        return y


def compile_td_layer(workdir: Path) -> type[nn.Module]:
    """Compile TD_SPEC with nscompile, import the generated file, return its TdLayer class."""
    source = to_torch(compile_text(TD_SPEC, "bench_td.ns"))
    path = workdir / "bench_td_model.py"
    path.write_text(source, encoding="utf-8")
    return load_file(path).TdLayer


@torch.no_grad()
def copy_weights(generated: nn.Module, reference: UnfusedTdLayer) -> None:
    """Give the reference layer the generated layer's weights (nn.Linear stores W as out x in)."""
    params = generated.state_dict()  # per-term keys, also where the layer stores them fused
    expected = {"w1", "w2", "bias"} | {f"cp{k}_a" for k in CP_ORDERS}
    expected |= {f"cp{k}_u{m}" for k in CP_ORDERS for m in range(1, k + 1)}
    if set(params) != expected:
        raise SystemExit(
            f"the generated TdLayer's state dict changed: {sorted(params)}; "
            f"update copy_weights (expected {sorted(expected)})"
        )
    reference.pure1.weight.copy_(params["w1"])
    reference.pure2.weight.copy_(params["w2"])
    reference.bias.copy_(params["bias"])
    for k, factors, out in zip(CP_ORDERS, reference.cp_factors, reference.cp_out, strict=True):
        for m, factor in enumerate(factors, start=1):
            factor.weight.copy_(params[f"cp{k}_u{m}"].T)
        out.weight.copy_(params[f"cp{k}_a"].T)


def max_difference(generated: nn.Module, reference: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return (generated(x) - reference(x)).abs().max().item()


def train_step(layer: nn.Module, x: torch.Tensor, grad: torch.Tensor) -> Callable[[], None]:
    """The layer's forward and backward pass (gradients of the weights), nothing else.

    The upstream gradient is a fixed tensor, as the layer above would hand it down: no loss is
    computed, so the step times the layer alone (a loss such as `square().mean()` costs both
    layers the same and would only dilute the comparison).
    """

    def step() -> None:
        layer.zero_grad(set_to_none=True)
        layer(x).backward(grad)

    return step


def _synchronize() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def time_steps(steps: dict[str, Callable[[], None]], s: Settings) -> dict[str, float]:
    """Median seconds per call for each step; the steps alternate so drift hits both alike."""
    for step in steps.values():
        for _ in range(s.warmup):
            step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(s.reps):
        for name, step in steps.items():
            _synchronize()
            start = time.perf_counter()
            for _ in range(s.inner):
                step()
            _synchronize()  # GPU work is asynchronous: count it to its end
            samples[name].append((time.perf_counter() - start) / s.inner)
    return {name: statistics.median(times) for name, times in samples.items()}


def bench_layers(s: Settings, device: str = "cpu") -> None:
    d = o = s.features
    print(
        f"(a) TD layer forward + backward, D={d}, O={o}, rank {RANK}, batch {s.batch}, float32, "
        f"on {device}" + (f" ({torch.cuda.get_device_name()})" if device == "cuda" else "")
    )
    print(
        f"    torch {torch.__version__}, torch.get_num_threads() = {torch.get_num_threads()}, "
        f"median of {s.reps} reps x {s.inner} steps after {s.warmup} warm-up steps"
    )
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        generated = compile_td_layer(Path(tmp))(d, o)
    reference = UnfusedTdLayer(d, o)
    copy_weights(generated, reference)
    x = torch.randn(s.batch, d)

    diff32 = max_difference(generated, reference, x)
    diff64 = max_difference(generated.double(), reference.double(), x.double())
    generated.float().to(device)
    reference.float().to(device)
    x = x.to(device)
    scale = reference(x).abs().max().item()
    print(
        f"    same function, same weights: max |generated - unfused| = {diff32:.3g} (float32), "
        f"{diff64:.3g} (float64); max |y| = {scale:.3g}"
    )

    grad = torch.randn(s.batch, o, device=device)
    medians = time_steps(
        {"generated": train_step(generated, x, grad), "unfused": train_step(reference, x, grad)}, s
    )
    ratio = medians["unfused"] / medians["generated"]
    print()
    print(f"    {'layer':<28}{'ms / step':>12}{'rows / s':>14}")
    for name, label in (
        ("unfused", "unfused (nn.Linear per term)"),
        ("generated", "nscompile TdLayer"),
    ):
        seconds = medians[name]
        print(f"    {label:<28}{seconds * 1e3:>12.3f}{s.batch / seconds:>14,.0f}")
    verdict = "meets" if ratio >= SPEEDUP_TARGET else "BELOW"
    print(f"    speed-up {ratio:.2f}x ({verdict} the {SPEEDUP_TARGET}x target)")


def cli_command(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "nscompile", str(spec), "-o", str(out)]


def time_cli(spec: Path, workdir: Path, runs: int) -> tuple[float, str]:
    """Median wall time of `nscompile SPEC -o model.py` in a fresh process, and '' or an error."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    times = []
    for _ in range(runs):
        out = workdir / "model.py"
        out.unlink(missing_ok=True)
        start = time.perf_counter()
        result = subprocess.run(
            cli_command(spec, out), cwd=workdir, env=env, capture_output=True, text=True
        )
        times.append(time.perf_counter() - start)
        if result.returncode != 0 or not out.is_file():
            lines = (result.stderr or result.stdout).strip().splitlines() or ["(no output)"]
            return times[-1], f"exit {result.returncode}: {lines[-1]}"
    return statistics.median(times), ""


def bench_cli(s: Settings) -> bool:
    """Print the compile-time table; return whether every spec compiled."""
    print()
    print(
        "(b) `python -m nscompile SPEC -o model.py`, wall time incl. interpreter start, "
        f"median of {s.compile_runs}"
    )
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        bench_spec = workdir / "bench_td.ns"
        bench_spec.write_text(TD_SPEC, encoding="utf-8")
        specs = [(bench_spec, "(a)'s TD spec")]
        specs += [(p, f"examples/{p.name}") for p in sorted((ROOT / "examples").glob("*.ns"))]
        width = max(len(label) for _, label in specs) + 2
        print(f"    {'spec':<{width}}{'seconds':>9}  status")
        for spec, label in specs:
            seconds, error = time_cli(spec, workdir, s.compile_runs)
            if error:
                ok = False
                status = f"FAILED ({error})"
            else:
                status = (
                    "ok" if seconds < COMPILE_TARGET_S else f"over the {COMPILE_TARGET_S} s target"
                )
            print(f"    {label:<{width}}{seconds:>9.3f}  {status}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few repetitions, small batch")
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (default: torch's; 1 under --quick)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="for (a)")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("skipped (a) on cuda: torch sees no CUDA device", file=sys.stderr)
        return 1
    # Under --quick the tests may share the cores with other work; one thread keeps OpenMP from
    # spinning against it (oversubscribed runs can be 50x slower).
    threads = args.threads or (1 if args.quick else None)
    if threads:
        torch.set_num_threads(threads)
    settings = QUICK if args.quick else FULL
    bench_layers(settings, args.device)
    return 0 if bench_cli(settings) else 1


if __name__ == "__main__":
    raise SystemExit(main())
