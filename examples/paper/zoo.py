"""The zoo benchmark: every published neuron type of `examples/zoo/` in the same network on
the same tasks, beside the searched TD neuron and the MLPs.

Tables (`--tabular`): KEEL phoneme and vehicle, sklearn diabetes and breast_cancer, seeds 42,
43, 44, under the training protocol of `examples/paper/tabular.py` (20% test and 10%
validation drawn with the seed, Adam 1e-3, wd 1e-5, batch 64, cosine decay, early stopping on
the validation loss, best state restored). Every zoo neuron is put in the network
`input D; dense 64 N tanh; dense 32 N tanh; dense OUT` (the widths and activation of the
tabular benchmark); `td` is the neuron the structure search writes from the seed's training
rows (`tabular.run_dataset`), `mlp` the same-widths MLP and `mlp-params` the MLP of about the
TD network's parameter count, trained on the same splits.

Images (`--images`): MNIST-5k (`images:mnist`), every zoo neuron in both convs of
`input 1 x 28 x 28; conv 8 N relu bn; maxpool 2; conv 16 N relu bn; maxpool 2; flatten;
dense 10`, beside the same network with plain convs (`plain`) and with the quadratic neuron
`<w1, x> + <w2, x**2> + b` of the image benchmark (`td`: the search has no image mode), the
same protocol with `--image-epochs` epochs and random crops.

One table: per task the test metric (accuracy in %, or MSE on the standardised target) as
mean ± std over the seeds, the parameters and the milliseconds per training epoch (training
seconds over epochs run, validation included). Then, plainly, which neuron wins where.

    python examples/paper/zoo.py                      # tables and MNIST-5k, 3 seeds
    python examples/paper/zoo.py --tabular --json zoo.json
    python examples/paper/zoo.py --quick              # breast_cancer and digits, 1 seed
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tabular  # noqa: E402  (the tabular benchmark's TD and MLP rows)

from nscompile.errors import InputError  # noqa: E402
from nscompile.lang import syntax  # noqa: E402
from nscompile.lang.parser import parse  # noqa: E402
from nscompile.lang.unparse import unparse  # noqa: E402
from nscompile.learn.data import load_table, supervised  # noqa: E402
from nscompile.learn.train import Protocol, train_run  # noqa: E402

ZOO = Path(__file__).resolve().parent.parent / "zoo"
TABLES = ("phoneme", "vehicle", "diabetes", "breast_cancer")
IMAGES = {"mnist": ("images:mnist", (1, 28, 28)), "digits": ("images:digits", (1, 8, 8))}
SEEDS = (42, 43, 44)
TD_IMAGE = "<w1, x> + <w2, x**2> + b"


def zoo_neurons() -> dict[str, tuple[str, str]]:
    """Spec file stem -> (the text of its neuron declaration, its name); one per zoo file."""
    neurons = {}
    for path in sorted(ZOO.glob("*.ns")):
        spec = parse(path.read_text(encoding="utf-8"), str(path))
        (neuron,) = spec.neurons.values()
        neurons[path.stem] = unparse(syntax.Spec((neuron,))), neuron.name
    return neurons


def table_spec(neuron: str, name: str, width: int, out: int, task: str) -> str:
    return f"""{neuron}
network zoo_net {{
    input {width}
    dense 64 {name} tanh
    dense 32 {name} tanh
    dense {out}
    task {task}
}}
"""


def image_spec(neuron: str | None, name: str, shape: tuple[int, int, int], classes: int) -> str:
    c, h, w = shape
    side = h // 4
    return f"""{neuron}
