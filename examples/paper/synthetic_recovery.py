"""Structure recovery on NeuronSeek's 15 synthetic formulas (NEURONSEEK.md §3).

Every formula at D=10, N=2500 (the search sees the first 2000 rows; the last 500 are held
out), three search seeds each. Prints per formula the truth, the structure each seed found,
PERFECT / NOISY / MISSING for the majority structure, the agreement across seeds and the
seconds per search; then the totals.

    python examples/paper/synthetic_recovery.py                 # the full benchmark
    python examples/paper/synthetic_recovery.py --quick         # two formulas, few epochs
    python examples/paper/synthetic_recovery.py --formulas pure_v0,hybrid_v1 --seeds 1
    python examples/paper/synthetic_recovery.py --json out.json
    python examples/paper/synthetic_recovery.py --baseline tnlearn
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time

from nscompile.errors import InputError
from nscompile.synthetic import FORMULAS, generate

DIMS, ROWS, TRAIN = 10, 2500, 2000
QUICK = ("pure_v0", "interact_v0")


def verdict(found: dict, truth: dict) -> str:
    """PERFECT (equal sets), NOISY (contains the truth) or MISSING."""
    fp, fi = set(found["pure"]), set(found["interact"])
    tp, ti = set(truth["pure"]), set(truth["interact"])
    if (fp, fi) == (tp, ti):
        return "PERFECT"
    return "NOISY" if tp <= fp and ti <= fi else "MISSING"


def show(structure: dict) -> str:
    pure = ",".join(map(str, structure["pure"]))
    inter = ",".join(map(str, structure["interact"]))
    return f"P{{{pure}}} I{{{inter}}}"


def run_neuronseek(names: list[str], seeds: int, quick: bool) -> list[dict]:
    from nscompile.search import search

    params = {"epochs": 20, "refit_iters": 60} if quick else {}
    rows = []
    for name in names:
        X, y, truth = generate(name, dims=DIMS, rows=ROWS, seed=0)
        result = search(X[:TRAIN], y[:TRAIN], seeds=tuple(range(seeds)), name=name, **params)
        row = {
            "formula": name,
            "truth": truth,
            "per_seed": [{"pure": s["pure"], "interact": s["interact"]} for s in result.per_seed],
            "majority": {
                "pure": result.structure["pure"],
                "interact": result.structure["interact"],
            },
            "verdict": verdict(result.structure, truth),
            "agreement": result.agreement,
            "seconds_per_search": result.seconds / seeds,
            "val_mse": result.val_metric,
        }
        rows.append(row)
        found = "  ".join(show(s) for s in row["per_seed"])
        print(
            f"{name:12s} {show(truth):14s} {found:44s} {row['verdict']:8s}"
            f" {row['agreement']:5.2f} {row['seconds_per_search']:6.1f}s",
            flush=True,
        )
    return rows


def tnlearn_structure(expression: str) -> dict:
    """Orders in a tnlearn neuron string: `<w, x**k>` is pure k, a product of k `<.,x>` is Int_k."""
    pure, interact = set(), set()
    for term in re.split(r"\s[+-]\s", expression):
        factors = re.findall(r"<[^>]*>", term)
        if len(factors) == 1:
            power = re.search(r"x\s*\*\*\s*(\d+)", factors[0])
            pure.add(int(power.group(1)) if power else 1)
        elif len(factors) > 1:
            interact.add(len(factors))
    return {"pure": sorted(pure), "interact": sorted(interact)}


def run_tnlearn(names: list[str]) -> list[dict] | None:
    try:
        from tnlearn import GPSymRegressor
    except ImportError:
        print("skipped: tnlearn is not installed (pip install tnlearn)")
        return None
    rows = []
    for name in names:
        X, y, truth = generate(name, dims=DIMS, rows=ROWS, seed=0)
        start = time.perf_counter()
        model = GPSymRegressor()
        model.fit(X[:TRAIN], y[:TRAIN])
        seconds = time.perf_counter() - start
        expression = str(getattr(model, "neuron", model))
        found = tnlearn_structure(expression)
        rows.append(
            {"formula": name, "truth": truth, "expression": expression, "found": found,
             "verdict": verdict(found, truth), "seconds": seconds}
        )  # fmt: skip
        print(
            f"{name:12s} {show(truth):14s} {show(found):20s} {rows[-1]['verdict']:8s}"
            f" {seconds:6.1f}s  {expression[:50]}",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two formulas, few epochs")
    parser.add_argument("--formulas", help="comma-separated names (default: all 15)")
    parser.add_argument("--seeds", type=int, default=3, help="search seeds per formula")
    parser.add_argument("--json", help="write the results to this JSON file")
    parser.add_argument("--baseline", choices=["tnlearn"], help="run a baseline instead")
    args = parser.parse_args(argv)
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
        rows = run_tnlearn(names)
        if rows is not None and args.json:
            with open(args.json, "w", encoding="utf-8") as out:
                json.dump({"baseline": "tnlearn", "rows": rows}, out, indent=2)
        return 0
    print(f"{'formula':12s} {'truth':14s} {'found per seed':44s} {'verdict':8s} agree  s/search")
    rows = run_neuronseek(names, max(1, seeds), args.quick)
    perfect = sum(r["verdict"] == "PERFECT" for r in rows)
    noisy = sum(r["verdict"] == "NOISY" for r in rows)
    agree = sum(r["agreement"] == 1.0 for r in rows)
    mean_s = sum(r["seconds_per_search"] for r in rows) / len(rows)
    worst = max(r["seconds_per_search"] for r in rows)
    print(
        f"\nPERFECT {perfect}/{len(rows)}  NOISY {noisy}  MISSING {len(rows) - perfect - noisy}"
        f"  all seeds agree {agree}/{len(rows)}  seconds per search: mean {mean_s:.1f},"
        f" worst formula {worst:.1f}"
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as out:
            summary = {
                "perfect": perfect,
                "noisy": noisy,
                "all_agree": agree,
                "mean_seconds": mean_s,
            }
            json.dump({"rows": rows, "totals": summary}, out, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
