"""The command line: `nscompile SPEC -o model.py`; subcommands check, fmt, ir, import-structure.

Generated code goes to a file or stdout; diagnostics go to stderr. Exit codes: 0 ok, 1 a problem
with the user's input (spec, data, stale file under --check), 2 usage, 3 an internal error (a bug
in nscompile: every problem with the input has its own message).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from nscompile import __version__
from nscompile.cli.bench import add_parser as add_bench_parser
from nscompile.cli.data import add_parsers as add_data_parsers
from nscompile.cli.output import INPUT_ERROR, OK, UserError, emit_bytes, emit_text
from nscompile.cli.train import add_parsers as add_train_parsers
from nscompile.compiler.pipeline import (
    check_stage,
    compile_text,
    front_end,
    ir_after,
    select_network,
    to_onnx,
    to_torch,
)
from nscompile.errors import InputError, InternalError, SpecError
from nscompile.files import check_writable
from nscompile.lang.source import read_source
from nscompile.lang.structure import load_structure, network_for, neuron_from_structure
from nscompile.lang.syntax import TASKS, Spec
from nscompile.lang.tnlearn_formula import neuron_from_tnlearn
from nscompile.lang.unparse import unparse

USAGE, INTERNAL_ERROR = 2, 3


def cmd_compile(args: argparse.Namespace) -> int:
    source = read_source(args.spec)
    if not args.check:
        for output in (args.output, args.onnx):
            if output is not None:
                check_writable(output)  # the first file is not written when the second cannot be
    try:
        compiled = compile_text(source, args.spec, args.max_param_bytes)
        # Every output is made in memory first: a failure leaves no file behind.
        outputs = []
        torch_source = to_torch(compiled)
        if args.output is not None or args.onnx is None:
            outputs.append((emit_text, torch_source, args.output))
        if args.onnx is not None:
            model = _onnx_model(compiled, torch_source, args)
            outputs.append((emit_bytes, model, args.onnx))
    except SpecError as error:
        error.source = source  # type: ignore[attr-defined]
        raise
    return max(emit(data, output, args.check) for emit, data, output in outputs)


def _onnx_model(compiled, torch_source: str, args: argparse.Namespace) -> bytes:  # noqa: ANN001
    from nscompile.compiler.pipeline import check_onnx_size
    from nscompile.learn.weights import initial_state, load_state  # torch: only when asked for

    network = select_network(compiled, args.network)
    check_onnx_size(compiled, network)
    if args.weights is not None:
        weights = load_state(args.weights)
    else:
        weights = initial_state(torch_source, network.name, args.seed)
    return to_onnx(compiled, network, weights).SerializeToString()


def cmd_check(args: argparse.Namespace) -> int:
    for path in args.specs:
        spec = _front(read_source(path), path)
        print(f"{path}: ok ({len(spec.neurons)} neuron(s), {len(spec.networks)} network(s))")
    return OK


def cmd_fmt(args: argparse.Namespace) -> int:
    source = read_source(args.spec)
    text = unparse(_front(source, args.spec))
    if args.write:
        if text != source:
            emit_text(text, args.spec, check=False)
        return OK
    if args.check:
        return emit_text(text, args.spec, check=True, fix=f"run `nscompile fmt -w {args.spec}`")
    return emit_text(text, None, check=False)


def cmd_ir(args: argparse.Namespace) -> int:
    if args.after is not None:
        check_stage(args.after)  # a misspelt name fails before the spec is compiled
    source = read_source(args.spec)
    compiled = _compiled(source, args.spec)
    if args.after is not None:
        sys.stdout.write(ir_after(compiled, args.after).dump())
        return OK
    sys.stdout.write("# lowered\n" + compiled.lowered.dump())
    sys.stdout.write("\n# optimised\n" + compiled.optimized.dump())
    return OK


def cmd_import_structure(args: argparse.Namespace) -> int:
    text = read_source(args.structure)
    if args.tnlearn:  # a tnlearn formula string (`0.5@x**2 + x`): see lang/tnlearn_formula.py
        note = f"Imported from the tnlearn formula {Path(args.structure).name}: {text.strip()}"
        try:
            neuron = neuron_from_tnlearn(
                text, args.structure, args.name or "tn", " ".join(note.split()), front_end
            )
        except SpecError as error:
            error.source = text  # type: ignore[attr-defined]
            raise
    else:
        structure = load_structure(args.structure, text)
        note = f"Imported from the NeuronSeek structure {Path(args.structure).name}: {text.strip()}"
        neuron = neuron_from_structure(structure, args.name or "td", " ".join(note.split()))
    args.name = neuron.name
    decls: tuple = (neuron,)
    if args.input is not None:
        outputs = (
            args.outputs
            if args.outputs is not None
            else (2 if args.task == "classification" else 1)
        )
        decls += (network_for(args.name, args.input, args.hidden, outputs, args.task),)
    spec_text = unparse(Spec(decls))
    front_end(spec_text, args.output or "<import>")  # the spec we write must be valid
    return emit_text(spec_text, args.output, check=False)


def _front(source: str, path: str) -> Spec:
    try:
        return front_end(source, path)
    except SpecError as error:
        error.source = source  # type: ignore[attr-defined]
        raise


def _compiled(source: str, path: str):  # noqa: ANN202
    try:
        return compile_text(source, path)
    except SpecError as error:
        error.source = source  # type: ignore[attr-defined]
        raise


def _widths(text: str) -> list[int]:
    try:
        widths = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected widths like 64,32, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise argparse.ArgumentTypeError("widths must be at least 1")
    return widths


def _compile_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nscompile",
        description="Compile a neuron spec into a standalone PyTorch module.",
        epilog="subcommands: " + ", ".join(SUBCOMMANDS) + " (nscompile SUBCOMMAND --help)",
    )
    parser.add_argument("spec", help="the .ns file")
    parser.add_argument("-o", "--output", help="write the module here (default: stdout)")
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 with a diff if -o FILE is stale"
    )
    parser.add_argument("--onnx", metavar="MODEL.onnx", help="also write the network as ONNX")
    parser.add_argument("--weights", help="state dict (torch.save) for the ONNX initializers")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the initial weights without --weights (0)"
    )
    parser.add_argument("--network", help="which network, when the spec has several")
    parser.add_argument(
        "--max-param-bytes",
        type=int,
        help="refuse networks whose float32 parameters take more bytes (default 2 GiB)",
    )
    parser.add_argument("--version", action="version", version=f"nscompile {__version__}")
    parser.set_defaults(run=cmd_compile)
    return parser


def _subcommand_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nscompile")
    sub = parser.add_subparsers(required=True)
    check = sub.add_parser("check", help="check specs and report the first error of each")
    check.add_argument("specs", nargs="+", metavar="SPEC")
    check.set_defaults(run=cmd_check)
    fmt = sub.add_parser("fmt", help="print the spec in canonical form, keeping every comment")
    fmt.add_argument("spec")
    mode = fmt.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="exit 1 with a diff if not canonical")
    mode.add_argument("-w", "--write", action="store_true", help="rewrite the file in place")
    fmt.set_defaults(run=cmd_fmt)
    ir = sub.add_parser("ir", help="print the IR before and after optimisation")
    ir.add_argument("spec")
    ir.add_argument(
        "--after",
        metavar="PASS",
        help="print only the IR after this pass ('lower': the unoptimised IR)",
    )
    ir.set_defaults(run=cmd_ir)
    imp = sub.add_parser(
        "import-structure",
        help="turn a NeuronSeek structure JSON, or a tnlearn formula (--tnlearn), into a spec",
    )
    imp.add_argument("structure", metavar="FILE")
    imp.add_argument(
        "--tnlearn",
        action="store_true",
        help="FILE holds a tnlearn formula string such as 0.5@x**2 + 1.2@sin(x) + x",
    )
    imp.add_argument("-o", "--output", help="write the spec here (default: stdout)")
    imp.add_argument("--name", help="the neuron's name (default: td; tn with --tnlearn)")
    imp.add_argument("--input", type=int, help="also write a network with this input width")
    imp.add_argument("--hidden", type=_widths, default=[64, 32], help="hidden widths (64,32)")
    imp.add_argument("--outputs", type=int, help="head width (default 1, or 2 to classify)")
    imp.add_argument("--task", choices=TASKS, default="regression")
    imp.set_defaults(run=cmd_import_structure)
    add_data_parsers(sub)  # run, search
    add_train_parsers(sub)  # train, eval, fit
    add_bench_parser(sub)
    return parser


SUBCOMMANDS = (
    "check", "fmt", "ir", "import-structure", "run", "search", "train", "eval", "fit", "bench",
)  # fmt: skip


def _rank_prefix() -> str:
    """ "rank R: " in torchrun's processes other than rank 0 (`nscompile train` there)."""
    if "nscompile.learn.train.distributed" not in sys.modules:
        return ""
    from nscompile.learn.train.distributed import message_prefix

    return message_prefix()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list and args_list[0] in SUBCOMMANDS:
        parser = _subcommand_parser()
    else:
        parser = _compile_parser()
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exit_:
        return int(exit_.code or 0) and USAGE
    run: Callable[[argparse.Namespace], int] = args.run
    args.argv = args_list  # what `--nproc` runs again under torchrun
    try:
        return run(args)
    except SpecError as error:
        print(error.render(getattr(error, "source", None)), file=sys.stderr)
        return INPUT_ERROR
    except UserError as error:
        print(f"nscompile: error: {error}", file=sys.stderr)
        return INPUT_ERROR
    except InputError as error:
        if not getattr(error, "from_rank0", False):  # see learn.train.distributed.Ranks.share
            print(_rank_prefix() + error.render(), file=sys.stderr)
        return INPUT_ERROR
    except BrokenPipeError:
        sys.stderr.close()  # the reader went away (`| head`): not an error of ours
        return OK
    except KeyboardInterrupt:
        print(f"{_rank_prefix()}nscompile: interrupted", file=sys.stderr)
        return 130
    except InternalError as error:  # the last line of defence: a bug, never the user's fault
        print(
            f"nscompile: internal error: {error} (please report this with the spec)",
            file=sys.stderr,
        )
        return INTERNAL_ERROR