network zoo_cnn {{
    input {c} x {h} x {w}
    conv 8 {name} relu bn
    maxpool 2
    conv 16 {name} relu bn
    maxpool 2
    flatten
    dense {classes}
    task classification
}}
""".replace("\n    flatten", f"\n    flatten  # 16 x {side} x {side}")


def summary(result: Any, model: str, metric: str) -> dict[str, Any]:
    recorded = result.metrics["models"][model]
    values = [r["test"][metric] for r in recorded["per_seed"]]
    scale = 100.0 if metric == "accuracy" else 1.0
    epochs = sum(r["epochs_run"] for r in recorded["per_seed"])
    return {
        "mean": scale * float(np.mean(values)),
        "std": scale * float(np.std(values)),
        "values": [scale * v for v in values],
        "parameters": recorded["parameters"],
        "ms_per_epoch": 1000.0 * recorded["seconds"] / max(1, epochs),
    }


def run_table(key: str, args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    data = supervised(load_table(tabular.DATASETS[key]), None)
    metric = "accuracy" if data.task == "classification" else "mse"
    out = data.classes if data.task == "classification" else 1
    protocol = Protocol(epochs=args.epochs, patience=args.patience)
    rows: dict[str, dict[str, Any]] = {}
    for stem, (neuron, name) in zoo_neurons().items():
        text = table_spec(neuron, name, data.features.shape[1], out, data.task)
        result = train_run(
            text, f"{stem}.ns", data, work / f"{key}-{stem}", seeds=args.seeds,
            protocol=protocol, overwrite=True,
        )  # fmt: skip
        rows[stem] = summary(result, "spec", metric)
        print(f"  {key} {stem}: {rows[stem]['mean']:.3f}", file=sys.stderr, flush=True)
    # The searched TD network and the MLPs, as the tabular benchmark measures them.
    options = argparse.Namespace(
        epochs=args.epochs, patience=args.patience, hidden=(64, 32), max_order=3,
        search_epochs=None,
    )  # fmt: skip
    for row in tabular.run_dataset(key, args.seeds, options, work / f"{key}-td"):
        scale = 100.0 if metric == "accuracy" else 1.0
        rows[row["model"]] = {
            "mean": scale * row["mean"], "std": scale * row["std"], "values": [],
            "parameters": row["parameters"], "ms_per_epoch": row["ms_per_epoch"],
            "structure": row["structure"],
        }  # fmt: skip
    return {"metric": metric, "rows": rows}


def run_images(key: str, args: argparse.Namespace, work: Path) -> dict[str, dict[str, Any]]:
    source, shape = IMAGES[key]
    data = supervised(load_table(source), None, "classification")
    protocol = Protocol(epochs=args.image_epochs, patience=args.patience)
    rows: dict[str, dict[str, Any]] = {}
    neurons = dict(zoo_neurons())
    neurons["td"] = (f"neuron td {{\n    y = {TD_IMAGE}\n}}\n", "td")
    for stem, (neuron, name) in neurons.items():
        text = image_spec(neuron, name, shape, data.classes or 10)
        baselines = ("plain",) if stem == "td" else ()
        result = train_run(
            text, f"{stem}.ns", data, work / f"{key}-{stem}", seeds=args.seeds,
            protocol=protocol, baselines=baselines, overwrite=True,
        )  # fmt: skip
        rows[stem] = summary(result, "spec", "accuracy")
        if baselines:
            rows["plain"] = summary(result, "plain", "accuracy")
        print(f"  {key} {stem}: {rows[stem]['mean']:.2f}", file=sys.stderr, flush=True)
    return {"metric": "accuracy", "rows": rows}


def show(results: dict[str, dict[str, Any]]) -> str:
    """One table: a row per neuron, a column per task."""
    tasks = list(results)
    names = list(dict.fromkeys(n for r in results.values() for n in r["rows"]))
    head = "| neuron | " + " | ".join(
        f"{t} ({'acc %' if results[t]['metric'] == 'accuracy' else 'MSE'}; params; ms/epoch)"
        for t in tasks
    )
    lines = [head + " |", "|---" * (len(tasks) + 1) + "|"]
    for name in names:
        cells = []
        for task in tasks:
            row = results[task]["rows"].get(name)
            if row is None:
                cells.append("")
                continue
            digits = 2 if results[task]["metric"] == "accuracy" else 3
            ms = "-" if row["ms_per_epoch"] is None else f"{row['ms_per_epoch']:.0f}"
            cells.append(
                f"{row['mean']:.{digits}f} ± {row['std']:.{digits}f}; {row['parameters']:,}; {ms}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def verdict(results: dict[str, dict[str, Any]]) -> list[str]:
    """Per task: the best neuron, and which zoo neurons beat the reference rows."""
    lines = []
    for task, result in results.items():
        rows, higher = result["rows"], result["metric"] == "accuracy"
        ranked = sorted(rows, key=lambda n: rows[n]["mean"], reverse=higher)
        reference = "mlp" if "mlp" in rows else "plain"
        better = [
            n
            for n in ranked
            if n not in ("td", "mlp", "mlp-params", "plain")
            and (rows[n]["mean"] > rows[reference]["mean"]) == higher
            and rows[n]["mean"] != rows[reference]["mean"]
        ]
        lines.append(
            f"{task}: best {ranked[0]} ({rows[ranked[0]]['mean']:.3f}), then {ranked[1]}, "
            f"{ranked[2]}; {len(better)} zoo neurons beat {reference} "
            f"({rows[reference]['mean']:.3f}): {', '.join(better) or 'none'}; "
            f"td {rows['td']['mean']:.3f}"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tabular", action="store_true", help="the four tables only")
    parser.add_argument("--images", action="store_true", help="MNIST-5k only")
    parser.add_argument("--tables", default=",".join(TABLES), help="which tables")
    parser.add_argument("--epochs", type=int, default=100, help="tables' epochs (100)")
    parser.add_argument("--image-epochs", type=int, default=5, help="MNIST epochs (5)")
    parser.add_argument("--patience", type=int, default=20)
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--quick", action="store_true", help="breast_cancer, digits, 1 seed")
    args = parser.parse_args(argv)
    args.seeds = SEEDS
    tables = [t.strip() for t in args.tables.split(",") if t.strip()]
    images = ["mnist"]
    if args.quick:
        tables, images, args.seeds, args.epochs, args.image_epochs = (
            ["breast_cancer"], ["digits"], (42,), 3, 1,
        )  # fmt: skip
    if unknown := [t for t in tables if t not in TABLES]:
        parser.error(f"unknown table {unknown[0]!r}; tables are {', '.join(TABLES)}")
    if args.tabular:
        images = []
    if args.images:
        tables = []
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as work:
            for key in tables:
                results[key] = run_table(key, args, Path(work))
            for key in images:
                results[key] = run_images(key, args, Path(work))
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
