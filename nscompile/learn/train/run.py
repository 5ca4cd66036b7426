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

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from nscompile.compiler.pipeline import (
    Compiled,
    compile_text,
    select_network,
    to_onnx,
    to_torch,
)
from nscompile.errors import InputError
from nscompile.files import write_atomic
from nscompile.learn.choices import BASELINES, IMAGE_BASELINES
from nscompile.learn.data import Supervised
from nscompile.learn.deploy_onnx import deployable
from nscompile.learn.loader import load_source
from nscompile.learn.preprocess import Preprocess, Scaler
from nscompile.learn.train import rundir
from nscompile.learn.train.checkpoint import save_atomic
from nscompile.learn.train.core import (
    Diverged,
    Protocol,
    RunModels,
    fit_seed,
    parameter_count,
    run_models,
    scores,
)
from nscompile.learn.train.distributed import Ranks
from nscompile.learn.train.plain import plain_baseline
from nscompile.learn.train.record import FORMAT, Trained, run_metrics
from nscompile.learn.train.split import Split, split_rows

if TYPE_CHECKING:
    from nscompile.compiler.ir import NetworkIR


# progress(model, seed, epoch, epochs); hook(model, seed, epoch) runs after each saved epoch.
ProgressFn = Callable[[str, int, int, int], None]
HookFn = Callable[[str, int, int], None]
Part = tuple[np.ndarray, np.ndarray]  # (inputs, target) of a split's part


@dataclass(frozen=True)
class RunResult:
    path: Path
    metrics: dict[str, Any]


def _checked_settings(
    seeds: Sequence[int], baselines: Sequence[str]
) -> tuple[list[int], list[str]]:
    """(the seeds as ints, the baselines without repeats); InputError for none or unknown ones."""
    seed_list = [int(s) for s in seeds]
    if not seed_list:
        raise InputError("training needs at least one seed")
    for name in baselines:
        if name not in BASELINES:
            raise InputError(f"unknown baseline '{name}'", hint=f"one of {', '.join(BASELINES)}")
    return seed_list, list(dict.fromkeys(baselines))


def _check_network(net: NetworkIR, data: Supervised) -> None:
    """InputError unless the network's inputs, task and outputs fit the data."""
    width = data.features.shape[1]
    if net.image is not None and net.input_width != width:
        shape = " x ".join(str(n) for n in net.image)
        raise InputError(
            f"the spec's network '{net.name}' takes images of {shape} ({net.input_width} "
            f"pixels); {data.name} gives {width} inputs per row",
            hint="write the data's image size in `input C x H x W`",
        )
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


def _with_image_baselines(
    models: RunModels, compiled: Compiled, net: NetworkIR, baselines: list[str]
) -> RunModels:
    """`models` with the plain baselines (`plain`) built from the spec."""
    if net.image is not None:  # the widths of its conv layers, blocks and hidden dense layers
        models.widths["spec"] = net.widths[:-1]
    torch.manual_seed(0)
    spec_params = parameter_count(models.factories["spec"]())
    for name in baselines:
        if name in IMAGE_BASELINES:
            target = spec_params if name == "plain-params" else None
            factory, widths = plain_baseline(compiled.spec, net.name, target)
            models.factories[name], models.widths[name] = factory, widths
    return models


def _standardised(data: Supervised, split: Split, scaler: Scaler) -> dict[str, Part]:
    """Each part's (inputs, target) as the network sees them."""
    return {
        part: (scaler.features(data.features[rows]), scaler.target(data.target[rows], data.task))
        for part, rows in (("train", split.train), ("val", split.val), ("test", split.test))
    }


@dataclass(frozen=True)
class _Seed:
    """One seed's data as every model of the run trains on it."""

    seed: int
    parts: dict[str, Part]  # train, val, test: standardised (inputs, target)
    scaler: Scaler


def _train_model(
    key: str,
    model: torch.nn.Module,
    seed: _Seed,
    task: str,
    what: str,
    protocol: Protocol,
    checkpoints: Path,
    on_epoch: Callable[[int], None],
    ranks: Ranks,
) -> dict[str, Any]:
    """Train one model with one seed, or reload it when its checkpoints say it finished; its
    record (epochs, seconds, history, scaler, metrics per part), kept beside its best state.
    Rank 0 alone reads and writes the checkpoints."""
    stem = f"{key}-seed{seed.seed}"
    done, state_file = checkpoints / f"{stem}.json", checkpoints / f"{stem}.best.pt"

    def finished() -> tuple[dict[str, Any], dict[str, torch.Tensor]] | None:
        if not (done.is_file() and state_file.is_file()):
            return None
        record = json.loads(done.read_text(encoding="utf-8"))
        return record, torch.load(state_file, map_location="cpu", weights_only=True)

    earlier = ranks.share(finished)
    if earlier is not None:
        model.load_state_dict(earlier[1])
        return earlier[0]
    clock = time.perf_counter()
    try:
        result = fit_seed(
            model,
            task,
            seed.parts["train"],
            seed.parts["val"],
            protocol,
            seed.seed,
            what=f"{what} (seed {seed.seed})",
            checkpoint=checkpoints / f"{stem}.pt",
            on_epoch=on_epoch,
            ranks=ranks,
        )
    except Diverged as error:
        if error.epoch > 1:
            error.message += f" in {checkpoints}"
        raise
    record: dict[str, Any] = {
        "seed": seed.seed,
        "epochs_run": result.epochs_run,
        "best_epoch": result.best_epoch,
        "seconds": time.perf_counter() - clock,
        "history": result.history,
        "scaler": seed.scaler.as_dict(),
    }
    for part, (x, y) in seed.parts.items():
        record[part] = scores(model, task, x, y, ranks)
    if ranks.main:
        save_atomic(state_file, model.state_dict())
        write_atomic(done, json.dumps(record) + "\n")
    return record


