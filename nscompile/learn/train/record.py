"""metrics.json: what a run records about its spec, data, protocol and every model's seeds."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nscompile.learn.data import Supervised
from nscompile.learn.train.split import Split

FORMAT = 2  # 2: model.onnx takes raw rows; preprocess.json


@dataclass
class Trained:
    """Every model's per-seed records, and what the first seed leaves for deployment."""

    per_seed: dict[str, list[dict[str, Any]]]
    curves: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    params: dict[str, int] = field(default_factory=dict)
    weights: dict[str, torch.Tensor] | None = None  # the spec network, first seed


def summary(per_seed: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        keys = per_seed[0][part].keys()
        values = {k: np.array([s[part][k] for s in per_seed]) for k in keys}
        mean[part] = {k: float(v.mean()) for k, v in values.items()}
        std[part] = {k: float(v.std()) for k, v in values.items()}
    return mean, std


def model_summaries(
    trained: Trained, widths: dict[str, list[int]], activations: list[str]
) -> dict[str, Any]:
    """metrics.json's `models`: each model's size, per-seed records and their mean and std."""
    summaries: dict[str, Any] = {}
    for key, records in trained.per_seed.items():
        mean, std = summary(records)
        summaries[key] = {
            "parameters": trained.params[key],
            "hidden": widths[key],
            "activations": activations,
            "per_seed": [{k: v for k, v in r.items() if k != "history"} for r in records],
            "mean": mean,
            "std": std,
            "seconds": float(sum(r["seconds"] for r in records)),
        }
    return summaries


def run_metrics(
    identity: dict[str, Any],
    spec_file: str,
    data: Supervised,
    split: Split,
    trained: Trained,
    widths: dict[str, list[int]],
    activations: list[str],
    seconds: float,
) -> dict[str, Any]:
    """The whole of metrics.json. `identity` is the run's (`rundir.prepare`: spec hash, network,
    seeds, protocol); `split` is the weights seed's, the first."""
    seeds = identity["seeds"]
    return {
        "format": FORMAT,
        "spec": {
            "file": Path(spec_file).name,
            "sha256": identity["sha256"],
            "network": identity["network"],
        },
        "data": {
            "name": data.name,
            "target": data.target_name,
            "task": data.task,
            "classes": data.classes,
            "rows": len(data.target),
            "features": data.features.shape[1],
        },
        "split": split.sizes(),
        "stratified": data.task == "classification",
        "protocol": identity["protocol"],
        "seeds": seeds,
        "weights_seed": seeds[0],
        "scaler": trained.per_seed["spec"][0]["scaler"],
        "metric": "accuracy" if data.task == "classification" else "mse",
        "parameters": trained.params["spec"],
        "models": model_summaries(trained, widths, activations),
        "seconds": seconds,
    }
