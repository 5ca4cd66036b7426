"""Deploy a spec as ONNX the way a user would, and check onnxruntime against PyTorch.

Run from anywhere:

    python examples/deploy_onnx.py                          # examples/td.ns, best provider
    python examples/deploy_onnx.py examples/deep.ns --provider cpu
    python examples/deploy_onnx.py --quick                  # a smaller batch, for the tests

Steps: compile the spec, build its network from the generated PyTorch module with a fixed seed,
save the state dict (`torch.save`), export the ONNX model with the command line

    python -m nscompile SPEC --onnx model.onnx --weights state.pt

load it with `nscompile.learn.runtime.Session`, and run the same random batch through onnxruntime
and PyTorch. Prints the providers onnxruntime really uses, the model's metadata, the output shape
and the largest absolute and relative difference; exits 1 if the relative difference
(max |ort - torch| / max |torch|) exceeds 1e-5.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch  # before onnxruntime, so that onnxruntime-gpu can reuse torch's CUDA libraries

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "nscompile").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nscompile.compiler.pipeline import compile_file, select_network, to_torch  # noqa: E402
from nscompile.errors import InputError, SpecError  # noqa: E402
from nscompile.learn.loader import load_source  # noqa: E402
from nscompile.learn.runtime import PROVIDERS, Session  # noqa: E402

DEFAULT_SPEC = ROOT / "examples" / "td.ns"
TOLERANCE = 1e-5
SEED = 0


def checkout_env() -> dict[str, str]:
    """The environment for the CLI: the checkout this script lives in comes first on the path."""
    env = dict(os.environ)
    if (ROOT / "nscompile").is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def export_with_cli(spec: Path, network: str, weights: Path, out: Path) -> None:
    """`python -m nscompile SPEC --onnx OUT --weights STATE`; SystemExit(1) when it fails."""
    command = [sys.executable, "-m", "nscompile", str(spec), "--onnx", str(out)]
    command += ["--weights", str(weights), "--network", network]
    shown = ["python", "-m", "nscompile", spec.name, "--onnx", out.name, "--weights", weights.name]
    print(f"$ {' '.join(shown)} --network {network}")
    result = subprocess.run(command, env=checkout_env(), capture_output=True, text=True)
    if result.returncode != 0 or not out.is_file():
        sys.stderr.write(result.stderr or result.stdout)
        raise SystemExit(f"the CLI exited {result.returncode} without writing {out.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", default=str(DEFAULT_SPEC), help="the .ns file (td.ns)")
    parser.add_argument("--provider", choices=PROVIDERS, default="auto", help="onnxruntime device")
    parser.add_argument("--network", help="which network, when the spec has several")
    parser.add_argument("--batch", type=int, help="rows in the random batch (256; 32 with --quick)")
    parser.add_argument("--quick", action="store_true", help="a small batch")
    args = parser.parse_args(argv)
    spec = Path(args.spec).resolve()
    batch = args.batch or (32 if args.quick else 256)

    try:
        compiled = compile_file(str(spec))
        network = select_network(compiled, args.network)
    except (SpecError, InputError) as error:
        print(f"deploy_onnx: {spec}: {error}", file=sys.stderr)
        return 1
    print(f"spec {spec.name}: network '{network.name}', input width {network.input_width}")

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        module = load_source(to_torch(compiled))
        torch.manual_seed(SEED)
        model = module.build(network.name).eval()
        state_path, onnx_path = workdir / "state.pt", workdir / f"{network.name}.onnx"
        torch.save(model.state_dict(), state_path)
        export_with_cli(spec, network.name, state_path, onnx_path)
        size = onnx_path.stat().st_size
        try:
            session = Session(onnx_path, provider=args.provider)
        except InputError as error:
            print(f"deploy_onnx: {error}", file=sys.stderr)
            return 1

        x = np.random.default_rng(SEED).standard_normal((batch, session.input_width))
        x = x.astype(np.float32)
        got = session.run(x)
        with torch.no_grad():
            want = model(torch.from_numpy(x)).numpy()

    print(f"model: {onnx_path.name}, {size:,} bytes")
    print(f"providers used: {', '.join(session.providers)} (device: {session.device})")
    print("metadata:")
    for key, value in sorted(session.metadata.items()):
        print(f"    {key} = {value}")
    print(f"output shape: onnxruntime {got.shape}, torch {want.shape} (batch of {batch})")
    if got.shape != want.shape:
        print("FAILED: the shapes differ", file=sys.stderr)
        return 1
    abs_diff = float(np.abs(got.astype(np.float64) - want).max())
    relative = abs_diff / max(float(np.abs(want).max()), np.finfo(np.float32).tiny)
    print(f"max |onnxruntime - torch| = {abs_diff:.3g}; relative to max |torch| = {relative:.3g}")
    if not relative <= TOLERANCE:  # NaN fails too
        print(f"FAILED: relative difference above {TOLERANCE:g}", file=sys.stderr)
        return 1
    print(f"ok: onnxruntime matches torch within {TOLERANCE:g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
