"""Compile every example spec to PyTorch and ONNX, run a batch through both, print the result.

    python examples/compile_and_run.py [SPEC ...]

Uses only the public pipeline: the same as `nscompile SPEC -o model.py --onnx model.onnx`
followed by an import and an onnxruntime session.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

from nscompile.compiler.pipeline import compile_file, to_onnx, to_torch
from nscompile.errors import SpecError
from nscompile.learn.loader import load_file
from nscompile.learn.runtime import Session

EXAMPLES = Path(__file__).resolve().parent


def run(spec: Path, workdir: Path) -> None:
    compiled = compile_file(str(spec))
    path = workdir / f"{spec.stem}_model.py"
    path.write_text(to_torch(compiled), encoding="utf-8")
    module = load_file(path)
    for network in compiled.optimized.networks:
        torch.manual_seed(0)
        model = module.build(network.name)
        batch = torch.randn(256, network.input_width)
        with torch.no_grad():
            output = model(batch)
        params = sum(p.numel() for p in model.parameters())
        weights = {k: v.numpy() for k, v in model.state_dict().items()}
        onnx_path = workdir / f"{spec.stem}_{network.name}.onnx"
        onnx_path.write_bytes(to_onnx(compiled, network, weights).SerializeToString())
        session = Session(onnx_path)
        difference = float(abs(session.run(batch.numpy()) - output.numpy()).max())
        print(f"{spec.name}: network {network.name}: {network.summary}")
        print(f"  input {tuple(batch.shape)} -> output {tuple(output.shape)}, {params} parameters")
        print(
            f"  onnxruntime on {session.device} ({session.providers[0]}): "
            f"max |onnxruntime - torch| = {difference:.2g}"
        )
    for neuron in compiled.optimized.neurons:
        print(f"  neuron {neuron.name}: y = {neuron.formula}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("specs", nargs="*", type=Path, default=sorted(EXAMPLES.glob("*.ns")))
    parser.add_argument("--quick", action="store_true", help="accepted for the test runner")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        for spec in args.specs:
            try:
                run(spec, Path(workdir))
            except SpecError as error:
                print(error.render(spec.read_text(errors="replace")), file=sys.stderr)
                return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
