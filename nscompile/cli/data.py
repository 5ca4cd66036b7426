"""Commands over data: `nscompile run` (onnxruntime predictions) and `nscompile search`.

Heavy imports (onnxruntime, torch, the search) happen inside each command, so `nscompile SPEC`
and `nscompile check` stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import sys
from collections.abc import Callable
from typing import Any

from nscompile.cli.output import emit_text
from nscompile.compiler.pipeline import front_end
from nscompile.errors import InputError
from nscompile.files import check_writable, open_atomic, write_atomic
from nscompile.lang.syntax import MAX_ORDER, MAX_RANK, TASK_CHOICES
from nscompile.lang.unparse import unparse


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high], with a message that says the bounds."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is outside {low}..{high}")
        return value

    return parse


def add_synthetic_options(parser: argparse.ArgumentParser) -> None:
    """--noise and --classes, which shape `synthetic:` data (`nscompile.learn.synthetic.generate`
    checks their bounds, so the parser does not import numpy)."""
    parser.add_argument(
        "--noise", type=float, default=0.01,
        help="synthetic: noise std relative to the signal's, 0..10 (0.01)",
    )  # fmt: skip
    parser.add_argument(
        "--classes", type=int, default=0, metavar="C",
        help="synthetic: C quantile classes (2..20) instead of a regression target (0)",
    )  # fmt: skip


def add_parsers(sub: Any) -> None:  # noqa: ANN401 (argparse's subparsers action)
    """Register `run` and `search` on the command line's subparsers."""
    run = sub.add_parser("run", help="predict with an ONNX model on onnxruntime")
    run.add_argument("model", metavar="MODEL.onnx")
    run.add_argument("data", metavar="DATA", help="a CSV/Parquet file or sklearn:NAME")
    run.add_argument("-o", "--output", help="predictions CSV (default: stdout)")
    run.add_argument("--provider", choices=("auto", "cpu", "cuda"), default="auto")
    run.add_argument("--target", help="the data's target column, to leave out")
    run.add_argument("--verbose", action="store_true", help="show onnxruntime's own messages")
    run.set_defaults(run=cmd_run)
    search = sub.add_parser("search", help="find a neuron structure for data (NeuronSeek-TD)")
    search.add_argument(
        "data",
        metavar="DATA",
        help="CSV/Parquet, sklearn:, keel:, synthetic:, images:, .npz, a folder",
    )
    search.add_argument("-o", "--output", help="write the spec here (default: stdout)")
    search.add_argument("--target", help="target column (default: the last)")
    search.add_argument("--task", choices=TASK_CHOICES, default="auto")
    search.add_argument("--max-order", type=int, default=5, help=f"1..{MAX_ORDER} (5)")
    search.add_argument("--rank", type=int, default=8, help=f"1..{MAX_RANK} (8)")
    search.add_argument("--epochs", type=bounded_int(1, 100_000), help="training epochs per seed")
    search.add_argument("--seed", type=int, default=0, help="first seed (0)")
    search.add_argument("--seeds", type=bounded_int(1, 100), default=1, help="seeds to run (1)")
    search.add_argument("--dims", type=bounded_int(1, 10_000), default=10, help="synthetic: inputs")
    search.add_argument("--rows", type=bounded_int(10, 10_000_000), default=2500, help="synthetic")
    add_synthetic_options(search)
    search.add_argument("--summary", metavar="OUT.json", help="write the structure and timings")
    search.add_argument("--plot", metavar="OUT.png", help="draw loss and gate probabilities")
    search.set_defaults(run=cmd_search)


def cmd_run(args: argparse.Namespace) -> int:
    """Predictions as CSV, streamed: rows are read, run and written a chunk at a time.

    A run's model.onnx takes the raw rows (its columns found by name; others, the target
    among them, are ignored) and answers with the class and its probabilities, or the value
    in the target's units. A network's bare model takes exactly its input columns.
    """
    from nscompile.learn.data import iter_tables
    from nscompile.learn.runtime import Session

    if args.output is not None:
        check_writable(args.output)
    session = Session(args.model, provider=args.provider, verbose=args.verbose)
    rows = 0
    with contextlib.ExitStack() as stack:
        handle = (
            sys.stdout if args.output is None else stack.enter_context(open_atomic(args.output))
        )
        writer = csv.writer(handle, lineterminator="\n")
        text = session.preprocess.encoding.text if session.preprocess is not None else ()
        for index, (table, first_row) in enumerate(iter_tables(args.data, text=text)):
            header, lines = _predictions(session, table, first_row, args.target)
            if index == 0:
                writer.writerow(header)
            writer.writerows(lines)
            rows += table.rows
    print(
        f"nscompile: {rows} rows of {args.data} through {args.model} on "
        f"{session.device} ({', '.join(session.providers)})",
        file=sys.stderr,
    )
    return 0