def _train_all(
    data: Supervised,
    net: NetworkIR,
    models: RunModels,
    fitted: dict[int, tuple[Split, Preprocess]],
    protocol: Protocol,
    checkpoints: Path,
    progress: ProgressFn | None,
    hook: HookFn | None,
    ranks: Ranks,
) -> Trained:
    """Every model with every seed (the keys of `fitted`: each seed's split and preprocessing);
    the first seed's curves and spec network are kept."""
    trained = Trained({k: [] for k in models.factories})
    first = next(iter(fitted))
    for number, (split, pre) in fitted.items():
        seed = _Seed(number, _standardised(data, split, pre.scaler), pre.scaler)
        for key, factory in models.factories.items():
            torch.manual_seed(seed.seed)
            model = factory()
            trained.params[key] = parameter_count(model)

            def on_epoch(epoch: int, key: str = key, seed: int = seed.seed) -> None:
                if progress is not None:
                    progress(key, seed, epoch, protocol.epochs)
                if hook is not None:
                    hook(key, seed, epoch)

            what = f"'{net.name}'" if key == "spec" else f"baseline {key}"
            record = _train_model(
                key, model, seed, data.task, what, protocol, checkpoints, on_epoch, ranks
            )
            trained.per_seed[key].append(record)
            if number == first:
                trained.curves[key] = record["history"]
                if key == "spec":
                    state = model.state_dict().items()
                    trained.weights = {k: v.detach().cpu().clone() for k, v in state}
    return trained


def _export(
    work: Path, compiled: Compiled, net: NetworkIR, trained: Trained, pre: Preprocess
) -> None:
    """weights.pt, model.onnx (the preprocessing and the network in one graph), preprocess.json."""
    assert trained.weights is not None
    save_atomic(work / "weights.pt", trained.weights)
    arrays = {k: v.detach().to(torch.float32).numpy() for k, v in trained.weights.items()}
    deployed = deployable(to_onnx(compiled, net, arrays), pre)
    write_atomic(work / "model.onnx", deployed.SerializeToString())
    write_atomic(work / "preprocess.json", json.dumps(pre.as_dict(), indent=2) + "\n")


def _splits_and_preprocessing(
    data: Supervised, seeds: list[int], protocol: Protocol, channels: int = 0
) -> dict[int, tuple[Split, Preprocess]]:
    """Each seed's split and the preprocessing fitted on its training rows (an image
    network's `channels` standardised per channel)."""
    fitted: dict[int, tuple[Split, Preprocess]] = {}
    for seed in seeds:
        split = split_rows(data.target, data.task, seed, protocol.test, protocol.val)
        fitted[seed] = (split, Preprocess.fit(data, split.train, channels))
    return fitted


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
    ranks: Ranks | None = None,
) -> RunResult:
    """Train the spec's network (and baselines) on `data` with every seed; write the run.

    With several `ranks` (torchrun, `distributed`) every rank calls this with the same
    arguments; they train together and rank 0 alone writes RUN_DIR."""
    protocol = protocol or Protocol()
    ranks = ranks or Ranks()
    seed_list, baseline_list = _checked_settings(seeds, baselines)
    compiled = compile_text(spec_text, spec_file)
    net = select_network(compiled, network)
    _check_network(net, data)
    run_dir = Path(run_dir)
    identity = {
        "format": FORMAT,
        "sha256": compiled.lowered.source_sha256,
        "network": net.name,
        "data": data.name,
        "target": data.target_name,
        "rows": len(data.target),
        "seeds": seed_list,
        "protocol": protocol.as_dict(),
        "baselines": baseline_list,
    }
    # Bad data fails here, before the run directory exists.
    channels = net.image[0] if net.image else 0
    fitted = _splits_and_preprocessing(data, seed_list, protocol, channels)
    for split, _ in fitted.values():
        ranks.check(len(split.train), protocol.batch_size)
    work = ranks.share(lambda: rundir.prepare(run_dir, identity, overwrite, resume))
    source = to_torch(compiled)
    if ranks.main:
        write_atomic(work / "model.py", source)
        for name, text in (extra_files or {}).items():
            write_atomic(work / name, text)
    models = run_models(load_source(source), net, data.task, data.features.shape[1], baseline_list)
    models = _with_image_baselines(models, compiled, net, baseline_list)

    start = time.perf_counter()
    checkpoints = work / rundir.CHECKPOINTS
    trained = _train_all(data, net, models, fitted, protocol, checkpoints, progress, hook, ranks)
    first_split, first_pre = fitted[seed_list[0]]
    seconds = time.perf_counter() - start
    result_metrics = run_metrics(
        identity, spec_file, data, first_split, trained, models.widths, models.activations, seconds
    )
    result_metrics["processes"] = {"count": ranks.world, "device": ranks.device.split(":")[0]}

    def write() -> None:
        _export(work, compiled, net, trained, first_pre)
        write_atomic(work / "metrics.json", json.dumps(result_metrics, indent=2) + "\n")
        if plot is not None:
            plot(work / "curves.png", {"task": data.task, "curves": trained.curves})
        rundir.finish(work, run_dir)

    ranks.share(write)  # every rank returns once the run is written, or fails with rank 0
    return RunResult(run_dir, result_metrics)
