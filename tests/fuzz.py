"""The compiler's fuzzing campaign: seeded mutations of specs, each compiled, run and exported.

    python tests/fuzz.py --cases 10000 [--seed S] [--jobs N]

Each case is a spec from `examples/`, the bad-spec corpus or `TEMPLATES`, with one to three
mutations (`MUTATIONS`) aimed at what broke before: extreme and folded numbers, cancelling
arguments, huge widths, reserved names, stray characters. Outcomes:

- ok: it compiles, the generated module builds and runs on a random input, and (for every
  `onnx_every`-th case) `nscompile SPEC -o X.py --onnx Y.onnx` writes both files;
- spec error / input error: a SpecError whose span lies inside the source, or an InputError,
  with exit 1 and no file written by the command line;
- traceback: any other exception, a SpecError without a position or outside the source,
  `nscompile check` and compilation disagreeing, or the command line leaving a file behind;
- timeout: a case running past `TIMEOUT_S`;
- injection: generated code with a name the naming authority (or the template) did not
  produce.

The campaign prints the counts and the reproducer of each traceback, timeout and injection.
tests/test_fuzz.py runs a few hundred cases of the same generator in the test suite.
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import io
import multiprocessing
import random
import re
import sys
import tempfile
import time
import tokenize
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT_S = 20.0
#: Fuzzed networks stay small enough to build in a worker; bigger ones must give E160.
MAX_PARAM_BYTES = 64 * 1024**2
OUTCOMES = ("ok", "spec error", "input error", "traceback", "timeout", "injection")

TEMPLATES = [
    "neuron q {{ y = {y} }}  network n {{ input 3  dense 4 q  dense 1  task regression }}",
    "neuron q {{ rank 4  y = {y} }}\nnetwork n {{ input 5  dense 6 q relu  dense 2 }}",
    "neuron q {{ rank 2  y = {y} }}\nnetwork n {{ input 2 x 6 x 6  conv 3 q relu bn  maxpool 2\n"
    "  block 4 q stride=2  globalpool  dense 2 }}",
    "neuron q {{ rank 2  y = {y} }}\nnetwork n {{ input 2 x 6 x 6  conv 3 q relu bn=terms\n"
    "  block 4 q stride=2 bn=terms  globalpool  dense 2 }}",
]
TEMPLATE_YS = [
    "<w, x>",
    "<w1, x> + <w2, x**2> + b",
    "<w1, x> * <w2, x> + cp(x, 2) + b",
    "0.5 * tanh(<w, 2 * x - x**3>) - -bias + 3",
    "<w1, sin(x)> + cp(x**2, 3) * <w2, x>",
    "<w, x> + quad(x, W) + exp(-0.1 * sqdist(x**2, c)) + b",
]
NUMBERS = [
    "0", "0.0", "1e-400", "1e-45", "1e-30", "1e30", "1e38", "3.5e38", "1e39", "1e200",
    "1e308", "1e400", "99999999999", "2.5", "-1", "1000000", "9", "10",
    "1e20 * 1e20", "exp(710)", "exp(88)", "exp(89)", "(99999999999**9)**9", "exp(1000) - exp(1000)",
]  # fmt: skip
NAMES = [
    "x", "b", "bias", "w", "w1", "y", "h", "t0", "_t0", "self", "__import__", "exec", "eval",
    "os", "torch", "nn", "F", "math", "forward", "training", "build", "NETWORKS", "lambda",
    "class", "input", "dense", "rank", "task", "cp", "exp", "relu", "sin", "identity", "inf",
    "nan", "True", "None", "in_features", "ab\u00e9",
]  # fmt: skip
INPUT_FORMS = [
    "(x - x)", "0*x", "cos(0*x)", "0*x + 1", "exp(x)", "exp(exp(x))", "x**9", "(x**9)**9",
    "((x**9)**9)**9", "exp(1000*x)", "sigmoid(x)", "x*x - x**2", "relu(x)", "abs(x) - abs(x)",
    "(1e20*x)**9", "x + 1e38", "exp(x) * 0", "sin(x)**9",
]  # fmt: skip
SCALES = ["0 * ", "1e30 * ", "exp(100) * ", "1e-400 * ", "-", "2 * ", "(x - x) * "]
WIDTHS = ["0", "1", "2", "65536", "100000", "1000000", "1000001", "30000", "999999999999"]
STRAY = [
    '"', "'", '"""', "\\", "#", "\n", "{", "}", ";", ":", "=", "\x00", "\u00e9", "**", "<", ">",
    ",", "(", ")", "\t", "\r", "\u2028", "0x1", "1_000", ".5", "5.", "1e", "+", "-", "*",
]  # fmt: skip