def _predictions(session, table, first_row: int, target: str | None):  # noqa: ANN001, ANN202
    """(header, CSV rows) for one chunk of the data."""
    import numpy as np

    from nscompile.learn.probabilities import softmax

    if session.preprocess is not None:
        out = session.answers(table, first_row)
        if "label" in out:
            labels = session.preprocess.labels
            header = ["class"] + [f"prob_{label}" for label in labels]
            probs = out["probabilities"]
            return header, [
                [c, *(f"{v:.6g}" for v in p)] for c, p in zip(out["label"], probs, strict=True)
            ]
        return ["prediction"], [[f"{v:.7g}"] for v in out["prediction"][:, 0]]
    predictions = session.run(_features_for(table, session.input_width, target))
    if session.metadata.get("nscompile.task") == "classification":
        probs = softmax(predictions)
        header = ["class"] + [f"prob_{i}" for i in range(probs.shape[1])]
        return header, [[str(int(np.argmax(p)))] + [f"{v:.6g}" for v in p] for p in probs]
    width = predictions.shape[1]
    header = ["prediction"] if width == 1 else [f"prediction_{i}" for i in range(width)]
    return header, [[f"{v:.7g}" for v in p] for p in predictions]


def cmd_search(args: argparse.Namespace) -> int:
    import json

    from nscompile.learn.data import load_table, supervised
    from nscompile.learn.fit import search_spec

    for flag, value, high in (
        ("--max-order", args.max_order, MAX_ORDER),
        ("--rank", args.rank, MAX_RANK),
    ):
        if not 1 <= value <= high:
            raise InputError(f"{flag} {value} is outside 1..{high}")
    for output in (args.output, args.summary, args.plot):
        if output is not None:
            check_writable(output)  # before the search, not after it
    if args.plot:
        from nscompile.learn.plots import require_matplotlib

        require_matplotlib()  # fail before the search, not after it
    table = load_table(
        args.data, dims=args.dims, rows=args.rows, seed=args.seed, noise=args.noise,
        classes=args.classes,
    )  # fmt: skip
    data = supervised(table, args.target, args.task)
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    options = {"max_order": args.max_order, "rank": args.rank}
    if args.epochs is not None:
        options["epochs"] = args.epochs
    result = search_spec(data.features, data.target, data.task, seeds, data.name, options)
    text = unparse(result.spec)
    front_end(text, args.output or "<search>")  # what we write must compile
    structure = result.structure
    print(
        f"nscompile: {table.name}: pure {structure['pure']}, interact {structure['interact']}, "
        f"rank {structure['rank']}; agreement {result.agreement:.2f} over {len(seeds)} seed(s); "
        f"{result.seconds:.1f}s",
        file=sys.stderr,
    )
    if result.undecided:
        print(f"nscompile: warning: {result.undecided}", file=sys.stderr)
    if args.summary:
        summary = result.summary(table.name)
        write_atomic(args.summary, json.dumps(summary, indent=2, default=str) + "\n")
    if args.plot:
        from nscompile.learn.plots import plot_search

        history = result.history
        plot_search(args.plot, history["loss"], history["gates"], f"search on {table.name}")
    return emit_text(text, args.output, check=False)


def _features_for(table, width: int, target: str | None):  # noqa: ANN001, ANN202
    """The model's input columns: all of them, or all but the target (the last by default)."""
    columns = len(table.columns)
    if target is not None:
        table.column(target)  # an error naming the columns when there is no such column
        return table.without(target).values
    if columns == width:
        return table.values
    if columns == width + 1:
        return table.without(table.columns[-1]).values
    raise InputError(
        f"{table.name} has {columns} columns; the model takes {width} inputs",
        hint="give exactly the input columns, or the inputs plus a target (--target NAME)",
    )
