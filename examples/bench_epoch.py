"""Time per training epoch of a TD network beside its MLP baselines and its unfused compile.

    python examples/bench_epoch.py                  # examples/td.ns on keel:phoneme, batch 64
    python examples/bench_epoch.py --quick          # fewer epochs, for the tests
    python examples/bench_epoch.py --spec S --data D --epochs N

Every model trains with the project's own epoch (`nscompile.learn.train.core`: Adam, cosine
schedule, the protocol's batch size, shuffled rows from tensors made once) on the same
standardised training rows; the epochs of the four models alternate, and the figure is the
median epoch. `spec` is the generated network, `unfused` the same spec compiled without fusion
(the obvious code), `mlp` an MLP of the same hidden widths, `mlp-params` one of about the same
parameter count. Targets (reported, never enforced): spec at most 1.5x mlp-params, and no
slower than unfused.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
if (ROOT / "nscompile").is_dir() and str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from nscompile.compiler.pipeline import (  # noqa: E402
    compile_file,
    select_network,
    to_torch,
    to_torch_unfused,
)
from nscompile.learn.data import load_table, supervised  # noqa: E402
from nscompile.learn.loader import load_source  # noqa: E402
from nscompile.learn.train.core import (  # noqa: E402
    Protocol,
    _train_epoch,
    optimiser,
    run_models,
)
from nscompile.learn.train.split import split_rows  # noqa: E402

MLP_TARGET = 1.5


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default=str(ROOT / "examples" / "td.ns"))
    parser.add_argument("--data", default="keel:phoneme")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    epochs = 2 if args.quick else args.epochs
    torch.set_num_threads(min(2, torch.get_num_threads()))

    protocol = Protocol()
    data = supervised(load_table(args.data), None)
    rows = split_rows(data.target, data.task, 0, protocol.test, protocol.val).train
    features = data.features[rows]
    mean, std = features.mean(0), features.std(0)
    std[std == 0] = 1.0
    x = torch.from_numpy(((features - mean) / std).astype("float32"))
    kind = "int64" if data.task == "classification" else "float32"
    y = torch.from_numpy(data.target[rows].astype(kind))
    compiled = compile_file(args.spec)
    net = select_network(compiled, None)
    generated, unfused = load_source(to_torch(compiled)), load_source(to_torch_unfused(compiled))
    baselines = run_models(generated, net, data.task, x.shape[1], ("mlp", "mlp-params")).factories
    models = {
        "spec": baselines.pop("spec"),
        "unfused": lambda: unfused.build(net.name),
        **baselines,
    }
    runs = {}
    for name, factory in models.items():
        torch.manual_seed(0)
        model = factory()
        runs[name] = (model, optimiser(model, protocol, 0))
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(1 + epochs):  # the first epoch warms up
        for name, (model, opt) in runs.items():
            start = time.perf_counter()
            _train_epoch(model, (x, y), data.task, opt, protocol.batch_size)
            seconds[name].append(time.perf_counter() - start)
    print(
        f"time per epoch on {args.data} ({len(x)} rows, batch {protocol.batch_size}), "
        f"{args.spec}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"median of {epochs} epochs after one warm-up"
    )
    median = {name: statistics.median(s[1:]) for name, s in seconds.items()}
    for name, value in median.items():
        params = sum(p.numel() for p in runs[name][0].parameters())
        ratio = value / median["spec"]
        print(f"  {name:<11} {value * 1e3:8.1f} ms  ({ratio:.2f}x spec)  {params:,} parameters")
    vs_mlp = median["spec"] / median["mlp-params"]
    vs_unfused = median["spec"] / median["unfused"]
    verdict = _verdict(vs_mlp, MLP_TARGET)
    print(f"spec / mlp-params: {vs_mlp:.2f}x (target <= {MLP_TARGET}x: {verdict})")
    print(f"spec / unfused: {vs_unfused:.2f}x (target <= 1x: {_verdict(vs_unfused, 1.0)})")
    return 0


def _verdict(value: float, goal: float) -> str:
    return "met" if value <= goal else "missed"


if __name__ == "__main__":
    raise SystemExit(main())
