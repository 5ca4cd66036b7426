"""Multi-seed search: run `NeuronSeek` per seed, report the majority structure and agreement."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nscompile.errors import InputError
from nscompile.lang import syntax
from nscompile.learn.search.estimator import NeuronSeek
from nscompile.learn.search.spec import spec_for

SeedProgress = Callable[[int, int, int], None]


@dataclass(frozen=True)
class SearchResult:
    """The outcome of `search`.

    Attributes:
        structure: the majority structure (`pure`, `interact`, `rank`, `gates` of its first seed).
        agreement: share of the seeds that found exactly that structure.
        per_seed: every seed's structure, in seed order.
        seeds: the seeds run.
        seconds: total wall time.
        val_metric: mean validation metric of the majority seeds.
        metric_name: "mse" (standardised target) or "accuracy".
        task: "regression" or "classification".
        history: the training history of the first majority seed.
        spec: the spec AST; its neuron carries the provenance comment.
        stage1_per_seed: every seed's stage-1 structure (the gates alone), in seed order.
        stage2_changed: how many seeds' final structure differs from their stage-1 one.
        undecided: None, or why the search could not decide (from the first seed that
            could not).
    """

    structure: dict[str, Any]
    agreement: float
    per_seed: list[dict[str, Any]]
    seeds: tuple[int, ...]
    seconds: float
    val_metric: float
    metric_name: str
    task: str
    history: dict[str, Any]
    spec: syntax.Spec
    stage1_per_seed: list[dict[str, Any]]
    stage2_changed: int
    undecided: str | None

    def summary(self, data: str) -> dict[str, Any]:
        """What `nscompile search --summary` writes: the structure, agreement, every seed's
        structure at both stages, the validation metric and the time (JSON-ready)."""
        structure = self.structure
        return {
            "data": data,
            "task": self.task,
            "pure": structure["pure"],
            "interact": structure["interact"],
            "rank": structure["rank"],
            "gates": structure.get("gates"),
            "agreement": self.agreement,
            "seeds": list(self.seeds),
            "per_seed": self.per_seed,
            "stage1_per_seed": [
                {"pure": s["pure"], "interact": s["interact"]} for s in self.stage1_per_seed
            ],
            "stage2_changed": self.stage2_changed,
            "undecided": self.undecided,
            "val_metric": self.val_metric,
            "seconds": self.seconds,
        }


def _key(structure: dict[str, Any]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(structure["pure"]), tuple(structure["interact"])


def search(
    X: object,
    y: object,
    *,
    seeds: Sequence[int] = (0, 1, 2),
    progress: SeedProgress | None = None,
    name: str | None = None,
    **params: Any,
) -> SearchResult:
    """Run one `NeuronSeek(seed=s, **params)` per seed and take the majority structure.

    Majority is by the exact (pure, interact) pair; ties go to the structure with fewer
    terms, then to the one found by the lowest seed.

    Args:
        X: features (rows x D).
        y: target (rows,).
        seeds: the seeds, at least one.
        progress: optional `progress(epoch_done, epochs_total, seed)` after every epoch.
        name: the data's name for the provenance comment.
        **params: `NeuronSeek` parameters (not `seed`).

    Raises:
        InputError: bad data or parameters (see `NeuronSeek`), or no seed.
    """
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise InputError("search needs at least one seed")
    if "seed" in params:
        raise InputError("give seeds=(...) to search, not seed=")
    start = time.perf_counter()
    fits: list[NeuronSeek] = []
    for seed in seeds:
        est = NeuronSeek(seed=seed, **params)
        hook = None if progress is None else (lambda done, total, s=seed: progress(done, total, s))
        fits.append(est.fit(X, y, progress=hook))
    counts = Counter(_key(f.structure_) for f in fits)
    first = {}
    for index, fit in enumerate(fits):
        first.setdefault(_key(fit.structure_), index)
    best = min(counts, key=lambda k: (-counts[k], len(k[0]) + len(k[1]), first[k]))
    winners = [f for f in fits if _key(f.structure_) == best]
    lead = winners[0]
    agreement = counts[best] / len(fits)
    val = sum(f.val_metric_ for f in winners) / len(winners)
    lines = _provenance(name, seeds, lead.structure_, lead.metric_name_, val, agreement)
    undecided = next((f.undecided_ for f in fits if f.undecided_), None)
    if undecided:
        lines.append(f"undecided: {undecided}")
    spec = spec_for(
        lead.structure_, lead.n_features_in_, lead.task_, _outputs(lead), lead.hidden, lines
    )
    return SearchResult(
        structure=dict(lead.structure_),
        agreement=agreement,
        per_seed=[f.structure_ for f in fits],
        seeds=seeds,
        seconds=time.perf_counter() - start,
        val_metric=val,
        metric_name=lead.metric_name_,
        task=lead.task_,
        history=lead.history_,
        spec=spec,
        stage1_per_seed=[f.stage1_ for f in fits],
        stage2_changed=sum(_key(f.stage1_) != _key(f.structure_) for f in fits),
        undecided=undecided,
    )


def _outputs(fit: NeuronSeek) -> int:
    network = fit.spec_.networks["net"]
    return network.layers[-1].width


def _provenance(
    name: str | None,
    seeds: tuple[int, ...],
    structure: dict[str, Any],
    metric: str,
    value: float,
    agreement: float,
) -> list[str]:
    gates = structure["gates"]
    pure = ", ".join(f"{k} (p={gates['pure'][k]:.2f})" for k in structure["pure"]) or "none"
    inter = ", ".join(f"{k} (p={gates['interact'][k]:.2f})" for k in structure["interact"])
    lines = ["NeuronSeek-TD structure search"]
    if name:
        lines.append(f"data: {name}")
    lines += [
        f"seeds: {', '.join(map(str, seeds))}; agreement {agreement:.2f}",
        f"pure orders: {pure}",
        f"interaction orders: {inter or 'none'} (rank {structure['rank']})",
        f"validation {metric}: {value:.4g}",
    ]
    return lines
