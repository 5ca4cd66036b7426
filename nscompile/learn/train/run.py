"""A training run: spec + data -> RUN_DIR with model.py, weights.pt, model.onnx, metrics.json.

The run is built in a hidden directory beside RUN_DIR (`.NAME.partial`) and renamed over it at
the end, so a finished RUN_DIR is never half-overwritten. Checkpoints live in
`.NAME.partial/.checkpoints` (one per model and seed, rewritten every epoch, plus a result file
per finished seed); `resume=True` picks them up after an interruption and skips finished seeds.

weights.pt holds the spec network trained with the first seed (metrics.json's `weights_seed`);
preprocess.json how that seed's rows became the network's inputs (text columns one-hot,
standardisation fitted on its training split) and how outputs map back to the target's units.
model.onnx is the deployed model: that preprocessing and the network in one graph, taking raw
rows (`nscompile.learn.deploy_onnx`); `nscompile.learn.deploy.load_run` is the same in torch.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nscompile.compiler.pipeline import compile_text, select_network, to_onnx, to_torch
from nscompile.errors import InputError
from nscompile.files import write_atomic
from nscompile.learn.data import Supervised
from nscompile.learn.deploy_onnx import deployable
from nscompile.learn.loader import load_source
from nscompile.learn.preprocess import Preprocess
from nscompile.learn.train.core import (
    MLP,
    Diverged,
    Protocol,
    fit_seed,
    matched_widths,
    metrics,
    parameter_count,
    predict,
)
from nscompile.learn.train.split import split_rows

BASELINES = ("mlp", "mlp-params")
FORMAT = 2  # 2: model.onnx takes raw rows; preprocess.json

# progress(model, seed, epoch, epochs); hook(model, seed, epoch) runs after each saved epoch.
ProgressFn = Callable[[str, int, int, int], None]
HookFn = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunResult:
    path: Path
    metrics: dict[str, Any]


def run_sha256(run_dir: Path) -> str | None:
    """The spec sha256 recorded in a run directory, or None when it is not a run."""
    try:
        data = json.loads((run_dir / "metrics.json").read_text(encoding="utf-8"))
        return str(data["spec"]["sha256"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _partial(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name}.partial"


def _prepare(run_dir: Path, identity: dict[str, Any], overwrite: bool, resume: bool) -> Path:
    """Check RUN_DIR and return the working directory to build the run in."""
    if run_dir.exists():
        if not run_dir.is_dir():
            raise InputError(f"{run_dir} exists and is not a directory")
        if any(run_dir.iterdir()) and not overwrite:
            recorded = run_sha256(run_dir)
            if recorded != identity["sha256"]:
                what = "a run of another spec" if recorded else "not a training run"
                raise InputError(
                    f"{run_dir} exists and is {what}",
                    hint="choose another directory, or replace it with --overwrite",
                )
    work = _partial(run_dir)
    marker = work / ".nscompile-run.json"
    if work.exists():
        if resume:
            try:
                saved = json.loads(marker.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                saved = None
            if saved != identity:
                raise InputError(
                    f"the interrupted run in {work} used other settings (spec, data, seeds, "
                    "epochs or baselines)",
                    hint="run with the same arguments, or start over with --overwrite",
                )
            return work
        if not overwrite:
            raise InputError(
                f"an interrupted run of {run_dir} is in {work}",
                hint="continue it with --resume, or start over with --overwrite",
            )
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / ".checkpoints").mkdir()
    write_atomic(marker, json.dumps(identity, indent=2) + "\n")
    return work


def _finish(work: Path, run_dir: Path) -> None:
    shutil.rmtree(work / ".checkpoints", ignore_errors=True)
    (work / ".nscompile-run.json").unlink(missing_ok=True)
    old = run_dir.parent / f".{run_dir.name}.old"
    if old.exists():
        shutil.rmtree(old)
    if run_dir.exists():
        run_dir.rename(old)
    work.rename(run_dir)
    if old.exists():
        shutil.rmtree(old)


def _summary(per_seed: list[dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    mean: dict[str, Any] = {}
    std: dict[str, Any] = {}
    for part in ("train", "val", "test"):
        keys = per_seed[0][part].keys()
        values = {k: np.array([s[part][k] for s in per_seed]) for k in keys}
        mean[part] = {k: float(v.mean()) for k, v in values.items()}
        std[part] = {k: float(v.std()) for k, v in values.items()}
    return mean, std


def train_run(
    spec_text: str,
    spec_file: str,
    data: Supervised,
    run_dir: str | Path,
    *,
    network: str | None = None,
    seeds: Sequence[int] = (0,),
    protocol: Protocol | None = None,
    baselines: Sequence[str] = (),
    overwrite: bool = False,
    resume: bool = False,
    extra_files: dict[str, str] | None = None,
    progress: ProgressFn | None = None,
    hook: HookFn | None = None,
    plot: Callable[[Path, dict[str, Any]], None] | None = None,
) -> RunResult:
    """Train the spec's network (and baselines) on `data` with every seed; write the run."""
    protocol = protocol or Protocol()
    seeds = [int(s) for s in seeds]
    if not seeds:
        raise InputError("training needs at least one seed")
    for name in baselines:
        if name not in BASELINES:
            raise InputError(f"unknown baseline '{name}'", hint=f"one of {', '.join(BASELINES)}")
    baselines = list(dict.fromkeys(baselines))
    compiled = compile_text(spec_text, spec_file)
    net = select_network(compiled, network)
    width = data.features.shape[1]
    if net.input_width != width:
        text = [
            f"'{n}' {len(c)}"
            for n, c in zip(data.encoding.columns, data.encoding.categories, strict=True)
            if c
        ]
        encoded = f" ({', '.join(text)} one-hot inputs for its text columns)" if text else ""
        raise InputError(
            f"the spec's network '{net.name}' takes {net.input_width} inputs; "
            f"{data.name} gives {width}{encoded}",
            hint=f"write `input {width}` in the network, or choose the target with --target",
        )
    outputs = net.layers[-1].out_features
    if net.task != data.task:
        raise InputError(
            f"the spec's network '{net.name}' is for {net.task}; "
            f"{data.name} (target '{data.target_name}') is a {data.task} task",
            hint="set --task, or fix the network's `task` line",
        )
    if data.task == "regression" and outputs != 1:
        raise InputError(f"network '{net.name}' has {outputs} outputs; regression needs 1")
    if data.task == "classification" and outputs != data.classes:
        raise InputError(
            f"network '{net.name}' has {outputs} outputs; "
            f"the target '{data.target_name}' of {data.name} has {data.classes} classes"
        )
    run_dir = Path(run_dir)
    sha = compiled.lowered.source_sha256
    identity = {
        "format": FORMAT,
        "sha256": sha,
        "network": net.name,
        "data": data.name,
        "target": data.target_name,
        "rows": len(data.target),
        "seeds": seeds,
        "protocol": protocol.as_dict(),
        "baselines": baselines,
    }
    # Every seed's split and preprocessing first: bad data fails before the run directory exists.
    splits = {
        seed: split_rows(data.target, data.task, seed, protocol.test, protocol.val)
        for seed in seeds
    }
    fitted = {seed: Preprocess.fit(data, splits[seed].train) for seed in seeds}
    work = _prepare(run_dir, identity, overwrite, resume)
    checkpoints = work / ".checkpoints"
    source = to_torch(compiled)
    write_atomic(work / "model.py", source)
    for name, text in (extra_files or {}).items():
        write_atomic(work / name, text)
    module = load_source(source)

    hidden = [layer.out_features for layer in net.layers[:-1]]
    activations = [layer.activation for layer in net.layers[:-1]]
    torch.manual_seed(0)
    spec_params = parameter_count(module.build(net.name))
    factories: dict[str, Callable[[], torch.nn.Module]] = {"spec": lambda: module.build(net.name)}
    widths: dict[str, list[int]] = {"spec": hidden}
    if "mlp" in baselines:
        widths["mlp"] = hidden
    if "mlp-params" in baselines:
        widths["mlp-params"] = matched_widths(width, hidden, outputs, spec_params)
    for name in baselines:
        factories[name] = lambda w=widths[name]: MLP(width, w, outputs, data.task, activations)

    start = time.perf_counter()
    per_seed: dict[str, list[dict[str, Any]]] = {k: [] for k in factories}
    curves: dict[str, dict[str, list[float]]] = {}
    params: dict[str, int] = {}
    first_split = None
    first_pre: Preprocess | None = None
    weights_state: dict[str, torch.Tensor] | None = None
    for seed in seeds:
        split, pre = splits[seed], fitted[seed]
        first_split = first_split or split
        first_pre = first_pre or pre
        scaler = pre.scaler
        parts = {
            part: (
                scaler.features(data.features[rows]),
                scaler.target(data.target[rows], data.task),
            )
            for part, rows in (("train", split.train), ("val", split.val), ("test", split.test))
        }
        for key, factory in factories.items():
            torch.manual_seed(seed)
            model = factory()
            params[key] = parameter_count(model)
            done = checkpoints / f"{key}-seed{seed}.json"
            state_file = checkpoints / f"{key}-seed{seed}.best.pt"
            if done.is_file() and state_file.is_file():
                record = json.loads(done.read_text(encoding="utf-8"))
                model.load_state_dict(torch.load(state_file, weights_only=True))
            else:
                clock = time.perf_counter()

                def on_epoch(epoch: int, key: str = key, seed: int = seed) -> None:
                    if progress is not None:
                        progress(key, seed, epoch, protocol.epochs)
                    if hook is not None:
                        hook(key, seed, epoch)

                what = f"'{net.name}'" if key == "spec" else f"baseline {key}"
                try:
                    result = fit_seed(
                        model,
                        data.task,
                        parts["train"],
                        parts["val"],
                        protocol,
                        seed,
                        what=f"{what} (seed {seed})",
                        checkpoint=checkpoints / f"{key}-seed{seed}.pt",
                        on_epoch=on_epoch,
                    )
                except Diverged as error:
                    if error.epoch > 1:
                        error.message += f" in {checkpoints}"
                    raise
                record = {
                    "seed": seed,
                    "epochs_run": result.epochs_run,
                    "best_epoch": result.best_epoch,
                    "seconds": time.perf_counter() - clock,
                    "history": result.history,
                    "scaler": scaler.as_dict(),
                }
                for part, (x, y) in parts.items():
                    record[part] = metrics(data.task, predict(model, x), y)
                buffer = io.BytesIO()
                torch.save(model.state_dict(), buffer)
                write_atomic(state_file, buffer.getvalue())
                write_atomic(done, json.dumps(record) + "\n")
            per_seed[key].append(record)
            if seed == seeds[0]:
                curves[key] = record["history"]
                if key == "spec":
                    weights_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    assert weights_state is not None and first_split is not None and first_pre is not None

    buffer = io.BytesIO()
    torch.save(weights_state, buffer)
    write_atomic(work / "weights.pt", buffer.getvalue())
    arrays = {k: v.detach().to(torch.float32).numpy() for k, v in weights_state.items()}
    deployed = deployable(to_onnx(compiled, net, arrays), first_pre)
    write_atomic(work / "model.onnx", deployed.SerializeToString())
    write_atomic(work / "preprocess.json", json.dumps(first_pre.as_dict(), indent=2) + "\n")

    models: dict[str, Any] = {}
    for key, records in per_seed.items():
        mean, std = _summary(records)
        models[key] = {
            "parameters": params[key],
            "hidden": widths[key],
            "activations": activations,
            "per_seed": [{k: v for k, v in r.items() if k != "history"} for r in records],
            "mean": mean,
            "std": std,
            "seconds": float(sum(r["seconds"] for r in records)),
        }
    result_metrics: dict[str, Any] = {
        "format": FORMAT,
        "spec": {"file": Path(spec_file).name, "sha256": sha, "network": net.name},
        "data": {
            "name": data.name,
            "target": data.target_name,
            "task": data.task,
            "classes": data.classes,
            "rows": len(data.target),
            "features": width,
        },
        "split": first_split.sizes(),
        "stratified": data.task == "classification",
        "protocol": protocol.as_dict(),
        "seeds": seeds,
        "weights_seed": seeds[0],
        "scaler": per_seed["spec"][0]["scaler"],
        "metric": "accuracy" if data.task == "classification" else "mse",
        "parameters": params["spec"],
        "models": models,
        "seconds": time.perf_counter() - start,
    }
    write_atomic(work / "metrics.json", json.dumps(result_metrics, indent=2) + "\n")
    if plot is not None:
        plot(work / "curves.png", {"task": data.task, "curves": curves})
    _finish(work, run_dir)
    return RunResult(run_dir, result_metrics)
