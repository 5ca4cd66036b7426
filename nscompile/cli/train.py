"""Commands that train: `nscompile train`, `nscompile eval` and `nscompile fit`.

Heavy imports (torch, onnxruntime, the search) happen inside each command.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nscompile.cli.data import add_synthetic_options, bounded_int
from nscompile.errors import InputError
from nscompile.files import check_writable
from nscompile.lang.syntax import MAX_ORDER, TASK_CHOICES
from nscompile.learn.choices import AUGMENTS, BASELINES

FIT_MAX_ORDER = 3


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{value} is not positive")
    return value


def _training_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run directory")
    parser.add_argument("--target", help="target column (default: the last)")
    parser.add_argument("--task", choices=TASK_CHOICES, default="auto")
    parser.add_argument("--epochs", type=bounded_int(1, 100_000), default=100, help="(100)")
    parser.add_argument("--lr", type=_positive_float, default=1e-3, help="Adam's rate (1e-3)")
    parser.add_argument("--patience", type=bounded_int(1, 100_000), default=20, help="(20)")
    parser.add_argument("--seed", type=int, default=0, help="first seed (0)")
    parser.add_argument("--seeds", type=bounded_int(1, 100), default=1, help="seeds to run (1)")
    parser.add_argument(
        "--baseline",
        action="append",
        default=[],
        choices=BASELINES,
        help="also train an MLP with the same hidden widths (mlp) or parameter count "
        "(mlp-params); for an image network the same network without neurons (plain) or "
        "with its widths scaled to about the same parameter count (plain-params); repeatable",
    )
    parser.add_argument(
        "--augment",
        choices=AUGMENTS,
        default="auto",
        help="image networks: random crops of the training images (auto = crop), and mirrors",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cpu", help="where to train (cpu)"
    )
    parser.add_argument(
        "--nproc",
        type=bounded_int(1, 1024),
        help="train in N processes on this machine (torchrun --standalone --nproc-per-node N); "
        "the protocol's batch of 64 rows is shared among them",
    )
    parser.add_argument(
        "--sync-bn", action="store_true", help="several processes on CUDA: SyncBatchNorm"
    )
    parser.add_argument(
        "--timeout",
        type=bounded_int(10, 7 * 24 * 3600),
        default=1800,
        help="several processes: seconds one waits for the others before the run fails (1800)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run")
    parser.add_argument("--dims", type=bounded_int(1, 10_000), default=10, help="synthetic: inputs")
    parser.add_argument("--rows", type=bounded_int(10, 10_000_000), default=2500, help="synthetic")
    add_synthetic_options(parser)


def add_parsers(sub: Any) -> None:  # noqa: ANN401 (argparse's private subparsers type)
    """Register train, eval and fit on the subcommand parser."""
    train = sub.add_parser("train", help="train a spec's network on data; write a run directory")
    train.add_argument("spec", metavar="SPEC")
    train.add_argument(
        "data",
        metavar="DATA",
        help="CSV/Parquet, sklearn:, keel:, synthetic:, images:, .npz, a folder",
    )
    train.add_argument("--network", help="which network, when the spec has several")
    _training_options(train)
    train.set_defaults(run=cmd_train)
    evaluate = sub.add_parser("eval", help="evaluate a run's model.onnx on data (onnxruntime)")
    evaluate.add_argument("run_dir", metavar="RUN_DIR")
    evaluate.add_argument("data", metavar="DATA")
    evaluate.add_argument("--target", help="target column (default: the run's)")
    evaluate.add_argument(
        "--split",
        choices=("all", "train", "val", "test"),
        default="all",
        help="score only the rows of the run's own split (needs the run's data; default all)",
    )
    evaluate.set_defaults(run=cmd_eval)
    fit = sub.add_parser("fit", help="search a structure, then train, export and check it")
    fit.add_argument("data", metavar="DATA")
    fit.add_argument("--search-epochs", type=bounded_int(1, 100_000), help="search epochs per seed")
    fit.add_argument(
        "--max-order",
        type=bounded_int(1, MAX_ORDER),
        default=FIT_MAX_ORDER,
        help=f"highest order the search considers ({FIT_MAX_ORDER})",
    )
    _training_options(fit)
    fit.set_defaults(run=cmd_fit)


def _load(args: argparse.Namespace):  # noqa: ANN202
    """(table, supervised data) of DATA."""
    from nscompile.learn.data import load_table, supervised

    table = load_table(
        args.data, dims=args.dims, rows=args.rows, seed=args.seed, noise=args.noise,
        classes=args.classes,
    )  # fmt: skip
    return table, supervised(table, args.target, args.task)


def _ranks(args: argparse.Namespace):  # noqa: ANN202
    """This process's place in a torchrun run (one process when not under torchrun)."""
    from nscompile.learn.train.distributed import start

    return start(args.device, args.sync_bn, args.timeout)


def _stop(finished: bool) -> None:
    from nscompile.learn.train.distributed import stop

    stop(finished)


def lost_ranks():  # noqa: ANN201
    from nscompile.learn.train.distributed import lost_ranks

    return lost_ranks()


def _launched(args: argparse.Namespace) -> int | None:
    """With --nproc N (and not already under torchrun): the exit code of the same command run
    in N processes; else None."""
    from nscompile.learn.train.distributed import under_torchrun

    if args.nproc is None or under_torchrun():
        return None
    from nscompile.cli.launch import launch

    return launch(args.argv, args.nproc, args.device, args.sync_bn)