TOKEN = re.compile(r"\d[\d.]*(?:[eE][-+]?\d+)?|[A-Za-z_]\w*|\*\*|#[^\n]*|\s+|.", re.S)


def seeds(generated: int = 200) -> tuple[list[str], list[str]]:
    """The valid specs mutations start from, and the bad ones, in a fixed order."""
    good = [t.format(y=y) for t in TEMPLATES for y in TEMPLATE_YS]
    good += [p.read_text(encoding="utf-8") for p in sorted((ROOT / "examples").glob("*.ns"))]
    good += generated_specs(generated)
    bad = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "tests/errors").glob("*.ns"))]
    return good, bad


def generated_specs(count: int) -> list[str]:
    """`count` specs drawn from tests/strategies.py, the same ones on every run."""
    from hypothesis import HealthCheck, Phase, given, settings
    from strategies import specs

    from nscompile.lang.unparse import unparse

    texts: list[str] = []

    @settings(
        max_examples=count,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(specs(min_networks=0, max_networks=2))
    def collect(spec) -> None:  # noqa: ANN001
        texts.append(unparse(spec))

    collect()
    return texts


# --- mutations: token list -> token list ---------------------------------------------------


def _where(tokens: list[str], rng: random.Random, test) -> int | None:  # noqa: ANN001
    places = [i for i, t in enumerate(tokens) if test(t)]
    return rng.choice(places) if places else None


def _replace(test, choices):  # noqa: ANN001, ANN202
    def mutate(tokens: list[str], rng: random.Random) -> list[str]:
        i = _where(tokens, rng, test)
        if i is not None:
            tokens[i] = rng.choice(choices)
        return tokens

    return mutate


def _is_number(token: str) -> bool:
    return token[:1].isdigit()


def _width(tokens: list[str], rng: random.Random) -> list[str]:
    words = [i for i, t in enumerate(tokens) if t in ("input", "dense", "rank", "classification")]
    if words:
        i = rng.choice(words)
        j = next((k for k in range(i + 1, len(tokens)) if not tokens[k].isspace()), None)
        if j is not None and _is_number(tokens[j]):
            tokens[j] = rng.choice(WIDTHS)
    return tokens


def _scale(tokens: list[str], rng: random.Random) -> list[str]:
    i = _where(tokens, rng, lambda t: t in ("<", "cp", "b"))
    if i is not None:
        tokens.insert(i, rng.choice(SCALES))
    return tokens


def _delete(tokens: list[str], rng: random.Random) -> list[str]:
    if tokens:
        del tokens[rng.randrange(len(tokens))]
    return tokens


def _duplicate(tokens: list[str], rng: random.Random) -> list[str]:
    if tokens:
        i = rng.randrange(len(tokens))
        tokens.insert(i, tokens[i])
    return tokens


def _insert(tokens: list[str], rng: random.Random) -> list[str]:
    tokens.insert(rng.randrange(len(tokens) + 1), rng.choice(STRAY + NAMES))
    return tokens


def _swap(tokens: list[str], rng: random.Random) -> list[str]:
    if len(tokens) > 1:
        i, j = rng.randrange(len(tokens)), rng.randrange(len(tokens))
        tokens[i], tokens[j] = tokens[j], tokens[i]
    return tokens


def _truncate(tokens: list[str], rng: random.Random) -> list[str]:
    return tokens[: rng.randrange(len(tokens) + 1)]


#: Mutations that (mostly) keep the syntax, 4x as likely as those that break it.
MUTATIONS = [
    _replace(_is_number, NUMBERS),
    _replace(lambda t: t[:1].isalpha() or t[:1] == "_", NAMES),
    _replace(lambda t: t == "x", INPUT_FORMS),
    _width,
    _scale,
]
SYNTAX_MUTATIONS = [_delete, _duplicate, _insert, _swap, _truncate]


def case_text(seed: int, case: int, pools: tuple[list[str], list[str]]) -> str:
    """The spec of case `case` of the campaign `seed`: the same text on every machine."""
    rng = random.Random(f"{seed}:{case}")
    good, bad = pools
    tokens = TOKEN.findall(rng.choice(good if rng.random() < 0.85 else bad))
    for _ in range(rng.randint(1, 3)):
        kind = MUTATIONS if rng.random() < 0.8 else SYNTAX_MUTATIONS
        tokens = rng.choice(kind)(tokens, rng)
    return "".join(tokens)


# --- one case ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    outcome: str
    detail: str = ""


def run_case(text: str, onnx: bool) -> Result:
    """Compile, check, run and maybe export one spec; never raises."""
    try:
        return _run_case(text, onnx)
    except Exception:  # noqa: BLE001 - the point of the fuzzer
        return Result("traceback", traceback.format_exc())


def _run_case(text: str, onnx: bool) -> Result:
    from nscompile.compiler.pipeline import compile_text, front_end, to_torch
    from nscompile.errors import InputError, SpecError

    try:
        compiled = compile_text(text, "fuzz.ns", MAX_PARAM_BYTES)
    except SpecError as error:
        if (problem := _span_problem(error, text)) is not None:
            return Result("traceback", problem)
        if error.code not in ("E160",):  # the size limit is compile-only by design
            with contextlib.suppress(SpecError):
                front_end(text, "fuzz.ns")
                return Result("traceback", f"check passes, compile fails: {error}")
        result = Result("spec error", error.code)
    except InputError as error:
        result = Result("input error", error.message)
    else:
        source = to_torch(compiled)
        if names := injected_names(compiled, source):
            return Result("injection", f"names {sorted(names)} in\n{source}")
        _run_module(compiled, source)
        result = Result("ok")
    if onnx:
        return _run_cli(text, result)
    return result


def _span_problem(error, text: str) -> str | None:  # noqa: ANN001
    """Why the error's span does not lie inside `text`, or None when it does."""
    span = error.span
    if span is None:
        return f"no position: {error}"
    lines = text.splitlines() or [""]
    inside = 1 <= span.line <= span.end_line <= len(lines) + 1
    inside = inside and 1 <= span.col <= len(_line(lines, span.line)) + 1
    inside = inside and span.end_col <= len(_line(lines, span.end_line)) + 2
    return None if inside else f"span {span} outside the source: {error}"


def _line(lines: list[str], number: int) -> str:
    return lines[number - 1] if number <= len(lines) else ""


def _run_module(compiled, source: str) -> None:  # noqa: ANN001
    """Import the generated module; run every network (or each layer) on a random batch."""
    import torch

    namespace: dict[str, object] = {"__name__": "fuzz_generated"}
    exec(compile(source, "fuzz_generated.py", "exec"), namespace)  # the module we generated
    x_rows = 3
    with torch.no_grad():
        for network in compiled.optimized.networks:
            model = namespace["build"](network.name)  # type: ignore[operator]
            shape = network.image or (network.input_width,)
            out = model.eval()(torch.randn(x_rows, *shape))
            width = network.out_features
            assert out.shape == (x_rows, width), f"{network.name}: output {tuple(out.shape)}"
        if not compiled.optimized.networks:
            for cls in _layer_classes(namespace):
                assert cls(3, 2)(torch.randn(x_rows, 3)).shape == (x_rows, 2)


def _layer_classes(namespace: dict[str, object]) -> list[type]:
    import torch

    return [
        v
        for v in namespace.values()
        if isinstance(v, type) and issubclass(v, torch.nn.Module) and hasattr(v, "reset_parameters")
    ]


def _run_cli(text: str, result: Result) -> Result:
    """`nscompile SPEC -o X.py --onnx Y.onnx`: exit 0 with both files, or 1 with neither."""
    from nscompile.cli.main import main

    with tempfile.TemporaryDirectory() as tmp:
        spec = Path(tmp) / "fuzz.ns"
        spec.write_text(text, encoding="utf-8")
        args = [str(spec), "-o", f"{tmp}/m.py", "--onnx", f"{tmp}/m.onnx"]
        args += ["--max-param-bytes", str(MAX_PARAM_BYTES)]
        if result.outcome == "ok":
            args += _network_option(text)
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code = main(args)
        written = sorted(p.name for p in Path(tmp).iterdir() if p.name != "fuzz.ns")
    message = err.getvalue()
    if code == 0 and written == ["m.onnx", "m.py"]:
        return result
    if code == 1 and not written and "Traceback" not in message:
        # A spec with no network (E161) compiles to a module but not to ONNX.
        return (
            result
            if result.outcome != "ok" or "E161" in message
            else Result("traceback", f"compiles, but the command line says: {message}")
        )
    return Result("traceback", f"exit {code}, files {written}:\n{message}")


def _network_option(text: str) -> list[str]:
    from nscompile.compiler.pipeline import front_end

    networks = list(front_end(text, "fuzz.ns").networks)
    return ["--network", networks[0]] if len(networks) > 1 else []


# --- injection ---------------------------------------------------------------------------


def _template_words() -> frozenset[str]:
    """Every word the template and the backend's string constants may put in the code."""
    words = set(re.findall(r"[A-Za-z_]\w*", (ROOT / "templates" / "module.py.jinja").read_text()))
    for module in ("emit_torch.py", "torch_printer.py", "conv_printer.py", "ops.py", "storage.py"):
        tree = ast.parse((ROOT / "nscompile" / "compiler" / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                words |= set(re.findall(r"[A-Za-z_]\w*", node.value))
    return frozenset(words)


#: Numbered names the backend makes itself: CSE temporaries, layers, fused parameters.
NUMBERED = re.compile(r"(t\d+(_\d+)?|layer\d+|bn\d+|_fused\d+)\Z")


def injected_names(compiled, source: str) -> set[str]:  # noqa: ANN001
    """Names in `source` that neither the template nor the naming authority produced."""
    from nscompile.lang.naming import unique_class_names, why_not_allowed

    program = compiled.optimized
    neurons = [n.name for n in program.neurons]
    classes = unique_class_names(
        neurons + [n.name for n in program.networks], dict.fromkeys(neurons, "Layer")
    )
    convs = [n.name for n in program.conv_neurons]
    conv_classes = unique_class_names(convs, dict.fromkeys(convs, "Conv2d"), set(classes.values()))
    normed = [n.name for n in program.term_bn_neurons]
    taken = set(classes.values()) | set(conv_classes.values())
    normed_classes = unique_class_names(normed, dict.fromkeys(normed, "Conv2dTermBN"), taken)
    every = program.neurons + program.conv_neurons + program.term_bn_neurons
    params = {p.name for n in every for p in n.params if why_not_allowed(p.name) is None}
    norms = {name for n in program.term_bn_neurons for name in n.norms}
    allowed = _TEMPLATE_WORDS | taken | set(normed_classes.values()) | params | norms
    names = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.NAME and token.string not in allowed:
            names.add(token.string)
    return {n for n in names if not NUMBERED.match(n)}


_TEMPLATE_WORDS = _template_words()


# --- the campaign ------------------------------------------------------------------------


def _worker(conn: Connection) -> None:
    import warnings

    warnings.simplefilter("ignore")  # overflow warnings of generated modules are not findings
    while True:
        job = conn.recv()
        if job is None:
            return
        text, onnx = job
        conn.send(run_case(text, onnx))


class _Worker:
    """One process running cases; replaced when a case runs past the timeout."""

    def __init__(self, context) -> None:  # noqa: ANN001
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_worker, args=(child,), daemon=True)
        self.process.start()
        self.case: tuple[int, str, float] | None = None

    def give(self, case: int, text: str, onnx: bool) -> None:
        self.conn.send((text, onnx))
        self.case = (case, text, time.monotonic())

    def stop(self) -> None:
        self.process.kill()
        self.process.join()


def campaign(cases: int, seed: int, jobs: int, onnx_every: int) -> dict[str, list]:
    """Run the cases on `jobs` workers; return the findings (case, text, detail) by outcome."""
    context = multiprocessing.get_context("spawn")  # fresh workers: no state from the parent
    pool = seeds()
    todo = collections.deque(range(cases))
    workers = [_Worker(context) for _ in range(max(1, jobs))]
    found: dict[str, list] = {o: [] for o in OUTCOMES}
    done, started = 0, time.monotonic()
    while done < cases:
        for worker in workers:
            if worker.case is None and todo:
                case = todo.popleft()
                worker.give(case, case_text(seed, case, pool), case % onnx_every == 0)
        busy = [w for w in workers if w.case is not None]
        ready = wait([w.conn for w in busy], timeout=1.0)
        for worker in busy:
            case, text, since = worker.case  # type: ignore[misc]
            if worker.conn in ready:
                result: Result = worker.conn.recv()
                found[result.outcome].append((case, text, result.detail))
            elif time.monotonic() - since > TIMEOUT_S:
                worker.stop()
                workers[workers.index(worker)] = _Worker(context)
                found["timeout"].append((case, text, f"over {TIMEOUT_S:.0f} s"))
            else:
                continue
            worker.case = None
            done += 1
            if done % 500 == 0:
                rate = done / (time.monotonic() - started)
                print(f"  {done}/{cases} cases, {rate:.1f}/s", file=sys.stderr, flush=True)
    for worker in workers:
        worker.conn.send(None) if worker.process.is_alive() else None
        worker.process.join(timeout=5)
    return found


def report(found: dict[str, list], cases: int, seconds: float) -> str:
    lines = [f"{cases} cases in {seconds:.0f} s"]
    lines += [f"  {outcome:12} {len(found[outcome])}" for outcome in OUTCOMES]
    codes = collections.Counter(detail for _, _, detail in found["spec error"])
    lines.append(
        "  spec errors by code: " + ", ".join(f"{c} {n}" for c, n in sorted(codes.items()))
    )
    for outcome in ("traceback", "timeout", "injection"):
        for case, text, detail in found[outcome]:
            lines += [f"\n--- {outcome}, case {case}; reproducer:", text, "--- detail:", detail]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--onnx-every", type=int, default=10, help="export every Nth case (10)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    found = campaign(args.cases, args.seed, args.jobs, args.onnx_every)
    print(report(found, args.cases, time.monotonic() - started))
    return 0 if not (found["traceback"] or found["timeout"] or found["injection"]) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
