"""Start-up cost of the command line, measured as whole processes (interpreter start included).

    python examples/bench_startup.py            # 10 runs of each command (about 3 minutes)
    python examples/bench_startup.py --quick    # 1 run each, TorchScript exporter, for tests

(a) `nscompile check examples/td.ns`. Target: median at most 0.35 s.
(b) ONNX emission: `nscompile examples/td.ns --onnx M.onnx`, with the module's initial weights
    (which needs torch for its random initialisation) and with `--weights W.safetensors` (which
    needs no torch), against a process that loads the generated module, calls its `build()` and
    `torch.onnx.export(..., dynamo=True)` with a dynamic batch dimension. The generated module is
    written before the timing starts, so the torch process does no compiling of ours.
    Target: nscompile at least 4x faster.

Contenders alternate within each repetition so that drift on a shared machine hits them alike;
one untimed run of each warms the file cache first. Figures are medians of wall-clock seconds.
Targets are reported, never enforced: this is a command, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TD = ROOT / "examples" / "td.ns"

# The torch contender: argv = module path, output path, exporter ("dynamo" or "torchscript").
TORCH_EXPORT = """
import sys, warnings
import torch
from nscompile.learn.loader import load_file
module = load_file(sys.argv[1])
torch.manual_seed(0)
model = module.build().eval()
x = torch.randn(2, model.in_features)
warnings.simplefilter("ignore")
if sys.argv[3] == "dynamo":
    from nscompile.bench.timing import torch_export
    data = torch_export(model, x)
    with open(sys.argv[2], "wb") as file:
        file.write(data)
else:
    torch.onnx.export(model, (x,), sys.argv[2], dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
"""

# Writes the generated module's initial state as .safetensors (the layout nscompile.learn.weights
# reads): 8-byte little-endian header length, JSON header, raw float32 bytes.
WRITE_WEIGHTS = """
import json, sys
import torch
from nscompile.learn.loader import load_file
module = load_file(sys.argv[1])
torch.manual_seed(0)
header, chunks, offset = {}, [], 0
for key, value in sorted(module.build().state_dict().items()):
    data = value.detach().to(torch.float32).contiguous().numpy().tobytes()
    header[key] = {"dtype": "F32", "shape": list(value.shape),
                   "data_offsets": [offset, offset + len(data)]}
    chunks.append(data)
    offset += len(data)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(sys.argv[2], "wb") as file:
    file.write(len(text).to_bytes(8, "little") + text + b"".join(chunks))
"""


def run(command: list[str], env: dict[str, str]) -> float:
    """Wall-clock seconds of one process; raises if it fails."""
    start = time.perf_counter()
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {result.returncode}:\n{result.stderr}")
    return seconds


def commands(folder: Path, exporter: str) -> dict[str, list[str]]:
    python, model = sys.executable, str(folder / "model.py")
    nscompile = [python, "-m", "nscompile"]
    return {
        "check": [*nscompile, "check", str(TD)],
        "onnx, initial weights": [*nscompile, str(TD), "--onnx", str(folder / "a.onnx")],
        "onnx, safetensors": [
            *nscompile, str(TD), "--onnx", str(folder / "b.onnx"),
            "--weights", str(folder / "w.safetensors"),
        ],
        f"torch.onnx.export ({exporter})": [
            python, "-c", TORCH_EXPORT, model, str(folder / "t.onnx"), exporter,
        ],
    }  # fmt: skip


def measure(runs: int, exporter: str, warm_up: bool) -> dict[str, list[float]]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        model = folder / "model.py"
        run([sys.executable, "-m", "nscompile", str(TD), "-o", str(model)], env)
        run([sys.executable, "-c", WRITE_WEIGHTS, str(model), str(folder / "w.safetensors")], env)
        todo = commands(folder, exporter)
        for command in todo.values() if warm_up else ():  # untimed: file cache, .pyc files
            run(command, env)
        seconds: dict[str, list[float]] = {name: [] for name in todo}
        for _ in range(runs):
            for name, command in todo.items():
                seconds[name].append(run(command, env))
    return seconds


def report(seconds: dict[str, list[float]]) -> None:
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    for name, median in medians.items():
        print(f"{name:34s} median {median:6.3f} s over {len(seconds[name])} run(s)")
    check = medians["check"]
    print(f"check: {check:.3f} s (target <= 0.35 s: {'met' if check <= 0.35 else 'missed'})")
    torch_name = next(name for name in medians if name.startswith("torch"))
    for name in ("onnx, initial weights", "onnx, safetensors"):
        ratio = medians[torch_name] / medians[name]
        verdict = "met" if ratio >= 4 else "missed"
        print(f"{torch_name} / {name}: {ratio:.1f}x (target >= 4x: {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="1 run each, no warm-up, TorchScript exporter"
    )
    parser.add_argument("--runs", type=int, help="timed runs of each command (10; 1 with --quick)")
    parser.add_argument("--json", metavar="FILE", help="also write every figure here")
    args = parser.parse_args()
    runs = args.runs or (1 if args.quick else 10)
    # The TorchScript exporter takes a few seconds, the dynamo one ten or more: --quick only
    # checks that every contender runs; its figures mean little.
    seconds = measure(runs, "torchscript" if args.quick else "dynamo", warm_up=not args.quick)
    report(seconds)
    if args.json:
        Path(args.json).write_text(json.dumps(seconds, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
