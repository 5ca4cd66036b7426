"""Structure recovery on NeuronSeek's 15 synthetic formulas.

Every formula at D inputs and N rows (default D=10, N=2500; N=3000 when D > 10), the search
seeing the first 80% of the rows, three search seeds each. Prints per formula the truth, the
structure each seed found, PERFECT / NOISY / MISSING for the majority structure, the agreement
across seeds, the verdict of stage 1 alone (the L0 gates, before stage 2's refits) and the
seconds per search; then the totals.

    python examples/paper/synthetic_recovery.py                 # the full benchmark, D=10
    python examples/paper/synthetic_recovery.py --dims 50 --rows 3000 --noise 0.1 --jobs 2
    python examples/paper/synthetic_recovery.py --classes 2     # labels: above/below median
    python examples/paper/synthetic_recovery.py --quick         # two formulas, few epochs
    python examples/paper/synthetic_recovery.py --formulas pure_v0,hybrid_v1 --seeds 1
    python examples/paper/synthetic_recovery.py --json out.json
    python examples/paper/synthetic_recovery.py --table d10.json d30.json d50.json

`--noise S` is the noise's std relative to the signal's (default 0.01; see
`nscompile.learn.synthetic`); `--classes C` turns the target into C quantile classes, so the search
runs as classification; `--data-seed` draws other data (the reported tables use data seed 0
and search seeds 0, 1, 2; tune on other seeds). `--jobs J` runs J formulas at once, one torch
thread each. `--table` prints the scaling table (markdown) of JSON files written by `--json`.
    python examples/paper/synthetic_recovery.py --baseline tnlearn --seeds 1
    python examples/paper/synthetic_recovery.py --baseline tnlearn --tn-class VecSymRegressor

`--baseline tnlearn` runs, per formula and on the same data (data seed 0, the first 2000 rows),
nscompile's search and tnlearn's genetic-programming symbolic regression side by side; tnlearn's
`random_state` takes the search seeds 0..seeds-1. Default class `GPSymRegressor` (tnlearn 0.2.0's
current regressor, mode 'base': + - * neg and inner products `<a, b>`); `VecSymRegressor` is its
legacy vectorised one (+ - * neg, `c@x**k` notation). The GP budget is cut far below tnlearn's
defaults (population 5000, 20 generations, depth 6: about an hour per formula here, going by
90 s at population 300 and 8 generations) so that the 15 formulas with one seed run in about six
minutes on two shared cores (about 20 s per tnlearn fit, 4 s per nscompile search); the settings
used are printed. tnlearn's progress bars and
warnings are silenced; seconds are the `fit` call only.

Reading a tnlearn formula as a structure. The formula is over one symbol x, evaluated
elementwise on the D features; `<a, b>` sums a*b over the feature axis, and a result that is
still per-feature is summed over the features at the end (GPSymRegressor's fitness; as a tnlearn
neuron each per-feature term gets its own weight vector, the same reading). So after expanding,
every term is a constant times a product of feature sums S_k = sum_d x_d^k:
  - S_k alone (from `x**k`, `<c, x**k>`, `<x, x>` = S_2, ...) is pure order k;
  - a product of m >= 2 linear projections S_1 (`<c1, x>*<c2, x>`, `x*<c, x>`) is interaction
    order m (tnlearn's constants are scalars, so its projections all point along (1, ..., 1),
    not along fresh directions w_m as in the truth's Int_m: that is what it can express);
  - a constant term is the bias, which every structure has, and is ignored; a name other than
    x (`<w1, x>`) is a weight, a constant;
  - anything else (a product that mixes S_k with k > 1, S_2*S_1 or S_2^2, a sin/exp/log of x,
    a non-integer power) matches no order: it is listed as "other", shown as `+other`, and the
    verdict cannot be PERFECT (it can be NOISY if the orders found still contain the truth).
VecSymRegressor fits f(x_d) to y for each feature d separately and sympy folds x*x into x**2,
so its formulas only ever give pure orders.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import sys
import time
import warnings
from collections import Counter

from nscompile.errors import InputError
from nscompile.learn.synthetic import FORMULAS, generate

DIMS, ROWS, TRAIN = 10, 2500, 2000  # the tnlearn comparison's fixed setting
QUICK = ("pure_v0", "interact_v0")
TN_CLASSES = ("GPSymRegressor", "VecSymRegressor")
# tnlearn's GP budget: {"pop_size": ..., "max_generations": ..., "max_depth": ...} (depth: GP only)
TN_FULL = {"pop_size": 500, "max_generations": 10, "max_depth": 4}
TN_QUICK = {"pop_size": 100, "max_generations": 3, "max_depth": 4}


def verdict(found: dict, truth: dict) -> str:
    """PERFECT (equal sets), NOISY (contains the truth) or MISSING."""
    fp, fi = set(found["pure"]), set(found["interact"])
    tp, ti = set(truth["pure"]), set(truth["interact"])
    if (fp, fi) == (tp, ti) and not found.get("other"):
        return "PERFECT"
    return "NOISY" if tp <= fp and ti <= fi else "MISSING"


def majority_verdict(row: dict) -> str:
    """The verdict of the structure most seeds found; without a majority (a three-way split of
    three seeds), NO MAJORITY, which counts as neither PERFECT nor NOISY."""
    if row["agreement"] <= 0.5 and len(row["per_seed"]) > 1:
        return "NO MAJORITY"
    return verdict(row["majority"], row["truth"])


def show(structure: dict) -> str:
    pure = ",".join(map(str, structure["pure"]))
    inter = ",".join(map(str, structure["interact"]))
    return f"P{{{pure}}} I{{{inter}}}" + (" +other" if structure.get("other") else "")


def neuronseek_row(
    name: str,
    seeds: int,
    quick: bool,
    setting: dict | None = None,
) -> dict:
    """One formula: search with `seeds` seeds on the data `setting` describes."""
    from nscompile.learn.search import search

    setting = setting or {"dims": DIMS, "rows": ROWS, "noise": 0.01, "classes": 0, "data_seed": 0}
    params = {"epochs": 20, "refit_iters": 60} if quick else {}
    X, y, truth = generate(
        name, dims=setting["dims"], rows=setting["rows"], seed=setting["data_seed"],
        noise=setting["noise"], classes=setting["classes"],
    )  # fmt: skip
    train = int(setting["rows"] * 0.8)
    task = "classification" if setting["classes"] else "regression"
    result = search(X[:train], y[:train], seeds=tuple(range(seeds)), name=name, task=task, **params)
    stage1 = [{"pure": s["pure"], "interact": s["interact"]} for s in result.stage1_per_seed]
    stage1_majority = Counter(json.dumps(s, sort_keys=True) for s in stage1).most_common(1)[0][0]
    row = {
        "formula": name,
        "truth": truth,
        "per_seed": [{"pure": s["pure"], "interact": s["interact"]} for s in result.per_seed],
        "majority": {"pure": result.structure["pure"], "interact": result.structure["interact"]},
        "agreement": result.agreement,
        "stage1_per_seed": stage1,
        "stage1_verdict": verdict(json.loads(stage1_majority), truth),
        "stage2_changed": result.stage2_changed,
        "undecided": result.undecided,
        "seconds_per_search": result.seconds / seeds,
        "val_metric": result.val_metric,
        "metric": result.metric_name,
    }
    row["verdict"] = majority_verdict(row)
    return row


def _row_job(job: tuple) -> dict:
    return neuronseek_row(*job)


def run_neuronseek(
    names: list[str], seeds: int, quick: bool, setting: dict | None = None, jobs: int = 1
) -> list[dict]:
    work = [(name, seeds, quick, setting) for name in names]
    if jobs > 1:
        import multiprocessing

        pool = multiprocessing.get_context("spawn").Pool(jobs)
        results = pool.imap(_row_job, work)
    else:
        pool, results = None, map(_row_job, work)
    rows = []
    try:
        for row in results:
            rows.append(row)
            found = "  ".join(show(s) for s in row["per_seed"])
            print(
                f"{row['formula']:12s} {show(row['truth']):14s} {found:44s} {row['verdict']:8s}"
                f" {row['agreement']:5.2f} {row['stage1_verdict']:8s}"
                f" {row['seconds_per_search']:6.1f}s",
                flush=True,
            )
    finally:
        if pool is not None:
            pool.close()
    return rows


def totals(rows: list[dict], seeds: int) -> dict:
    """The counts a scaling-table line shows (verdicts by the majority rule)."""
    verdicts = [majority_verdict(r) for r in rows]
    return {
        "formulas": len(rows),
        "perfect": verdicts.count("PERFECT"),
        "noisy": verdicts.count("NOISY"),
        "searches_perfect": sum(
            verdict(s, r["truth"]) == "PERFECT" for r in rows for s in r["per_seed"]
        ),
        "all_agree": sum(r["agreement"] == 1.0 for r in rows),
        "stage1_perfect": sum(r["stage1_verdict"] == "PERFECT" for r in rows),
        "stage2_changed": sum(r["stage2_changed"] for r in rows),
        "searches": len(rows) * seeds,
        "undecided": sum(bool(r["undecided"]) for r in rows),
        "mean_seconds": sum(r["seconds_per_search"] for r in rows) / len(rows),
        "worst_seconds": max(r["seconds_per_search"] for r in rows),
    }


def scaling_table(paths: list[str]) -> str:
    """A markdown table, one line per JSON report written by `--json`."""
    lines = [
        "| D | N | noise | task | PERFECT | NOISY | searches PERFECT | all seeds agree "
        "| stage 1 alone PERFECT | stage 2 changed stage 1 | s/search mean (worst) |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            report = json.load(handle)
        st, rows = report["setting"], report["rows"]
        t = totals(rows, len(rows[0]["per_seed"]))
        task = f"{st['classes']} classes" if st["classes"] else "regression"
        n = t["formulas"]
        lines.append(
            f"| {st['dims']} | {st['rows']} | {st['noise']:g} | {task} | {t['perfect']}/{n} "
            f"| {t['noisy']} | {t['searches_perfect']}/{t['searches']} | {t['all_agree']}/{n} "
            f"| {t['stage1_perfect']}/{n} "
            f"| {t['stage2_changed']}/{t['searches']} "
            f"| {t['mean_seconds']:.1f} ({t['worst_seconds']:.1f}) |"
        )
    return "\n".join(lines)


def _tn_sympy(expression: str):
    """A tnlearn formula (`<a, b>`, `InnerProduct(a, b)` or legacy `c@x**k`) as sympy."""
    import sympy as sp

    text = expression.replace("@", "*")
    while "<" in text:
        text = re.sub(r"<([^<>]+)>", r"InnerProduct(\1)", text)
    expr = sp.sympify(text, locals={"InnerProduct": sp.Function("IP"), "x": sp.Symbol("x")})
    weights = sorted(expr.free_symbols - {sp.Symbol("x")}, key=str)  # named weights w1, c, ...
    return expr.subs({w: sp.Float(1 + 0.1371 * (i + 1)) for i, w in enumerate(weights)})


def tnlearn_structure(expression: str) -> dict:
    """Pure and interaction orders of a tnlearn formula, by the rule in the module docstring."""
    import sympy as sp

    x, other = sp.Symbol("x"), sp.Symbol("other")
    sums: dict[int, sp.Symbol] = {}

    def feature_sum(k: int) -> sp.Symbol:
        return sums.setdefault(k, sp.Symbol(f"S_{k}"))

    def over_features(p):  # sum over the feature axis: coefficient * x**k -> coefficient * S_k
        out = sp.Integer(0)
        for term in sp.Add.make_args(sp.expand(p)):
            coefficient, k = term.as_coeff_exponent(x)
            out += term if k == 0 else coefficient * feature_sum(int(k))
        return out

    def walk(e):
        if e == x or e.is_Number:
            return e
        if e.is_Add:
            return sp.Add(*[walk(a) for a in e.args])
        if e.is_Mul:
            return sp.Mul(*[walk(a) for a in e.args])
        if e.is_Pow:
            base, exponent = walk(e.args[0]), e.args[1]
            if base.free_symbols and not (exponent.is_Integer and exponent >= 0):
                return other
            return base**exponent
        args = [walk(a) for a in e.args]
        if e.func.__name__ == "IP":
            return over_features(args[0] * args[1])
        return other if any(a.free_symbols for a in args) else e  # sin(x), exp(x), ...

    pure, interact, others = set(), set(), []
    for term in sp.Add.make_args(sp.expand(over_features(walk(_tn_sympy(expression))))):
        _, rest = term.as_coeff_Mul()
        powers = rest.as_powers_dict() if rest != 1 else {}
        if not powers:
            continue  # the bias
        (symbol, power), *more = powers.items()
        if not more and symbol in sums.values() and power == 1:
            pure.add(int(symbol.name[2:]))
        elif not more and symbol == sums.get(1) and power >= 2:
            interact.add(int(power))
        else:
            others.append(str(rest))
    return {"pure": sorted(pure), "interact": sorted(interact), "other": sorted(set(others))}


def _short(expression: str, width: int = 70) -> str:
    text = re.sub(r"\d+\.\d+(e-?\d+)?", lambda m: f"{float(m.group()):.2g}", expression)
    return text if len(text) <= width else text[: width - 3] + "..."


@contextlib.contextmanager
def _quiet():
    """Swallow stdout, stderr, warnings and numpy floating-point complaints."""
    import numpy as np

    with (
        contextlib.redirect_stdout(io.StringIO()),
        contextlib.redirect_stderr(io.StringIO()),
        warnings.catch_warnings(),
        np.errstate(all="ignore"),
    ):
        warnings.simplefilter("ignore")
        yield


def _import_tnlearn(class_name: str):
    """(class, tnlearn.gp_regressor, import seconds), or a reason string if it cannot run."""
    start = time.perf_counter()
    try:
        with _quiet():
            import tnlearn
            from tnlearn import gp_regressor
    except Exception as exc:  # ImportError, or a broken dependency of tnlearn
        return f"tnlearn cannot be imported: {type(exc).__name__}: {exc}"
    cls = getattr(gp_regressor, class_name, None)
    if cls is None:
        version = getattr(tnlearn, "__version__", "?")
        return f"tnlearn {version} has no {class_name}"
    return cls, gp_regressor, time.perf_counter() - start


def _tn_fit(cls, module, settings: dict, seed: int, X, y) -> tuple[object, float]:
    """Fit silently (no tqdm bar, no output, no warnings); returns (model, fit seconds)."""
    bar = module.tqdm
    module.tqdm = lambda iterable, **_: iterable
    try:
        with _quiet():
            model = cls(random_state=seed, **settings)
            start = time.perf_counter()
            model.fit(X, y)
            return model, time.perf_counter() - start
    finally:
        module.tqdm = bar


def run_tnlearn(names: list[str], seeds: int, quick: bool, class_name: str, budget: dict) -> dict:
    """tnlearn next to nscompile on every formula; returns the rows and totals, or a skip."""
    loaded = _import_tnlearn(class_name)
    if isinstance(loaded, str):
        print(f"skipped: {loaded}")
        return {"skipped": loaded}
    cls, module, import_s = loaded
    settings = dict(budget)
    if class_name == "VecSymRegressor":
        settings.pop("max_depth", None)  # the legacy class grows trees to its own depth
    import tnlearn

    print(
        f"tnlearn {tnlearn.__version__} {class_name}"
        f"{' (mode base)' if class_name == 'GPSymRegressor' else ''}: "
        + ", ".join(f"{k}={v}" for k, v in settings.items())
        + f", random_state=seed in 0..{seeds - 1}, other parameters default"
        f" (import {import_s:.1f}s)"
    )
    print(
        f"nscompile: {seeds} seed(s){', quick settings' if quick else ''}; data D={DIMS}, "
        f"N={ROWS}, first {TRAIN} rows, data seed 0\n"
    )
    print(
        f"{'formula':12s} {'truth':14s} | {'nscompile':14s} {'verdict':8s} {'s/run':>6s}"
        f" | {'tnlearn':20s} {'verdict':8s} {'agree':>5s} {'s/run':>6s}  tnlearn formula (seed 0)"
    )
    rows = []
    for name in names:
        ns = neuronseek_row(name, seeds, quick)
        X, y, truth = generate(name, dims=DIMS, rows=ROWS, seed=0)
        runs = []
        for seed in range(seeds):
            try:
                model, seconds = _tn_fit(cls, module, settings, seed, X[:TRAIN], y[:TRAIN])
                raw = getattr(model, "best_prog", None) or model.neuron
                if raw is None:
                    raise RuntimeError("no formula found (every candidate scored inf)")
                found = tnlearn_structure(str(raw))
                fitness = float(model.best_score)
                runs.append(
                    {"seed": seed, "neuron": str(model.neuron), "found": found,
                     "train_fitness": fitness, "seconds": seconds}
                )  # fmt: skip
            except Exception as exc:
                runs.append({"seed": seed, "error": f"{type(exc).__name__}: {exc}"})
        ok = [r for r in runs if "found" in r]
        if ok:
            key = Counter(json.dumps(r["found"], sort_keys=True) for r in ok).most_common(1)[0][0]
            majority = json.loads(key)
            tn_verdict = verdict(majority, truth)
            agreement = sum(json.dumps(r["found"], sort_keys=True) == key for r in ok) / seeds
            seconds = sum(r["seconds"] for r in ok) / len(ok)
            formula = _short(ok[0]["neuron"])
        else:
            majority, tn_verdict, agreement, seconds = None, "ERROR", 0.0, float("nan")
            formula = runs[0]["error"]
        rows.append(
            {"formula": name, "truth": truth, "nscompile": ns,
             "tnlearn": {"class": class_name, "runs": runs, "majority": majority,
                         "verdict": tn_verdict, "agreement": agreement,
                         "seconds_per_run": seconds}}
        )  # fmt: skip
        tn_show = show(majority) if majority else "-"
        print(
            f"{name:12s} {show(truth):14s} | {show(ns['majority']):14s} {ns['verdict']:8s}"
            f" {ns['seconds_per_search']:6.1f} | {tn_show:20s} {tn_verdict:8s} {agreement:5.2f}"
            f" {seconds:6.1f}  {formula}",
            flush=True,
        )
    totals = {}
    for side in ("nscompile", "tnlearn"):
        verdicts = [r[side]["verdict"] for r in rows]
        secs = [r["nscompile"]["seconds_per_search"] if side == "nscompile"
                else r["tnlearn"]["seconds_per_run"] for r in rows]  # fmt: skip
        totals[side] = {v.lower(): verdicts.count(v) for v in ("PERFECT", "NOISY", "MISSING")}
        totals[side]["error"] = verdicts.count("ERROR")
        totals[side]["mean_seconds"] = sum(secs) / len(secs)
        t = totals[side]
        print(
            f"\n{side:9s} PERFECT {t['perfect']}/{len(rows)}  NOISY {t['noisy']}"
            f"  MISSING {t['missing']}"
            + (f"  ERROR {t['error']}" if t["error"] else "")
            + f"  seconds per run: mean {t['mean_seconds']:.1f}",
            end="",
        )
    print()
    return {"baseline": "tnlearn", "class": class_name, "settings": settings, "rows": rows,
            "totals": totals}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two formulas, few epochs")
    parser.add_argument("--formulas", help="comma-separated names (default: all 15)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per formula")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument(
        "--baseline", choices=["tnlearn"], help="run a baseline next to nscompile's search"
    )
    parser.add_argument(
        "--tn-class", choices=TN_CLASSES, default=TN_CLASSES[0], help="tnlearn regressor"
    )
    parser.add_argument("--tn-pop", type=int, help="tnlearn population size")
    parser.add_argument("--tn-gens", type=int, help="tnlearn generations")
    parser.add_argument("--tn-depth", type=int, help="tnlearn maximum tree depth (GP only)")
    parser.add_argument("--dims", type=int, default=DIMS, help="inputs D (10)")
    parser.add_argument("--rows", type=int, help="rows N (2500 at D <= 10, else 3000)")
    parser.add_argument("--noise", type=float, default=0.01, help="relative noise (0.01)")
    parser.add_argument("--classes", type=int, default=0, help="quantile classes (0: regression)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the data (0)")
    parser.add_argument("--jobs", type=int, default=1, help="formulas searched at once (1)")
    parser.add_argument("--table", nargs="+", metavar="JSON", help="print the scaling table")
    args = parser.parse_args(argv)
    if args.table:
        print(scaling_table(args.table))
        return 0
    names = list(QUICK) if args.quick else list(FORMULAS)
    if args.formulas:
        names = [n.strip() for n in args.formulas.split(",") if n.strip()]
        unknown = [n for n in names if n not in FORMULAS]
        if unknown:
            print(
                InputError(
                    f"unknown formula(s) {unknown}", f"known: {', '.join(FORMULAS)}"
                ).render()
            )
            return 1
    seeds = 1 if args.quick and args.seeds == 3 else args.seeds
    if args.baseline == "tnlearn":
        budget = dict(TN_QUICK if args.quick else TN_FULL)
        for key, value in (
            ("pop_size", args.tn_pop),
            ("max_generations", args.tn_gens),
            ("max_depth", args.tn_depth),
        ):
            if value is not None:
                budget[key] = value
        report = run_tnlearn(names, max(1, seeds), args.quick, args.tn_class, budget)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump(report, out, indent=2)
        return 0
    setting = {
        "dims": args.dims,
        "rows": args.rows or (2500 if args.dims <= 10 else 3000),
        "noise": args.noise,
        "classes": args.classes,
        "data_seed": args.data_seed,
    }
    seeds = max(1, seeds)
    print(
        f"D={setting['dims']} N={setting['rows']} (search on the first 80%) "
        f"noise={setting['noise']:g} "
        + (f"classes={setting['classes']} " if setting["classes"] else "")
        + f"data seed {setting['data_seed']}, search seeds 0..{seeds - 1}"
    )
    print(
        f"{'formula':12s} {'truth':14s} {'found per seed':44s} {'verdict':8s} agree"
        f" {'stage1':8s} s/search"
    )
    rows = run_neuronseek(names, seeds, args.quick, setting, max(1, args.jobs))
    t = totals(rows, seeds)
    print(
        f"\nPERFECT {t['perfect']}/{len(rows)}  NOISY {t['noisy']}"
        f"  other {len(rows) - t['perfect'] - t['noisy']}  searches PERFECT"
        f" {t['searches_perfect']}/{t['searches']}  all seeds agree"
        f" {t['all_agree']}/{len(rows)}  stage 1 alone PERFECT {t['stage1_perfect']}/{len(rows)}"
        f"  stage 2 changed stage 1 in {t['stage2_changed']}/{t['searches']} searches"
        f"  undecided {t['undecided']}  seconds per search: mean {t['mean_seconds']:.1f},"
        f" worst formula {t['worst_seconds']:.1f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            json.dump({"setting": setting, "rows": rows, "totals": t}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
