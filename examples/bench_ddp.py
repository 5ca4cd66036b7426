"""Training throughput with 1 and with N processes (`nscompile train --nproc N`, torchrun).

    python examples/bench_ddp.py                   # ResNet-8 on images:mnist, td_wide on 20k rows
    python examples/bench_ddp.py --processes 4 --epochs 3
    python examples/bench_ddp.py --quick           # tiny, for the tests

Each workload is trained by the command a user runs, once in one process (torch's default
threads) and once in N (torchrun; each process gets cores / N threads), with the same seed,
batch (64 rows in all, B / N per process) and epochs; the figure is training rows per second of
the spec network (training rows x epochs / the run's seconds, which include each epoch's
validation). Both runs train the same weights (tabular: equal to float rounding; with
BatchNorm each process normalises its own B / N rows). Nothing is asserted: on a machine
with fewer cores than processes the processes share them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

RESNET = """
neuron td { y = <w1, x> + <w2, x**2> + b }
network resnet8 {
    input 1 x 28 x 28
    conv 16 td relu bn
    block 16 td
    block 32 td stride=2
    block 64 td stride=2
    globalpool
    dense 10
    task classification
}
"""
QUICK = """
neuron td { y = <w1, x> + <w2, x**2> + b }
network small {
    input 1 x 8 x 8
    conv 4 td relu bn
    globalpool
    dense 10
    task classification
}
"""


def _workloads(quick: bool) -> list[tuple[str, str, str, list[str]]]:
    """(name, spec text or path, data, extra arguments)."""
    if quick:
        return [("conv, digits", QUICK, "images:digits", [])]
    wide = (ROOT / "examples" / "td_wide.ns").read_text()
    return [
        ("task-driven ResNet-8, images:mnist", RESNET, "images:mnist", []),
        ("td_wide (64-128-128-1), 20,000 rows", wide, "synthetic:pure_v0",
         ["--dims", "64", "--rows", "20000"]),
    ]  # fmt: skip


def _train(spec: Path, data: str, extra: list[str], out: Path, processes: int, epochs: int):  # noqa: ANN202
    command = [sys.executable, "-m", "nscompile", "train", str(spec), data, "-o", str(out)]
    command += ["--epochs", str(epochs), "--patience", str(epochs), "--overwrite", *extra]
    if processes > 1:
        command += ["--nproc", str(processes)]
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["models"]["spec"]["per_seed"][0]
    rows = metrics["split"]["train"]
    return rows * record["epochs_run"] / record["seconds"], record["test"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", type=int, default=2, help="N (2)")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per run (2)")
    parser.add_argument("--quick", action="store_true", help="one tiny workload, one epoch")
    args = parser.parse_args()
    epochs = 1 if args.quick else args.epochs
    print(
        f"training rows per second, 1 vs {args.processes} processes, {os.cpu_count()} cores, "
        f"{epochs} epoch(s), batch 64"
    )
    print(f"| workload | 1 process | {args.processes} processes | ratio | test metric 1 / N |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, text, data, extra in _workloads(args.quick):
            spec = Path(folder) / "spec.ns"
            spec.write_text(text)
            one, test_one = _train(spec, data, extra, Path(folder) / "one", 1, epochs)
            many, test_many = _train(
                spec, data, extra, Path(folder) / "many", args.processes, epochs
            )
            key = "accuracy" if "accuracy" in test_one else "mse"
            print(
                f"| {name} | {one:,.0f} | {many:,.0f} | {many / one:.2f}x | "
                f"{key} {test_one[key]:.4f} / {test_many[key]:.4f} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