def _train(args: argparse.Namespace, spec_text: str, spec_file: str, data, extra=None):  # noqa: ANN001, ANN202
    from nscompile.learn.plots import plot_curves, require_matplotlib
    from nscompile.learn.progress import Progress
    from nscompile.learn.train import Protocol, train_run

    require_matplotlib()
    ranks = args.ranks
    protocol = Protocol(
        epochs=args.epochs, lr=args.lr, patience=args.patience, augment=args.augment
    )
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    models = 1 + len(set(args.baseline))
    bar = Progress(models * len(seeds) * args.epochs, f"train {data.name}", enabled=ranks.main)

    def progress(key: str, seed: int, epoch: int, epochs: int) -> None:
        bar.advance()

    try:
        return train_run(
            spec_text,
            spec_file,
            data,
            args.output,
            network=getattr(args, "network", None),
            seeds=seeds,
            protocol=protocol,
            baselines=args.baseline,
            overwrite=args.overwrite,
            resume=args.resume,
            extra_files=extra,
            progress=progress,
            plot=plot_curves,
            ranks=ranks,
        )
    except KeyboardInterrupt:
        if ranks.main:
            print(
                "nscompile: training interrupted; continue with the same command and --resume",
                file=sys.stderr,
            )
        raise
    finally:
        bar.close()


def _fmt(record: dict[str, Any], std: dict[str, Any] | None = None) -> str:
    keys = [k for k in record if k != "loss"] + ["loss"]
    if std is None:
        return ", ".join(f"{k} {record[k]:.4f}" for k in keys)
    return ", ".join(f"{k} {record[k]:.4f}±{std[k]:.4f}" for k in keys)


def _report(metrics: dict[str, Any]) -> list[str]:
    lines = [
        f"data {metrics['data']['name']} ({metrics['data']['task']}, target "
        f"'{metrics['data']['target']}'); split {metrics['split']}; seeds {metrics['seeds']}"
    ]
    for key, model in metrics["models"].items():
        epochs = [r["epochs_run"] for r in model["per_seed"]]
        lines.append(
            f"  {key:10s} {model['parameters']:>8d} params  hidden {model['hidden']}  "
            f"epochs {epochs}  {model['seconds']:.1f}s"
        )
        lines.append(f"  {'':10s} test: {_fmt(model['mean']['test'], model['std']['test'])}")
    return lines


def cmd_train(args: argparse.Namespace) -> int:
    from nscompile.lang.source import read_source

    launched = _launched(args)
    if launched is not None:
        return launched
    spec_text = read_source(args.spec)
    check_writable(args.output, directory=True)
    args.ranks = _ranks(args)
    _, data = _load(args)
    with lost_ranks():
        result = _train(args, spec_text, args.spec, data)
        _stop(finished=True)
    if args.ranks.main:
        print("\n".join(_report(result.metrics)))
        print(f"nscompile: wrote {result.path}", file=sys.stderr)
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from nscompile.learn.data import load_table
    from nscompile.learn.deploy import check_agreement, evaluate, load_run

    model = load_run(args.run_dir)
    table = load_table(args.data, text=model.preprocess.encoding.text)
    result = evaluate(model, table, args.target, args.split)
    rows = "rows" if args.split == "all" else f"rows of the run's {args.split} split"
    print(f"{table.name}: {result.rows} {rows}, target '{result.target}'")
    print(f"onnxruntime: {_fmt(result.onnx)}")
    print(f"torch:       {_fmt(result.torch)}")
    print(f"onnxruntime vs torch: relative difference of the outputs {result.difference:.3g}")
    check_agreement(result.difference)
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from nscompile.learn.deploy import check_agreement
    from nscompile.learn.fit import fit_run

    run_dir = Path(args.output)
    if run_dir.is_dir() and any(run_dir.iterdir()) and not (args.overwrite or args.resume):
        raise InputError(
            f"{run_dir} exists and is not empty", hint="choose another directory or --overwrite"
        )
    check_writable(run_dir, directory=True)
    launched = _launched(args)
    if launched is not None:
        return launched
    args.ranks = _ranks(args)
    seeds = tuple(range(args.seed, args.seed + args.seeds))
    options: dict[str, Any] = {"max_order": args.max_order}
    if args.search_epochs is not None:
        options["epochs"] = args.search_epochs
    table, data = _load(args)
    with lost_ranks():
        fitted = fit_run(
            data,
            table,
            seeds,
            options,
            lambda text, file, extra: _train(args, text, file, data, extra),
            args.ranks,
        )
        _stop(finished=True)
    if not args.ranks.main:
        return 0
    found, result, diff = fitted.found, fitted.run, fitted.difference
    structure = found.structure
    lines = [
        f"structure: pure {structure['pure']}, interact {structure['interact']}, "
        f"rank {structure['rank']}; agreement {found.agreement:.2f} over {len(seeds)} seed(s); "
        f"search {found.seconds:.1f}s",
        *_report(result.metrics),
        f"onnxruntime vs torch on all {len(data.target)} rows: relative difference {diff:.3g}",
        f"total training {result.metrics['seconds']:.1f}s; run in {result.path}",
        f"predict from raw rows: nscompile run {result.path / 'model.onnx'} DATA -o out.csv",
    ]
    print("\n".join(lines))
    check_agreement(diff)
    return 0
